"""The report API: what instrumented code, middleware and integrations call.

Every function here is the counterpart of one function of ElixirScope's
``InstrumentationRuntime`` (see ``docs/seed-mapping.md``). They all:

- return at once when capture is off (one attribute read) or off for this task;
- capture the values they are given *now* (bounded, redacted snapshots);
- append one flat tuple to the running loop's ring, and nothing else;
- never raise into the caller, whatever they are given: a failure inside ascope is
  counted in ``ascope.stats().internal_errors`` and logged once.

Operations (a function call, a request, a query, a message...) have a ``*_start`` (or
``*_entry``) that returns a new correlation id and makes it current for everything
nested, and a ``*_complete`` (or ``*_exit``) that takes that id and restores the
previous one. Point events (a line, a branch, a variable snapshot...) belong to the
operation that is current.
"""

from __future__ import annotations

import logging
import re
import time
import traceback as _traceback
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import _context as _c
from . import _events, _pipeline, _values
from ._exceptions import InvalidNodeId

__all__ = [
    "NodeId",
    "clear_context",
    "current_correlation_id",
    "enabled",
    "get_ast_correlation_metadata",
    "initialize_context",
    "measure_overhead",
    "report_action_complete",
    "report_action_error",
    "report_action_parameters",
    "report_action_start",
    "report_action_success",
    "report_ast_branch_execution",
    "report_ast_correlation_performance",
    "report_ast_expression_value",
    "report_ast_function_entry",
    "report_ast_function_exit",
    "report_ast_line_execution",
    "report_ast_loop_iteration",
    "report_ast_pattern_match",
    "report_ast_variable_snapshot",
    "report_channel_join_complete",
    "report_channel_join_start",
    "report_channel_message_complete",
    "report_channel_message_start",
    "report_endpoint_entry",
    "report_endpoint_exit",
    "report_error",
    "report_event",
    "report_expression_value",
    "report_function_entry",
    "report_function_exit",
    "report_http_request_complete",
    "report_http_request_start",
    "report_line_execution",
    "report_live_assigns",
    "report_live_callback",
    "report_live_callback_error",
    "report_live_callback_success",
    "report_live_event",
    "report_live_event_complete",
    "report_live_event_start",
    "report_live_mount_complete",
    "report_live_mount_start",
    "report_message_send",
    "report_node_event",
    "report_partition_detected",
    "report_query_complete",
    "report_query_start",
    "report_service_callback_complete",
    "report_service_callback_error",
    "report_service_callback_start",
    "report_service_callback_success",
    "report_state_change",
    "report_task_exit",
    "report_task_spawn",
    "report_variable_snapshot",
    "validate_ast_node_id",
]

logger = logging.getLogger("ascope")

# Hot-path names bound once. Frame positions are written as literals in the two hottest
# functions (0 cid, 1 parent id, 2 parent frame, 3 task, 4 trace, 5 enabled, 6 scope,
# 7 start, 8 ring): a global constant lookup per field would cost more than the rest of the read.
_now = time.perf_counter_ns
_current = _c.current
_STATE = _c.STATE
_ROOT = _c.ROOT
_emit = _pipeline.emit
_capture = _values.capture
_capture_args = _values.capture_args
_SCALARS = _values._SCALARS
_next_id = _c.ids.__next__


def _rebind_ids() -> None:
    global _next_id
    _next_id = _c.ids.__next__


_c._after_reseed.append(_rebind_ids)

_logged_internal_error = False


def _internal_error() -> None:
    global _logged_internal_error
    _STATE.internal_errors += 1
    if not _logged_internal_error:
        _logged_internal_error = True
        logger.exception("ascope: a report call failed inside ascope; the caller was not "
                         "affected. Further failures are only counted in stats().")


# -- context ---------------------------------------------------------------------------------


def enabled() -> bool:
    """Whether capture is on for the current task: the cheapest check in the library."""
    return _STATE.on and _current.get()[5]


def current_correlation_id() -> int | None:
    """The correlation id of the operation current in this task, or None."""
    return _current.get()[0]


