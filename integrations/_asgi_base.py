"""Shared pieces of the ASGI integration: frames, header selection, value capture.

``asgi.py`` (HTTP and the middleware) and ``_websocket.py`` (channels) build their own
context frames (layout in ``ascope/_context.py``) and emit through
``ascope._pipeline.emit_event``; the helpers they share live here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ascope import _context as _c
from ascope import _pipeline, _report, _values

from . import _traceparent

logger = logging.getLogger("ascope")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Request headers recorded by default; others are left out (they cost and rarely help).
DEFAULT_HEADERS = ("host", "user-agent", "accept", "content-type", "content-length",
                   "referer", "origin", "x-request-id", "x-forwarded-for", "traceparent",
                   "tracestate", "authorization", "cookie", "proxy-authorization",
                   "x-api-key")
# Recorded as present but with the value replaced (the names also match ascope's redaction
# words, so a header configured by the user is redacted the same way).
SENSITIVE_HEADERS = ("authorization", "cookie", "proxy-authorization", "x-api-key",
                     "set-cookie", "x-auth-token", "x-csrf-token")

SCOPE_KEY = "ascope"  # scope entry holding the request/channel state (inner code reads it)

_now = time.perf_counter_ns
_current = _c.current
_STATE = _c.STATE
_REDACTED = _values.REDACTED
# One failure counter and one log line for all of ascope (runtime.py's).
_internal_error = _report._internal_error
_error_fields = _report._error_fields
_traceback_of = _report._traceback_of
_capture = _values.capture
_snapshot = _values.snapshot


_emit = _pipeline.emit_event  # (kind, ts_ns, frame, payload): appends to the frame's ring


def _new_ids() -> int:
    # _c.ids is replaced in forked children: read it each time.
    return next(_c.ids)


_MAX_ID = (1 << 63) - 1


def _root_frame(parent: _c.Frame, trace_id: str, now: int,
                parent_id: int | str | None = None) -> _c.Frame:
    """A request/connection frame, the caller's task's: the root of what it does, whose
    parent id is the caller's span from ``traceparent`` (None without one)."""
    ring = parent[_c.RING]
    if ring is None:
        # A task ascope's factory did not create (or the loop's first event): attach the
        # loop now (ring, drainer, task factory) so the rest of the request is fast.
        parent = _pipeline.attach_current_loop()
        ring = parent[_c.RING]
    return (_new_ids(), parent_id, parent, parent[_c.TASK], trace_id, True, parent[_c.SCOPE],
            now, ring)


def _incoming_frame(selection: _HeaderSelection, scope: Scope, parent: _c.Frame,
                    trace_id: str | None, now: int) -> tuple[_c.Frame, Any]:
    """The root frame of a request or connection, and its selected headers.

    With a valid ``traceparent`` it joins that trace as a child of the caller's span (an
    ascope service's client operation has its correlation id as span id, so one store
    holding both shows the request under the call that made it); without one, a new
    trace. The parent id is the span id as an int when it fits a signed 64-bit integer
    (ascope's ids all do), else its 16 hex digits. ``trace_id``: the one sampling decided
    on, when it did.
    """
    selected = None
    caller: int | str | None = None
    headers = scope.get("headers")
    if headers:
        selected, traceparent = selection.read(headers)
        if traceparent is not None:
            parsed = _traceparent.parse(traceparent)
            if parsed is not None:
                trace_id = trace_id or parsed.trace_id
                caller = int(parsed.parent_id, 16)
                if caller > _MAX_ID:  # not one of ascope's ids: kept in its W3C form
                    caller = parsed.parent_id
    return _root_frame(parent, trace_id or _traceparent.new_trace_id(), now, caller), selected


def _child_frame(parent: _c.Frame, parent_id: Any, now: int) -> _c.Frame:
    return (_new_ids(), parent_id, parent, parent[_c.TASK], parent[_c.TRACE], True,
            parent[_c.SCOPE], now, parent[_c.RING])


_LOW_56 = float(2**56)


