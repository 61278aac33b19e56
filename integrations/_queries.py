"""What the database integrations share: opening and closing one query operation.

A query can pass through two integrations: SQLAlchemy's events see it, then the driver
underneath (asyncpg, sqlite3, aiosqlite) runs it. The outer layer registers the ids of
the queries it has open, and a driver that finds one of them current stays quiet, so a
statement is reported once, by the layer that knows the most about it (SQLAlchemy's
parameters are named, the driver's are positional). The check costs a set lookup, and
only while capture is on and SQLAlchemy has a query open.
"""

from __future__ import annotations

from typing import Any

from ascope import runtime
from ascope._context import STATE, current, load_speedups
from ascope._report import _start, _text
from ascope._values import SETTINGS, capture, capture_args

__all__ = ["close_outer", "complete", "driver_may_report", "open_outer", "rows_from_status",
           "start"]

_MAX_OPEN_OUTER = 4096
# Imported by name by sqlite.py, whose statements check it is empty without a call:
# change it in place, never rebind it.
_open_outer: set[int] = set()


def driver_may_report() -> bool:
    """Whether a driver should report the query it is about to run: not when capture is
    off, for this task (a request left out by ``sample_rate``, ``disabled()``) or at all,
    nor under an outer layer's open query."""
    if not STATE.on:
        return False
    try:
        if not current.get()[5]:
            return False
    except Exception:  # not a frame (counted): the statement runs unrecorded
        STATE.internal_errors += 1
        return False
    return not (_open_outer and runtime.current_correlation_id() in _open_outer)


def start(statement: Any, params: Any, database: Any, metadata: Any) -> int | None:
    """Open a query operation (nested under the current one); its id, or None.

    ``report_query_start`` with two costs taken off the per-query path: ``metadata`` is
    one of the integration's own constant dicts (never mutated, so it needs no snapshot),
    and a short tuple or dict of parameters goes through the argument capture, which
    keeps a tuple of scalars as it is and redacts a dict by key.
    """
    if not STATE.on:
        return None
    try:
        # Capture off here (a request left out by sample_rate): nothing is captured for
        # nothing.
        if not current.get()[5]:
            return None
        return _start("query_start", (_text(statement), _parameters(params), _text(database),
                                      metadata))
    except Exception:
        STATE.internal_errors += 1
        return None


def _parameters(params: Any) -> Any:
    # Short tuples and dicts take the argument capture's fast path; anything else (an
    # executemany's thousands of rows, a 10,000-item IN list) the bounded snapshot, which
    # keeps the first items and counts the rest.
    kind = type(params)
    if params is None:
        return None
    if (kind is tuple or kind is dict) and len(params) <= SETTINGS.limits.max_length:
        return capture_args(params)
    return capture(params)


def open_outer(correlation_id: int | None) -> None:
    """Mark a query opened by an outer layer, so the drivers under it stay quiet."""
    if correlation_id is not None:
        if len(_open_outer) >= _MAX_OPEN_OUTER:  # completions lost (a killed thread): forget
            _open_outer.clear()
        _open_outer.add(correlation_id)


def close_outer(correlation_id: int | None) -> None:
    if correlation_id is not None:
        _open_outer.discard(correlation_id)


def complete(correlation_id: int | None, statement: Any, rows: Any = None,
             error: BaseException | None = None) -> None:
    """Close a query operation; an error is also recorded (with its message) inside it."""
    if correlation_id is None:
        return
    if error is not None:
        runtime.report_error(error, correlation_id=correlation_id, source="query")
    runtime.report_query_complete(correlation_id, statement, rows, error=error)


def rows_from_status(status: Any) -> int | None:
    """The row count in a PostgreSQL command tag (``"INSERT 0 5"`` -> 5), if it has one."""
    if type(status) is not str:
        return None
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else None


#: The Python ``start`` and ``complete``; ascope._speedups has the same code compiled and
#: takes their place where it is built (tests/test_speedups.py compares the two).
PURE_START = start
PURE_COMPLETE = complete

_speedups = load_speedups()
if _speedups is not None:
    globals().update(start=_speedups.query_start, complete=_speedups.query_complete)