def initialize_context(trace_id: str | None = None) -> None:
    """Start a fresh capture context for the current task (or thread).

    The task keeps its task id (a new one is assigned if it has none and runs in a
    task), drops any correlation stack, and joins ``trace_id`` (a new trace otherwise).
    """
    frame = _pipeline.attach_current_loop()
    _current.set((None, None, None, frame[_c.TASK], trace_id or _c.new_trace_id(),
                  frame[_c.ENABLED], frame[_c.SCOPE], 0, frame[_c.RING]))


def clear_context() -> None:
    """Forget the current task's correlation stack and trace (keeps task id and switches)."""
    frame = _current.get()
    if frame is not _ROOT:
        _current.set((None, None, None, frame[_c.TASK], None, frame[_c.ENABLED],
                      frame[_c.SCOPE], 0, frame[_c.RING]))


def get_ast_correlation_metadata() -> dict[str, Any]:
    """What the current context would stamp on an event, for correlating with AST nodes."""
    frame = _current.get()
    now = _now()
    node = _events.NODE
    return {
        "correlation_id": frame[_c.CID],
        "parent_id": frame[_c.PARENT_ID],
        "task_id": frame[_c.TASK],
        "trace_id": frame[_c.TRACE],
        "node": {"host": node.host, "pid": node.pid, "started_ns": node.started_ns},
        "ts_ns": now,
        "wall_ns": now + _events.wall_offset_ns(),
        "enabled": bool(_STATE.on and frame[_c.ENABLED]),
    }


# -- helpers shared by the report functions ----------------------------------------------------


def _active() -> _c.Frame | None:
    frame = _current.get()
    return frame if frame[5] else None


def _start(kind: str, payload: tuple[Any, ...], correlation_id: Any = None,
           trace_id: str | None = None) -> int | None:
    """Open an operation: new frame (made current), one start event; returns its id."""
    parent = _current.get()
    if not parent[5]:
        return None
    cid = next(_c.ids) if correlation_id is None else correlation_id
    now = _now()
    frame = (cid, parent[0], parent, parent[3], trace_id or parent[4], True, parent[6], now,
             parent[8])
    _current.set(frame)
    _emit((kind, now, frame, payload))
    return cid


def _pop(correlation_id: Any) -> _c.Frame:
    """Close operation ``correlation_id``: restore the frame current before it started.

    Returns the operation's frame. If it is not on this context's stack (closed from
    another task, or twice) the context is left alone and a detached frame is returned.
    """
    frame = _current.get()
    if frame[0] == correlation_id:
        _current.set(frame[2] or _ROOT)
        return frame
    found = frame[2]
    for _ in range(256):
        if found is None:
            break
        if found[0] == correlation_id:
            _current.set(found[2] or _ROOT)
            return found
        found = found[2]
    return (correlation_id, None, None, frame[3], frame[4], True, frame[6], 0, frame[8])


def _frame_for(correlation_id: Any) -> _c.Frame | None:
    """The frame a point event belongs to, or None when capture is off for it."""
    frame = _current.get()
    if not frame[5]:
        return None
    if correlation_id is None or frame[0] == correlation_id:
        return frame
    return (correlation_id, None, None, frame[3], frame[4], True, frame[6], 0, frame[8])


def _since(frame: _c.Frame, now: int) -> int | None:
    return now - frame[7] if frame[7] else None


def _text(value: Any) -> Any:
    """A name, path or label: kept if it is a short string, else a bounded snapshot."""
    if type(value) is str and len(value) <= 512:
        return value
    return _capture(value) if not callable(value) else _callable_name(value)


def _callable_name(value: Any) -> str:
    module = getattr(value, "__module__", None)
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if isinstance(name, str):
        return f"{module}.{name}" if isinstance(module, str) else name
    return _values.guarded_repr(value)


def _error_fields(error: Any, message: Any = None) -> tuple[Any, Any]:
    """(type name, message) of an exception, an exception type, or anything else."""
    if isinstance(error, BaseException):
        return type(error).__qualname__, (_str_or_repr(error) if message is None
                                          else _capture(message))
    if isinstance(error, type) and issubclass(error, BaseException):
        return error.__qualname__, _capture(message)
    return _text(error), _capture(message)


