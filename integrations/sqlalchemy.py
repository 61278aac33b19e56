"""SQLAlchemy 2: every statement an engine (sync or async) sends to the database.

Three listeners on the ``Engine`` *class* cover every engine, including those created
before ``enable()`` and the sync engine inside each ``AsyncEngine``:
``before_cursor_execute`` opens a query operation, ``after_cursor_execute`` closes it
with the row count, ``handle_error`` closes it with the error (cancellation included).

Correlation with an async engine: SQLAlchemy runs the sync events inside a greenlet,
and that greenlet runs in the *same* ``contextvars.Context`` as the awaiting task
(``_AsyncIoGreenlet`` takes its driver's ``gr_context``). So a query opened in
``before_cursor_execute`` nests under the task's current operation, the driver's
coroutine (awaited by the task while the greenlet waits) sees the query as current,
and the query is closed in that same context. The driver integrations underneath
(asyncpg, aiosqlite, sqlite3) see SQLAlchemy's query current and stay quiet, so each
statement is reported once, by the layer that knows its parameters by name.

Parameters: by name (``{"author_id_1": 3}``) for statements SQLAlchemy compiled (Core,
ORM, ``text()``), so sensitive names are redacted; as sent to the driver for
``exec_driver_sql``. An ``executemany`` records the list of parameter sets (bounded).

Rows: the cursor's ``rowcount`` for statements that change rows; for a ``SELECT``, the
number of rows the driver buffered when that is known at execution time (the asyncio
adapters fetch the whole result up front), else None.
"""

from __future__ import annotations

import collections
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from ascope._context import STATE, current

from ._queries import close_outer, complete, open_outer, start

__all__ = ["install", "uninstall"]

LIBRARY = "sqlalchemy"

_ATTRIBUTE = "_ascope_query"

_engines: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any], dict[str, Any]]] = (
    weakref.WeakKeyDictionary())


def _describe(connection: Any, executemany: bool) -> tuple[Any, dict[str, Any]]:
    """(database, metadata) of a connection's engine, computed once per engine."""
    engine = connection.engine
    known = _engines.get(engine)
    if known is None:
        dialect = engine.dialect
        base = {"system": dialect.name, "driver": dialect.driver, "library": "sqlalchemy"}
        known = (engine.url.database, {**base, "executemany": False},
                 {**base, "executemany": True})
        try:
            _engines[engine] = known
        except TypeError:  # not weakly referenceable: describe it again next time
            pass
    return known[0], known[2] if executemany else known[1]


def _parameters(context: Any, parameters: Any, executemany: bool) -> Any:
    """The statement's parameters by name when SQLAlchemy compiled it, else as sent.

    Names read better than the driver's positions (asyncpg's ``$1``, sqlite's ``?``) and
    let the value capture redact a parameter called ``password`` or ``token``.
    """
    compiled = getattr(context, "compiled", None)
    named = getattr(context, "compiled_parameters", None) if compiled is not None else None
    if type(named) is list and named:
        return named if executemany else named[0]
    return parameters


def _before_cursor_execute(connection: Any, cursor: Any, statement: Any, parameters: Any,
                           context: Any, executemany: bool) -> None:
    if not STATE.on or context is None:
        return
    try:
        if not current.get()[5]:
            return  # off for this task (a request left out by sample_rate, disabled())
        database, metadata = _describe(connection, executemany)
        cid = start(statement, _parameters(context, parameters, executemany), database,
                    metadata)
        if cid is not None:
            open_outer(cid)
            setattr(context, _ATTRIBUTE, (cid, statement))
    except Exception:  # never let the observer break the statement
        STATE.internal_errors += 1


def _rows(cursor: Any) -> Any:
    count = getattr(cursor, "rowcount", None)
    if type(count) is int and count >= 0:
        return count
    buffered = getattr(cursor, "_rows", None)  # the asyncio adapters' prefetched result
    if type(buffered) is collections.deque or type(buffered) is list:
        return len(buffered)
    return None


def _after_cursor_execute(connection: Any, cursor: Any, statement: Any, parameters: Any,
                          context: Any, executemany: bool) -> None:
    opened = getattr(context, _ATTRIBUTE, None)
    if opened is None:
        return
    try:
        setattr(context, _ATTRIBUTE, None)
        cid, text = opened
        close_outer(cid)
        complete(cid, text, _rows(cursor))
    except Exception:
        STATE.internal_errors += 1


def _handle_error(exception_context: Any) -> None:
    context = exception_context.execution_context
    opened = getattr(context, _ATTRIBUTE, None)
    if opened is None:
        return
    try:
        setattr(context, _ATTRIBUTE, None)
        cid, text = opened
        close_outer(cid)
        complete(cid, text, None, exception_context.original_exception)
    except Exception:
        STATE.internal_errors += 1


_LISTENERS = (
    ("before_cursor_execute", _before_cursor_execute),
    ("after_cursor_execute", _after_cursor_execute),
    ("handle_error", _handle_error),
)

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    for name, listener in _LISTENERS:
        if not event.contains(Engine, name, listener):
            event.listen(Engine, name, listener)
    _installed = True


def uninstall() -> None:
    global _installed
    for name, listener in _LISTENERS:
        if event.contains(Engine, name, listener):
            event.remove(Engine, name, listener)
    _installed = False