def _sampled(scope: Scope) -> tuple[bool, str]:
    """Whether the middleware records this request or connection (``sample_rate``), and
    the trace id the decision was made on.

    The decision is the trace id's: its low 56 bits (random in W3C ids and in ascope's
    own) under ``rate`` of their range. A request carrying a ``traceparent`` is decided
    by that trace's id, one without by the fresh id its trace will have: every service
    with the same rate keeps or drops a trace together, including the services a request
    left out calls (``_unsampled`` keeps its trace id to pass on).
    """
    rate = _STATE.sample_rate
    trace_id = None
    raw = None
    for name, value in scope.get("headers") or ():
        if name == b"traceparent":
            raw = value  # the last one, as the request's frame takes (_HeaderSelection)
    if raw is not None:
        parsed = _traceparent.parse(raw)
        if parsed is not None:
            trace_id = parsed.trace_id
    if trace_id is None:
        trace_id = _traceparent.new_trace_id()
    return int(trace_id[-14:], 16) < rate * _LOW_56, trace_id


def _unsampled(parent: _c.Frame, trace_id: str | None) -> _c.Frame:
    """The frame a request left out by ``sample_rate`` runs under: capture off for its
    task and everything it calls or spawns, outside any operation, in its trace (which
    outgoing HTTP calls pass on, marked not sampled: see ``integrations/httpx.py``)."""
    return (None, None, parent, parent[_c.TASK], trace_id, False, parent[_c.SCOPE], 0,
            parent[_c.RING])


def _error_payload(error: BaseException, source: str) -> tuple[Any, ...]:
    """(type, message, traceback, source) of an exception: the runtime's ``error`` payload."""
    error_type, message = _error_fields(error)
    return (error_type, message, _traceback_of(error, None), source)


_PLAIN = frozenset({str, int, bool, type(None)})  # floats need normalizing (nan)


def _path_params(params: dict[str, Any]) -> Any:
    """Path parameters: the common case (a few short scalars) copied as they are."""
    if len(params) <= 8:
        limit = _values.SETTINGS.max_string
        for key, value in params.items():
            kind = type(value)
            if (type(key) is not str or kind not in _PLAIN
                    or (kind is str and len(value) > limit) or _values.is_sensitive(key)
                    or (kind is int and not -(2**63) <= value < 2**63)):
                break
        else:
            return dict(params)
    return _snapshot(params)


def _query_params(raw: bytes) -> Any:
    """Query parameters as a bounded, redacted dict (repeated keys become lists)."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if key in params:
            previous = params[key]
            if type(previous) is list:
                previous.append(value)
            else:
                params[key] = [previous, value]
        else:
            params[key] = value
    return _snapshot(params)


class _HeaderSelection:
    """Which request headers to record, as bytes names, and which to redact."""

    __slots__ = ("names", "traceparent")

    def __init__(self, names: Iterable[str], sensitive: Iterable[str]) -> None:
        hidden = {name.lower() for name in sensitive}
        self.names: dict[bytes, tuple[str, bool]] = {}
        for name in names:
            lower = name.lower()
            self.names[lower.encode("latin-1")] = (
                lower, lower in hidden or _values.is_sensitive(lower))
        self.traceparent = b"traceparent"

    def read(self, raw_headers: Iterable[tuple[bytes, bytes]]
             ) -> tuple[dict[str, str], bytes | None]:
        """(selected headers, redacted; the raw traceparent value or None)."""
        names = self.names
        selected: dict[str, str] = {}
        traceparent = None
        limit = _values.SETTINGS.max_string
        for name, value in raw_headers:
            entry = names.get(name)
            if entry is None:
                if name == b"traceparent":
                    traceparent = value
                continue
            if name == b"traceparent":
                traceparent = value
            if entry[1]:
                selected[entry[0]] = _REDACTED
            else:
                text = value.decode("latin-1")
                selected[entry[0]] = text if len(text) <= limit else _capture(text)
        return selected, traceparent


def _route_of(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """(endpoint name, route template, action) from what a router left in the scope.

    Used when no route handler was wrapped (a router ascope does not know): Starlette
    and most routers store the matched route in ``scope["route"]`` and the handler in
    ``scope["endpoint"]``.
    """
    route = scope.get("route")
    endpoint = scope.get("endpoint")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    name = _values.guarded_repr(endpoint) if endpoint is not None else None
    if endpoint is not None:
        module = getattr(endpoint, "__module__", None)
        qualname = getattr(endpoint, "__qualname__", None)
        if isinstance(qualname, str):
            name = f"{module}.{qualname}" if isinstance(module, str) else qualname
    return name, template if isinstance(template, str) else None, None