def _str_or_repr(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        return _values.guarded_repr(error)
    limit = _values.SETTINGS.max_string
    return text if len(text) <= limit else text[:limit] + "..."


def _traceback_of(error: Any, given: Any) -> Any:
    if given is not None:
        if isinstance(given, str):
            return _capture(given)
        tb = given
    elif isinstance(error, BaseException):
        tb = error.__traceback__
    else:
        return None
    if tb is None:
        return None
    try:
        frames = _traceback.extract_tb(tb, limit=32)
    except Exception:
        return _values.guarded_repr(tb)
    return [[f.filename, f.lineno, f.name] for f in frames]


# -- core ------------------------------------------------------------------------------------


def report_function_entry(module: Any, function: Any, args: Any = (),
                          correlation_id: Any = None) -> int | None:
    """Record a call: returns its correlation id (current for nested calls until exit),
    or None when capture is off. ``args`` is a sequence or a name -> value mapping."""
    if not _STATE.on:
        return None
    try:
        parent = _current.get()
        if not parent[5]:
            return None
        cid = _next_id() if correlation_id is None else correlation_id
        now = _now()
        frame = (cid, parent[0], parent, parent[3], parent[4], True, parent[6], now, parent[8])
        _current.set(frame)
        event = ("function_entry", now, frame,
                 (module if type(module) is str else _text(module),
                  function if type(function) is str else _text(function),
                  _capture_args(args), None, None))
        ring = parent[8]  # _pipeline.emit, inlined: this is the hottest call there is
        if ring is not None and len(ring.buffer) < ring.high_water:
            ring.buffer.append(event)
        else:
            _emit(event)
        return cid
    except Exception:
        _internal_error()
        return None


def report_function_exit(correlation_id: Any, result: Any = None, duration_ns: int | None = None,
                         outcome: str = "return") -> None:
    """Record the end of call ``correlation_id`` and make its caller's id current again.

    ``outcome`` is ``"return"``, ``"raise"``, ``"cancel"``, ``"yield"``...; the duration is
    measured from the entry when not given.
    """
    if correlation_id is None:
        return
    try:
        frame = _current.get()
        if frame[0] == correlation_id:
            _current.set(frame[2] or _ROOT)
        else:
            frame = _pop(correlation_id)
        if not _STATE.on:
            return
        now = _now()
        if duration_ns is None and frame[7]:
            duration_ns = now - frame[7]
        event = ("function_exit", now, frame,
                 (result if type(result) in _SCALARS else _capture(result), duration_ns,
                  outcome, None, None))
        ring = frame[8]  # _pipeline.emit, inlined
        if ring is not None and len(ring.buffer) < ring.high_water:
            ring.buffer.append(event)
        else:
            _emit(event)
    except Exception:
        _internal_error()


def report_error(error: Any, message: Any = None, traceback: Any = None, *,
                 correlation_id: Any = None, source: str | None = None) -> None:
    """Record an error: an exception (or its type, or a name) with message and traceback."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            type_name, text = _error_fields(error, message)
            _emit(("error", _now(), frame,
                   (type_name, text, _traceback_of(error, traceback), source)))
    except Exception:
        _internal_error()


def report_task_spawn(child_task_id: Any, coroutine: Any = None, name: Any = None) -> None:
    """Record that the current task spawned another (the task factory does this itself)."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit(("task_spawn", _now(), frame,
                   (_capture(child_task_id), _text(coroutine), _text(name))))
    except Exception:
        _internal_error()


def report_task_exit(outcome: str, duration_ns: int | None = None, error: Any = None) -> None:
    """Record the end of the current task (the task factory does this itself)."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit(("task_exit", _now(), frame, (_text(outcome), duration_ns, _text(error))))
    except Exception:
        _internal_error()


def report_message_send(target: Any, message: Any) -> None:
    """Record a message sent to another task, queue or service."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit(("message_send", _now(), frame, (_text(target), _capture(message))))
    except Exception:
        _internal_error()


