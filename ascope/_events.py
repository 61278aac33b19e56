"""Events: the flat tuples on the hot path and the ``Event`` objects sinks receive.

On the hot path an event is a flat tuple ``(kind, ts_ns, correlation_id, parent_id,
task_id, trace_id, scope, payload)`` (see ``_pipeline.emit_event``) and ``payload`` is a
tuple whose positions are named by ``SCHEMA[kind]``. Naming happens
behind the ring, in the writer thread, so the hot path never builds a dict for the event
itself. Kinds without a schema entry carry a ready-made dict as their payload.

``docs/events.md`` documents every kind's data keys; ``tests/test_events.py`` checks the
two agree.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from . import _context as _c
from . import _values
from ._values import normalize


class Node(NamedTuple):
    """The process an event came from: two workers writing one store never collide."""

    host: str
    pid: int
    started_ns: int  # wall-clock time the process loaded ascope, in ns since the epoch


def _this_node() -> Node:
    return Node(socket.gethostname(), os.getpid(), time.time_ns())


NODE = _this_node()


def _refresh_node_after_fork() -> None:
    global NODE
    NODE = _this_node()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_refresh_node_after_fork)


class Event(NamedTuple):
    """One recorded fact. What sinks receive and what the read side returns.

    A NamedTuple rather than a frozen dataclass: the writer builds one per event, and
    building a tuple costs a fifth of a frozen dataclass's ``__init__``.
    """

    kind: str
    ts_ns: int  # monotonic clock (time.perf_counter_ns) when the event happened
    wall_ns: int  # wall-clock time (ns since the epoch) of the same instant
    correlation_id: int | None  # the operation this event belongs to
    parent_id: int | None  # the operation that was current when that one started
    task_id: int | None  # the asyncio task (ascope's id), None outside a tracked task
    trace_id: str | None  # W3C trace id of the request, when there is one
    node: Node
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ts_ns": self.ts_ns,
            "wall_ns": self.wall_ns,
            "correlation_id": self.correlation_id,
            "parent_id": self.parent_id,
            "task_id": self.task_id,
            "trace_id": self.trace_id,
            "node": list(self.node),
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        return cls(
            raw["kind"], raw["ts_ns"], raw["wall_ns"], raw["correlation_id"],
            raw["parent_id"], raw["task_id"], raw["trace_id"], Node(*raw["node"]), raw["data"],
        )


# Field names of each kind's payload tuple, in order. docs/events.md describes them.
SCHEMA: dict[str, tuple[str, ...]] = {
    # core
    "function_entry": ("module", "function", "args", "source", "node_id"),
    "function_exit": ("result", "duration_ns", "outcome", "source", "node_id"),
    "error": ("type", "message", "traceback", "source"),
    "task_spawn": ("child_task_id", "coroutine", "name"),
    "task_exit": ("outcome", "duration_ns", "error", "name"),
    "message_send": ("target", "message"),
    "state_change": ("target", "before", "after", "diff"),
    # AST
    "line_execution": ("line", "context", "node_id", "source"),
    "expression_value": ("expression", "value", "line", "node_id", "source"),
    "variable_snapshot": ("variables", "line", "node_id", "source"),
    "branch_execution": ("branch_type", "condition", "branch_taken", "line", "node_id"),
    "loop_iteration": ("loop_type", "iteration", "value", "line", "node_id"),
    "pattern_match": ("pattern", "value", "matched", "line", "node_id", "bindings"),
    "correlation_performance": ("operation", "duration_ns"),
    # web: HTTP
    "http_request_start": ("method", "path", "params", "client", "headers", "route"),
    "http_request_complete": ("status", "content_type", "response_size", "duration_ns",
                              "outcome"),
    "endpoint_entry": ("endpoint", "action", "params", "route"),
    "endpoint_exit": ("endpoint", "action", "result", "outcome", "duration_ns"),
    "action_start": ("endpoint", "action", "params"),
    "action_parameters": ("endpoint", "action", "params"),
    "action_success": ("endpoint", "action", "result"),
    "action_error": ("endpoint", "action", "type", "message"),
    "action_complete": ("endpoint", "action", "duration_ns"),
    # web: channels (websockets)
    "channel_join_start": ("path", "params", "socket"),
    "channel_join_complete": ("path", "result", "close_code"),
    "channel_message_start": ("path", "event", "payload"),
    "channel_message_complete": ("path", "event", "result", "duration_ns"),
    # web: live sessions
    "live_mount_start": ("view", "params", "session"),
    "live_mount_complete": ("view", "assigns", "duration_ns"),
    "live_event_start": ("view", "event", "params", "assigns"),
    "live_event_complete": ("view", "event", "assigns", "result", "duration_ns"),
    "live_assigns": ("view", "before", "after"),
    "live_event": ("view", "event", "params"),
    "live_callback": ("view", "callback", "args"),
    "live_callback_success": ("view", "callback", "result"),
    "live_callback_error": ("view", "callback", "type", "message"),
    # data
    "query_start": ("statement", "params", "database", "metadata"),
    "query_complete": ("statement", "rows", "duration_ns", "error"),
    # outgoing HTTP (integrations/httpx.py)
    "http_client_start": ("method", "url", "traceparent"),
    "http_client_complete": ("status", "duration_ns", "error", "headers_ns", "size"),
    # services (the GenServer counterpart)
    "service_callback_start": ("service", "callback", "args"),
    "service_callback_success": ("service", "callback", "result"),
    "service_callback_error": ("service", "callback", "type", "message"),
    "service_callback_complete": ("service", "callback", "duration_ns"),
    # distributed
    "node_event": ("event", "node", "metadata"),
    "partition_detected": ("nodes", "metadata"),
}

KINDS = frozenset(SCHEMA)


def build_event(raw: tuple[Any, ...], wall_offset_ns: int, node: Node) -> Event:
    """Turn one hot-path tuple into an Event (the writer uses ``build_events``)."""
    return build_events([raw], wall_offset_ns, node)[0]


_new_event = tuple.__new__
_MIN, _MAX = -(2**63), 2**63 - 1


# A stored row: (kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id, data),
# ``data`` a list of the kind's field values in SCHEMA order, or a dict (kinds outside
# SCHEMA, ``report_event`` mappings, and the error marker).
Row = tuple[str, int, int, Any, Any, Any, Any, Any]


def build_rows(batch: Sequence[tuple[Any, ...]], wall_offset_ns: int) -> list[Row]:
    """Finish a batch of hot-path tuples off the loop: every value plain, bounded JSON.

    The writer's hottest code, in one tight loop. Field values stay a list in SCHEMA
    order (the SQLite store keeps them so: no dict per event); ``build_events`` names
    them. An event that cannot be built is replaced by an ``ascope_error`` row saying so
    (and counted), so the batch keeps its length and order.
    """
    schema_get = SCHEMA.get
    max_string = _values.SETTINGS.max_string
    rows: list[Row] = []
    append = rows.append
    for raw in batch:
        try:
            if len(raw) == 8:
                kind, ts_ns, correlation_id, parent_id, task_id, trace_id, _scope, payload = raw
            else:  # a hot event, its payload inlined (see _pipeline.emit_event)
                kind, ts_ns, correlation_id, parent_id, task_id, trace_id, _scope = raw[:7]
                payload = raw[7:]
            fields = schema_get(kind)
            # report_event's mapping, or a payload that is not a sequence of the kind's
            # values: recorded whole, and never iterated here (an iterator the program
            # still holds would be used up by the writer's thread).
            if fields is None or (type(payload) is not tuple and type(payload) is not list):
                data: Any = (normalize(payload) if isinstance(payload, dict)
                             else {"value": normalize(payload)})
            else:
                # Plain values as they are (checked by identity: cheaper than a set);
                # anything else made plain and bounded.
                data = [value if ((kind_of := type(value)) is str and len(value) <= max_string)
                        or value is None or kind_of is bool
                        or (kind_of is int and _MIN <= value <= _MAX)
                        else normalize(value)
                        for value in payload]
                if len(data) > len(fields):
                    del data[len(fields):]  # values past the kind's fields have no name
            if correlation_id is not None and not (type(correlation_id) is int
                                                   and _MIN <= correlation_id <= _MAX):
                correlation_id = id_text(correlation_id)  # an id given by hand
            if parent_id is not None and not (type(parent_id) is int
                                              and _MIN <= parent_id <= _MAX):
                parent_id = id_text(parent_id)
            if trace_id is not None and not (type(trace_id) is str and len(trace_id) <= 64):
                trace_id = _values.guarded_repr(trace_id, 64)
            append((kind, ts_ns, ts_ns + wall_offset_ns, correlation_id, parent_id, task_id,
                    trace_id, data))
        except Exception as error:
            _c.STATE.internal_errors += 1
            append(("ascope_error", 0, wall_offset_ns, None, None, None, None,
                    {"error": type(error).__qualname__, "while": "building"}))
    return rows


#: The Python ``build_rows``; ascope.runtime puts the compiled one (ascope._speedups, the
#: same code) in its place where it is built.
PURE_BUILD_ROWS = build_rows


def data_of(kind: str, data: Any) -> Mapping[str, Any]:
    """A row's data as the mapping events carry: field values named by SCHEMA."""
    if type(data) is list:
        # zip() without strict=: the keyword alone costs more than the zip (a short
        # list leaves the remaining fields out).
        return dict(zip(SCHEMA.get(kind, ()), data))  # noqa: B905
    return data  # type: ignore[no-any-return]


def events_of(rows: Sequence[Row], node: Node) -> list[Event]:
    """Rows as Events (what the memory and JSON lines sinks and captures receive)."""
    new = _new_event
    return [new(Event, (kind, ts, wall, cid, pid, task, trace, node, data_of(kind, data)))
            for kind, ts, wall, cid, pid, task, trace, data in rows]


def build_events(batch: Sequence[tuple[Any, ...]], wall_offset_ns: int,
                 node: Node) -> list[Event]:
    """``build_event`` over a batch: ``build_rows``, then named."""
    return events_of(build_rows(batch, wall_offset_ns), node)


def id_text(value: Any) -> str:
    """A correlation id given by hand that is not a 63-bit int: a string (as it is when
    short, else its bounded repr), so the stores can index it like any other id."""
    if type(value) is str and len(value) <= 64:
        return value
    return _values.guarded_repr(value, 64)


def wall_offset_ns() -> int:
    """Offset that turns a perf_counter_ns reading into wall-clock ns since the epoch."""
    return time.time_ns() - time.perf_counter_ns()
