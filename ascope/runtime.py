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

from collections.abc import Mapping
from typing import Any

from . import _context as _c
from . import _events, _pipeline, _report, _report_data, _report_web, _values
from ._pipeline import append_slow as _append_slow

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

# Sections of the API live in their own modules; this module is the one public face.
from ._node_ids import NodeId as NodeId
from ._node_ids import validate_ast_node_id as validate_ast_node_id
from ._report import (
    _ROOT,
    _SCALARS,
    _STATE,
    _active,
    _capture,
    _capture_args,
    _emit,
    _error_fields,
    _frame_for,
    _internal_error,
    _now,
    _pop,
    _since,
    _start,
    _text,
    _traceback_of,
)
from ._report import _diff as _diff
from ._report_data import report_node_event as report_node_event
from ._report_data import report_partition_detected as report_partition_detected
from ._report_data import report_query_complete as report_query_complete
from ._report_data import report_query_start as report_query_start
from ._report_data import report_service_callback_complete as report_service_callback_complete
from ._report_data import report_service_callback_error as report_service_callback_error
from ._report_data import report_service_callback_start as report_service_callback_start
from ._report_data import report_service_callback_success as report_service_callback_success
from ._report_web import report_action_complete as report_action_complete
from ._report_web import report_action_error as report_action_error
from ._report_web import report_action_parameters as report_action_parameters
from ._report_web import report_action_start as report_action_start
from ._report_web import report_action_success as report_action_success
from ._report_web import report_channel_join_complete as report_channel_join_complete
from ._report_web import report_channel_join_start as report_channel_join_start
from ._report_web import report_channel_message_complete as report_channel_message_complete
from ._report_web import report_channel_message_start as report_channel_message_start
from ._report_web import report_endpoint_entry as report_endpoint_entry
from ._report_web import report_endpoint_exit as report_endpoint_exit
from ._report_web import report_http_request_complete as report_http_request_complete
from ._report_web import report_http_request_start as report_http_request_start
from ._report_web import report_live_assigns as report_live_assigns
from ._report_web import report_live_callback as report_live_callback
from ._report_web import report_live_callback_error as report_live_callback_error
from ._report_web import report_live_callback_success as report_live_callback_success
from ._report_web import report_live_event as report_live_event
from ._report_web import report_live_event_complete as report_live_event_complete
from ._report_web import report_live_event_start as report_live_event_start
from ._report_web import report_live_mount_complete as report_live_mount_complete
from ._report_web import report_live_mount_start as report_live_mount_start

_next_id = _c.ids.__next__
# Assigned, not imported: Python 3.11 compiles ``name.method()`` on an imported name as an
# attribute load plus a call, making a bound method object every time (~400 CPU
# instructions per call here); on an assigned name it loads the method directly.
_current = _c.current


def _rebind_ids() -> None:  # after a fork, ids come from the child's own counter
    global _next_id
    _next_id = _c.ids.__next__


_c._after_reseed.append(_rebind_ids)

# -- context ---------------------------------------------------------------------------------


def enabled() -> bool:
    """Whether capture is on for the current task: the cheapest check in the library."""
    return _STATE.on and _current.get()[5]


def current_correlation_id() -> int | None:
    """The correlation id of the operation current in this task, or None."""
    correlation_id: int | None = _current.get()[0]
    return correlation_id


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


# -- core ------------------------------------------------------------------------------------


def report_function_entry(module: Any, function: Any, args: Any = (),
                          correlation_id: Any = None) -> int | None:
    """Record a call: returns its correlation id (current for nested calls until exit),
    or None when capture is off. ``args`` is a sequence or a name -> value mapping."""
    if not _STATE.on:
        return None
    try:
        parent = _current.get()
        parent_id, _, _, task, trace, enabled, scope, _, ring = parent
        if not enabled:
            return None
        cid = _next_id() if correlation_id is None else correlation_id
        now = _now()
        # _pipeline.emit_event, inlined, with the payload flat (one tuple fewer): this is
        # the hottest call there is. The event first: a failure capturing it must not
        # leave the call current with no exit to come.
        event = ("function_entry", now, cid, parent_id, task, trace, scope,
                 module if type(module) is str else _text(module),
                 function if type(function) is str else _text(function),
                 _capture_args(args), None, None)
        if ring is not None and len(ring.buffer) < ring.high_water:
            ring.buffer.append(event)
        else:
            _append_slow(ring, event)
        _current.set((cid, parent_id, parent, task, trace, True, scope, now, ring))
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
        cid, parent_id, _, task, trace, _, scope, start, ring = frame
        if duration_ns is None and start:
            duration_ns = now - start
        event = ("function_exit", now, cid, parent_id, task, trace, scope,
                 result if result is None or type(result) in _SCALARS else _capture(result),
                 duration_ns, outcome, None, None)
        # _pipeline.emit_event, inlined, flat
        if ring is not None and len(ring.buffer) < ring.high_water:
            ring.buffer.append(event)
        else:
            _append_slow(ring, event)
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
            _emit("error", _now(), frame,
                   (type_name, text, _traceback_of(error, traceback), source))
    except Exception:
        _internal_error()