def report_state_change(target: Any, before: Any, after: Any, diff: Any = None) -> None:
    """Record a state change of a stateful object: snapshots before/after and their diff."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            old, new = _capture(before), _capture(after)
            if diff is None:
                diff = _diff(old, new)
            else:
                diff = _capture(diff)
            _emit(("state_change", _now(), frame, (_text(target), old, new, diff)))
    except Exception:
        _internal_error()


def _diff(old: Any, new: Any) -> Any:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return None if old == new else {"before": old, "after": new}
    changed = {key: [old.get(key), new[key]] for key in new if key in old and old[key] != new[key]}
    return {
        "added": {key: new[key] for key in new if key not in old},
        "removed": {key: old[key] for key in old if key not in new},
        "changed": changed,
    }


def report_event(kind: str, data: Mapping[str, Any] | None = None) -> None:
    """Record an event of a kind of your own, with a mapping of captured values."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit((_text(kind), _now(), frame, _values.capture_mapping(data) or {}))
    except Exception:
        _internal_error()


# -- AST-injected reports --------------------------------------------------------------------


def report_ast_function_entry(module: Any, function: Any, args: Any = (),
                              correlation_id: Any = None, node_id: str | None = None
                              ) -> int | None:
    """``report_function_entry`` for AST-instrumented code, tagged with its node id."""
    if not _STATE.on:
        return None
    try:
        payload = (_text(module), _text(function), _capture_args(args), "ast", node_id)
        return _start("function_entry", payload, correlation_id)
    except Exception:
        _internal_error()
        return None


def report_ast_function_exit(correlation_id: Any, result: Any = None,
                             duration_ns: int | None = None, node_id: str | None = None,
                             outcome: str = "return") -> None:
    """``report_function_exit`` for AST-instrumented code, tagged with its node id."""
    if correlation_id is None:
        return
    try:
        frame = _pop(correlation_id)
        if not _STATE.on:
            return
        now = _now()
        if duration_ns is None:
            duration_ns = _since(frame, now)
        _emit(("function_exit", now, frame,
               (_capture(result), duration_ns, outcome, "ast", node_id)))
    except Exception:
        _internal_error()


def report_line_execution(correlation_id: Any, line: int, context: Any = None,
                          source: str | None = None, node_id: str | None = None) -> None:
    """Record that a line ran (``context``: optional values to keep with it)."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("line_execution", _now(), frame,
                   (line, None if context is None else _capture(context), node_id, source)))
    except Exception:
        _internal_error()


def report_ast_line_execution(correlation_id: Any, line: int, context: Any,
                              node_id: str) -> None:
    """``report_line_execution`` tagged with the AST node id."""
    report_line_execution(correlation_id, line, context, "ast", node_id)


def report_expression_value(correlation_id: Any, expression: str, value: Any, line: int,
                            source: str | None = None, node_id: str | None = None) -> None:
    """Record the value an expression had."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("expression_value", _now(), frame,
                   (_text(expression), _capture(value), line, node_id, source)))
    except Exception:
        _internal_error()


def report_ast_expression_value(correlation_id: Any, expression: str, value: Any, line: int,
                                node_id: str) -> None:
    """``report_expression_value`` tagged with the AST node id."""
    report_expression_value(correlation_id, expression, value, line, "ast", node_id)


def report_variable_snapshot(correlation_id: Any, variables: Mapping[str, Any], line: int,
                             source: str | None = None, node_id: str | None = None) -> None:
    """Record local variables (name -> value, redacted by name) at a line."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("variable_snapshot", _now(), frame,
                   (_values.capture_mapping(variables), line, node_id, source)))
    except Exception:
        _internal_error()


def report_ast_variable_snapshot(correlation_id: Any, variables: Mapping[str, Any], line: int,
                                 node_id: str) -> None:
    """``report_variable_snapshot`` tagged with the AST node id."""
    report_variable_snapshot(correlation_id, variables, line, "ast", node_id)


def report_ast_branch_execution(correlation_id: Any, branch_type: str, condition: Any,
                                branch_taken: Any, line: int, node_id: str) -> None:
    """Record which arm of a branch ran (``condition`` is its source text)."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("branch_execution", _now(), frame,
                   (_text(branch_type), _text(condition), _capture(branch_taken), line,
                    node_id)))
    except Exception:
        _internal_error()


