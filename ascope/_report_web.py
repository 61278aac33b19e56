"""Report functions for the web: HTTP requests, endpoints and actions (Phoenix request /
controller / action), websocket channels, live sessions (LiveView). Re-exported by
``ascope.runtime``."""

from __future__ import annotations

from typing import Any

from . import _values
from ._report import (
    _STATE,
    _capture,
    _capture_args,
    _emit,
    _error_fields,
    _finish,
    _frame_for,
    _internal_error,
    _now,
    _point,
    _pop,
    _since,
    _start,
    _text,
)

__all__ = [
    "report_action_complete",
    "report_action_error",
    "report_action_parameters",
    "report_action_start",
    "report_action_success",
    "report_channel_join_complete",
    "report_channel_join_start",
    "report_channel_message_complete",
    "report_channel_message_start",
    "report_endpoint_entry",
    "report_endpoint_exit",
    "report_http_request_complete",
    "report_http_request_start",
    "report_live_assigns",
    "report_live_callback",
    "report_live_callback_error",
    "report_live_callback_success",
    "report_live_event",
    "report_live_event_complete",
    "report_live_event_start",
    "report_live_mount_complete",
    "report_live_mount_start",
]


# -- web: HTTP (Phoenix request / controller / action) -----------------------------------------


def report_http_request_start(method: str, path: str, params: Any = None, client: Any = None,
                              *, headers: Any = None, route: str | None = None,
                              trace_id: str | None = None, correlation_id: Any = None
                              ) -> int | None:
    """Open a request operation (the root of everything the request does)."""
    if not _STATE.on:
        return None
    try:
        payload = (_text(method), _text(path), _capture(params), _capture(client),
                   _values.capture_mapping(headers), _text(route))
        return _start("http_request_start", payload, correlation_id, trace_id)
    except Exception:
        _internal_error()
        return None


def report_http_request_complete(correlation_id: Any, status: Any, content_type: Any = None,
                                 response_size: int | None = None,
                                 duration_ns: int | None = None, outcome: str = "complete"
                                 ) -> None:
    """Close a request operation (``outcome``: complete, error, disconnect...)."""
    if correlation_id is None:
        return
    try:
        frame = _pop(correlation_id)
        if not _STATE.on:
            return
        now = _now()
        _emit("http_request_complete", now, frame,
               (_capture(status), _text(content_type), _capture(response_size),
                duration_ns if duration_ns is not None else _since(frame, now),
                _text(outcome)))
    except Exception:
        _internal_error()


def report_endpoint_entry(endpoint: Any, action: Any = None, params: Any = None,
                          route: str | None = None) -> int | None:
    """Open the route handler's operation (the controller entry)."""
    if not _STATE.on:
        return None
    try:
        return _start("endpoint_entry",
                      (_text(endpoint), _text(action), _capture(params), _text(route)))
    except Exception:
        _internal_error()
        return None


def report_endpoint_exit(correlation_id: Any, endpoint: Any, action: Any = None,
                         result: Any = None, outcome: str = "return") -> None:
    """Close the route handler's operation (the controller exit)."""
    _finish(correlation_id, "endpoint_exit",
            lambda frame, now: (_text(endpoint), _text(action), _capture(result),
                                _text(outcome), _since(frame, now)))


def report_action_start(endpoint: Any, action: Any, params: Any = None) -> int | None:
    """Open an action (a method of a class-based endpoint)."""
    if not _STATE.on:
        return None
    try:
        return _start("action_start", (_text(endpoint), _text(action), _capture(params)))
    except Exception:
        _internal_error()
        return None


def report_action_parameters(endpoint: Any, action: Any, params: Any) -> None:
    """Record the parameters an action was called with."""
    _point("action_parameters", lambda: (_text(endpoint), _text(action), _capture(params)))


def report_action_success(endpoint: Any, action: Any, result: Any = None) -> None:
    """Record that an action returned."""
    _point("action_success", lambda: (_text(endpoint), _text(action), _capture(result)))


def report_action_error(endpoint: Any, action: Any, error: Any, message: Any = None) -> None:
    """Record that an action raised."""
    _point("action_error", lambda: (_text(endpoint), _text(action), *_error_fields(error,
                                                                                   message)))