def report_task_spawn(child_task_id: Any, coroutine: Any = None, name: Any = None) -> None:
    """Record that the current task spawned another (the task factory does this itself)."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit("task_spawn", _now(), frame,
                   (_capture(child_task_id), _text(coroutine), _text(name)))
    except Exception:
        _internal_error()


def report_task_exit(outcome: str, duration_ns: int | None = None, error: Any = None,
                     name: Any = None) -> None:
    """Record the end of the current task (the task factory does this itself)."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit("task_exit", _now(), frame,
                  (_text(outcome), duration_ns, _text(error), _text(name)))
    except Exception:
        _internal_error()


def report_message_send(target: Any, message: Any) -> None:
    """Record a message sent to another task, queue or service."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit("message_send", _now(), frame, (_text(target), _capture(message)))
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
            # The snapshots are the writer's now: it computes the diff, off the loop.
            diff = _values.Later(_diff, old, new) if diff is None else _capture(diff)
            _emit("state_change", _now(), frame, (_text(target), old, new, diff))
    except Exception:
        _internal_error()


def report_event(kind: str, data: Mapping[str, Any] | None = None) -> None:
    """Record an event of a kind of your own, with a mapping of captured values."""
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            name = kind if type(kind) is str and len(kind) <= 128 else _values.guarded_repr(
                kind, 128)
            _emit(name, _now(), frame, _values.capture_mapping(data) or {})
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
        _emit("function_exit", now, frame,
               (_capture(result), duration_ns, outcome, "ast", node_id))
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
            _emit("line_execution", _now(), frame,
                   (line, None if context is None else _capture(context), node_id, source))
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
            _emit("expression_value", _now(), frame,
                   (_text(expression), _capture(value), line, node_id, source))
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
            _emit("variable_snapshot", _now(), frame,
                   (_values.capture_mapping(variables), line, node_id, source))
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
            _emit("branch_execution", _now(), frame,
                   (_text(branch_type), _text(condition), _capture(branch_taken), line,
                    node_id))
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
            _emit("loop_iteration", _now(), frame,
                   (_text(loop_type), iteration, _capture(current_value), line, node_id))
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
            _emit("pattern_match", _now(), frame,
                   (_text(pattern), _capture(value), bool(matched), line, node_id,
                    _values.capture_mapping(bindings)))
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
            _emit("correlation_performance", _now(), frame,
                   (_text(operation), _capture(duration_ns)))
    except Exception:
        _internal_error()


# -- measuring -------------------------------------------------------------------------------


def measure_overhead(iterations: int = 10_000) -> dict[str, float]:
    """Time real report calls: entry and exit with capture on, and a call while off.

    Runs in the current thread with capture switched on for a private scope whose events
    are discarded by the writer (they pass through the ring, like real ones). The "off"
    figure is measured inside ``disabled()`` (one more lookup than the global switch).
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    from ._switch import enter_measure_scope

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


# -- the compiled hot path ---------------------------------------------------------------------

#: The pure-Python versions of the functions ``ascope._speedups`` replaces, kept for tests
#: and for comparison (benchmarks/bench_runtime.py times both).
PURE_PYTHON = {"report_function_entry": report_function_entry,
               "report_function_exit": report_function_exit,
               "report_line_execution": report_line_execution,
               "report_expression_value": report_expression_value,
               "report_variable_snapshot": report_variable_snapshot,
               "report_ast_branch_execution": report_ast_branch_execution,
               "report_ast_loop_iteration": report_ast_loop_iteration}


_speedups = _c.load_speedups()
#: Whether the compiled hot path is in use (False: not built, or ASCOPE_NO_EXTENSIONS set).
COMPILED = _speedups is not None
if _speedups is not None:
    # The writer's row building (ascope._events keeps the Python one as PURE_BUILD_ROWS).
    _events.build_rows = _speedups.build_rows
    # Events appended untracked by the collector (_pipeline keeps the Python one as
    # PURE_EMIT_EVENT), in every module that bound it before this point.
    for _module in (_report, _report_web, _report_data):
        _module._emit = _speedups.emit_event  # type: ignore[attr-defined]
    _pipeline.emit_event = _emit = _speedups.emit_event
    # New trace ids written in C (_context keeps the Python one as PURE_NEW_TRACE_ID).
    _c.new_trace_id = _speedups.new_trace_id
    # The SQLite store's segment index (the Python one stays as python_segment_index).
    from .sinks import _sqlite

    _sqlite._segment_index = _speedups.segment_index
    for _name, _pure in PURE_PYTHON.items():
        _compiled = getattr(_speedups, _name)
        _compiled.__doc__ = _pure.__doc__
        globals()[_name] = _compiled