def report_ast_loop_iteration(correlation_id: Any, loop_type: str, iteration: int,
                              current_value: Any, line: int, node_id: str) -> None:
    """Record one iteration of a loop (its count and the current value)."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("loop_iteration", _now(), frame,
                   (_text(loop_type), iteration, _capture(current_value), line, node_id)))
    except Exception:
        _internal_error()


def report_ast_pattern_match(correlation_id: Any, pattern: Any, value: Any, matched: bool,
                             line: int, node_id: str,
                             bindings: Mapping[str, Any] | None = None) -> None:
    """Record one ``case`` tried: the pattern's source, the subject, whether it matched,
    and the names it bound."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("pattern_match", _now(), frame,
                   (_text(pattern), _capture(value), bool(matched), line, node_id,
                    _values.capture_mapping(bindings))))
    except Exception:
        _internal_error()


def report_ast_correlation_performance(correlation_id: Any, operation: str,
                                       duration_ns: int) -> None:
    """Record how long an ascope-side correlation step took."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("correlation_performance", _now(), frame,
                   (_text(operation), _capture(duration_ns))))
    except Exception:
        _internal_error()


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
        _emit(("http_request_complete", now, frame,
               (_capture(status), _text(content_type), _capture(response_size),
                duration_ns if duration_ns is not None else _since(frame, now),
                _text(outcome))))
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


def _point(kind: str, build: Any) -> None:
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit((kind, _now(), frame, build()))
    except Exception:
        _internal_error()


def _finish(correlation_id: Any, kind: str, build: Any) -> None:
    if correlation_id is None:
        return
    try:
        frame = _pop(correlation_id)
        if _STATE.on:
            now = _now()
            _emit((kind, now, frame, build(frame, now)))
    except Exception:
        _internal_error()


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
            _emit(("channel_join_complete", _now(), frame,
                   (_text(path), _capture(result), _capture(close_code))))
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


# -- data (Ecto -> database drivers) ------------------------------------------------------------


def report_query_start(statement: Any, params: Any = None, database: Any = None,
                       metadata: Any = None) -> int | None:
    """Open a database query's operation."""
    if not _STATE.on:
        return None
    try:
        return _start("query_start", (_text(statement), _capture(params), _text(database),
                                      _capture(metadata)))
    except Exception:
        _internal_error()
        return None


def report_query_complete(correlation_id: Any, statement: Any = None, rows: Any = None,
                          duration_ns: int | None = None, error: Any = None) -> None:
    """Close a database query's operation (row count, or the error it raised)."""
    _finish(correlation_id, "query_complete",
            lambda frame, now: (_text(statement), _capture(rows),
                                duration_ns if duration_ns is not None else _since(frame, now),
                                None if error is None else _error_fields(error)[0]))


# -- services (GenServer -> stateful objects) ----------------------------------------------------


def report_service_callback_start(service: Any, callback: Any, args: Any = ()) -> int | None:
    """Open a call to a stateful service's method."""
    if not _STATE.on:
        return None
    try:
        return _start("service_callback_start",
                      (_text(service), _text(callback), _capture_args(args)))
    except Exception:
        _internal_error()
        return None


