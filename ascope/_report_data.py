"""Report functions for databases (Ecto), stateful services (GenServer) and service
instances (nodes). Re-exported by ``ascope.runtime``."""

from __future__ import annotations

from typing import Any

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
    _since,
    _start,
    _text,
)

__all__ = [
    "report_node_event",
    "report_partition_detected",
    "report_query_complete",
    "report_query_start",
    "report_service_callback_complete",
    "report_service_callback_error",
    "report_service_callback_start",
    "report_service_callback_success",
]


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
            _emit("service_callback_success", _now(), frame,
                   (_text(service), _text(callback), _capture(result)))
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
            _emit("service_callback_error", _now(), frame,
                   (_text(service), _text(callback), *_error_fields(error, message)))
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