def report_action_complete(correlation_id: Any, endpoint: Any, action: Any) -> None:
    """Close an action."""
    _finish(correlation_id, "action_complete",
            lambda frame, now: (_text(endpoint), _text(action), _since(frame, now)))


# -- web: channels (websockets) ----------------------------------------------------------------


def report_channel_join_start(path: str, params: Any = None, socket: Any = None) -> int | None:
    """Open a channel (a websocket connection): its operation spans the whole connection."""
    if not _STATE.on:
        return None
    try:
        return _start("channel_join_start", (_text(path), _capture(params), _capture(socket)))
    except Exception:
        _internal_error()
        return None


def report_channel_join_complete(correlation_id: Any, path: str, result: Any,
                                 close_code: int | None = None) -> None:
    """Record how the join ended (accepted, or closed before accept with ``close_code``).

    The channel stays current: messages that follow are its children.
    """
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit("channel_join_complete", _now(), frame,
                   (_text(path), _capture(result), _capture(close_code)))
    except Exception:
        _internal_error()


def report_channel_message_start(path: str, event: Any, payload: Any) -> int | None:
    """Open one message's operation (a child of the channel)."""
    if not _STATE.on:
        return None
    try:
        return _start("channel_message_start", (_text(path), _text(event), _capture(payload)))
    except Exception:
        _internal_error()
        return None


def report_channel_message_complete(correlation_id: Any, path: str, event: Any,
                                    result: Any = None) -> None:
    """Close one message's operation."""
    _finish(correlation_id, "channel_message_complete",
            lambda frame, now: (_text(path), _text(event), _capture(result),
                                _since(frame, now)))


# -- web: live sessions (LiveView) -------------------------------------------------------------


def report_live_mount_start(view: Any, params: Any = None, session: Any = None) -> int | None:
    """Open a live view's mount."""
    if not _STATE.on:
        return None
    try:
        return _start("live_mount_start", (_text(view), _capture(params), _capture(session)))
    except Exception:
        _internal_error()
        return None


def report_live_mount_complete(correlation_id: Any, view: Any, assigns: Any = None) -> None:
    """Close a live view's mount, with the assigns it produced."""
    _finish(correlation_id, "live_mount_complete",
            lambda frame, now: (_text(view), _capture(assigns), _since(frame, now)))


def report_live_event_start(view: Any, event: Any, params: Any = None,
                            assigns: Any = None) -> int | None:
    """Open the handling of one live event (``handle_event``)."""
    if not _STATE.on:
        return None
    try:
        return _start("live_event_start",
                      (_text(view), _text(event), _capture(params), _capture(assigns)))
    except Exception:
        _internal_error()
        return None


def report_live_event_complete(correlation_id: Any, view: Any, event: Any, assigns: Any = None,
                               result: Any = None) -> None:
    """Close the handling of one live event."""
    _finish(correlation_id, "live_event_complete",
            lambda frame, now: (_text(view), _text(event), _capture(assigns),
                                _capture(result), _since(frame, now)))


def report_live_assigns(view: Any, before: Any, after: Any) -> None:
    """Record a live view's state (assigns) before and after a change."""
    _point("live_assigns", lambda: (_text(view), _capture(before), _capture(after)))


def report_live_event(view: Any, event: Any, params: Any = None) -> None:
    """Record that a live event arrived."""
    _point("live_event", lambda: (_text(view), _text(event), _capture(params)))


def report_live_callback(view: Any, callback: Any, args: Any = None) -> None:
    """Record that a live view callback was invoked."""
    _point("live_callback", lambda: (_text(view), _text(callback), _capture_args(args or ())))


def report_live_callback_success(view: Any, callback: Any, result: Any = None) -> None:
    """Record that a live view callback returned."""
    _point("live_callback_success", lambda: (_text(view), _text(callback), _capture(result)))


def report_live_callback_error(view: Any, callback: Any, error: Any,
                               message: Any = None) -> None:
    """Record that a live view callback raised."""
    _point("live_callback_error",
           lambda: (_text(view), _text(callback), *_error_fields(error, message)))