def report_service_callback_success(correlation_id: Any, service: Any, callback: Any,
                                    result: Any = None) -> None:
    """Record that a service method returned."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("service_callback_success", _now(), frame,
                   (_text(service), _text(callback), _capture(result))))
    except Exception:
        _internal_error()


def report_service_callback_error(correlation_id: Any, service: Any, callback: Any,
                                  error: Any, message: Any = None) -> None:
    """Record that a service method raised."""
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            _emit(("service_callback_error", _now(), frame,
                   (_text(service), _text(callback), *_error_fields(error, message))))
    except Exception:
        _internal_error()


def report_service_callback_complete(correlation_id: Any, service: Any, callback: Any) -> None:
    """Close a call to a service method."""
    _finish(correlation_id, "service_callback_complete",
            lambda frame, now: (_text(service), _text(callback), _since(frame, now)))


# -- distributed (nodes -> service instances) -----------------------------------------------------


def report_node_event(event: Any, node: Any, metadata: Any = None) -> None:
    """Record an event about a service instance (joined, left, unreachable...)."""
    _point("node_event", lambda: (_text(event), _capture(node), _capture(metadata)))


def report_partition_detected(nodes: Any, metadata: Any = None) -> None:
    """Record that a set of service instances can no longer reach each other."""
    _point("partition_detected", lambda: (_capture(nodes), _capture(metadata)))


# -- node ids --------------------------------------------------------------------------------


class NodeId(NamedTuple):
    """A parsed ``module:qualname:line:node_type`` node id."""

    module: str
    qualname: str
    line: int  # relative to the function's first line (0 = the def line)
    column: int | None  # present when two nodes of one type share a line
    node_type: str


_DOTTED = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*\Z")
_QUALNAME = re.compile(r"(?:[^\W\d]\w*|<[a-z]+>)(?:\.(?:[^\W\d]\w*|<[a-z]+>))*\Z")
_LINE = re.compile(r"(\d+)(?:\.(\d+))?\Z")
_NODE_TYPE = re.compile(r"[a-z][a-z0-9_]*\Z")


def validate_ast_node_id(node_id: Any) -> NodeId:
    """Parse a node id in the canonical ``module:qualname:line:node_type`` form.

    ``line`` is relative to the function's first line, with ``.column`` appended where two
    nodes of one type share a line: ``app.views:Handler.get:3:if``,
    ``app.views:Handler.get:5.17:ifexp``. Raises ``InvalidNodeId`` with the reason.
    """
    if not isinstance(node_id, str):
        raise InvalidNodeId(node_id, f"expected a str, got {type(node_id).__name__}")
    parts = node_id.split(":")
    if len(parts) != 4:
        raise InvalidNodeId(node_id, f"expected 4 ':'-separated parts "
                            f"(module:qualname:line:node_type), got {len(parts)}")
    module, qualname, line, node_type = parts
    if not _DOTTED.match(module):
        raise InvalidNodeId(node_id, f"module {module!r} is not a dotted Python name")
    if not _QUALNAME.match(qualname):
        raise InvalidNodeId(node_id, f"qualname {qualname!r} is not a dotted name "
                            "(parts may be <locals>, <lambda>...)")
    numbers = _LINE.match(line)
    if numbers is None:
        raise InvalidNodeId(node_id, f"line {line!r} is not LINE or LINE.COLUMN with "
                            "non-negative integers")
    if not _NODE_TYPE.match(node_type):
        raise InvalidNodeId(node_id, f"node type {node_type!r} is not a lowercase name "
                            "such as 'if' or 'for'")
    column = numbers.group(2)
    return NodeId(module, qualname, int(numbers.group(1)),
                  None if column is None else int(column), node_type)


# -- measuring -------------------------------------------------------------------------------


def measure_overhead(iterations: int = 10_000) -> dict[str, float]:
    """Time real report calls: entry and exit with capture on, and a call while off.

    Runs in the current thread with capture switched on for a private scope whose events
    are discarded by the writer (they pass through the ring, like real ones). The "off"
    figure is measured inside ``disabled()`` (one more lookup than the global switch).
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    from ._switch import enter_measure_scope  # noqa: PLC0415

    entry_ns = exit_ns = off_ns = 0
    with enter_measure_scope() as (turn_off, turn_on):
        done = 0
        while done < iterations:
            chunk = min(1000, iterations - done)
            for _ in range(chunk):
                t0 = _now()
                cid = report_function_entry("ascope.runtime", "measure_overhead", (1, 2))
                t1 = _now()
                report_function_exit(cid, None, 0)
                t2 = _now()
                entry_ns += t1 - t0
                exit_ns += t2 - t1
            turn_off()
            for _ in range(chunk):
                t0 = _now()
                report_function_entry("ascope.runtime", "measure_overhead", (1, 2))
                off_ns += _now() - t0
            turn_on()
            _pipeline.hand_off_current()
            done += chunk
    clock = _clock_cost()
    return {
        "entry_avg_ns": max(entry_ns / iterations - clock, 0.0),
        "exit_avg_ns": max(exit_ns / iterations - clock, 0.0),
        "disabled_avg_ns": max(off_ns / iterations - clock, 0.0),
    }


def _clock_cost() -> float:
    samples = []
    for _ in range(5):
        t0 = _now()
        for _ in range(1000):
            _now()
        samples.append((_now() - t0) / 1000)
    return min(samples)
