"""asyncpg: every query a connection, a pool or a prepared statement runs.

The query methods of ``asyncpg.connection.Connection`` and of
``asyncpg.prepared_stmt.PreparedStatement`` are wrapped on the classes. A pool needs
nothing more: ``Pool.fetch`` and friends call the connection's methods, and the proxy a
pool hands out (``PoolConnectionProxy``) looks the method up on the connection's class
at each call. The wrapper runs in the awaiting task, so the query nests under whatever
operation is current there (request, endpoint, task, function).

Recorded per query: the statement, its positional arguments (bounded), the database,
``{"system", "driver", "call"}`` as metadata, the row count (from the command tag or the
rows returned, when there is one), the duration, and the error (type in the completion,
message in an ``error`` event inside the query). Transaction statements (``BEGIN``,
``COMMIT``...) and the reset query a pool runs on release are real round trips and are
recorded too. A cursor (``Connection.cursor``) records one query per round trip: opening
it (``cursor.open``) and each batch it fetches (``cursor.fetch``, rows in the batch).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from asyncpg import connection as _connection  # type: ignore[import-untyped]
from asyncpg import cursor as _cursor
from asyncpg import prepared_stmt as _prepared

from ._patch import Patches
from ._queries import complete, driver_may_report, rows_from_status, start

__all__ = ["install", "uninstall"]

LIBRARY = "asyncpg"

Describe = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]
Count = Callable[[Any], Any]


def _query_and_args(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    if args:
        return args[0], args[1:] or None
    return kwargs.get("query"), None


def _query_and_many(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    many = args[1] if len(args) > 1 else kwargs.get("args")
    # A generator of argument tuples must not be consumed here: only lists are captured.
    return (args[0] if args else kwargs.get("command"),
            many if isinstance(many, (list, tuple)) else None)


def _copy_to(direction: str) -> Describe:
    def describe(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        table = args[0] if args else kwargs.get("table_name")
        schema = kwargs.get("schema_name")
        name = f"{schema}.{table}" if schema else f"{table}"
        return f"COPY {name} {direction}", None
    return describe


def _prepared_args(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return self.get_query(), args or None


def _prepared_many(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    many = args[0] if args else kwargs.get("args")
    return self.get_query(), many if isinstance(many, (list, tuple)) else None


def _cursor_with_args(self: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return getattr(self, "_query", None), getattr(self, "_args", None) or None


def _cursor_only(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return getattr(self, "_query", None), None


def _count_list(result: Any) -> Any:
    return len(result) if isinstance(result, list) else None


def _count_row(result: Any) -> Any:
    return 0 if result is None else 1


def _count_none(result: Any) -> Any:
    return None


_CONNECTION_METHODS: dict[str, tuple[Describe, Count]] = {
    "execute": (_query_and_args, rows_from_status),
    "executemany": (_query_and_many, _count_none),
    "fetch": (_query_and_args, _count_list),
    "fetchrow": (_query_and_args, _count_row),
    "fetchval": (_query_and_args, _count_none),
    "fetchmany": (_query_and_many, _count_list),
    "copy_from_table": (_copy_to("TO STDOUT"), rows_from_status),
    "copy_from_query": (_query_and_args, rows_from_status),
    "copy_to_table": (_copy_to("FROM STDIN"), rows_from_status),
    "copy_records_to_table": (_copy_to("FROM STDIN"), rows_from_status),
}

_PREPARED_METHODS: dict[str, tuple[Describe, Count]] = {
    "fetch": (_prepared_args, _count_list),
    "fetchrow": (_prepared_args, _count_row),
    "fetchval": (_prepared_args, _count_none),
    "fetchmany": (_prepared_many, _count_list),
    "executemany": (_prepared_many, _count_none),
}


# A cursor's round trips: open the portal (with the arguments), or open it and fetch the
# first batch, then one fetch per batch. These are asyncpg's private methods: on a version
# without them, cursors are simply not recorded.
_CURSOR_METHODS: dict[str, tuple[Describe, Count]] = {
    "_bind": (_cursor_with_args, _count_none),
    "_bind_exec": (_cursor_with_args, _count_list),
    "_exec": (_cursor_only, _count_list),
}
_CURSOR_CALLS = {"_bind": "cursor.open", "_bind_exec": "cursor.fetch", "_exec": "cursor.fetch"}


def _database(connection: Any) -> Any:
    params = getattr(connection, "_params", None)
    return getattr(params, "database", None)


def _wrapper(patches: Patches, original: Any, call: str, describe: Describe, count: Count,
             connection_of: Callable[[Any], Any]) -> Any:
    metadata = {"system": "postgresql", "driver": "asyncpg", "call": call}

    async def observe(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                      awaitable: Any) -> Any:
        try:
            statement, params = describe(self, args, kwargs)
            cid = start(statement, params, _database(connection_of(self)), metadata)
        except Exception:  # odd arguments: the driver will say what is wrong with them
            cid = None
        if cid is None:
            return await awaitable
        try:
            result = await awaitable
        except BaseException as error:  # cancellation too: the query did end
            complete(cid, statement, None, error)
            raise
        try:
            rows = count(result)
        except Exception:
            rows = None
        complete(cid, statement, rows)
        return result

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def run_query(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not (patches.active and driver_may_report()):
                return await original(self, *args, **kwargs)
            return await observe(self, args, kwargs, original(self, *args, **kwargs))

        return run_query

    # PreparedStatement's methods are plain functions that check the connection at once
    # (raising before any await) and return a coroutine: so is the wrapper. Whether the
    # query is recorded is decided when that coroutine runs, in the awaiting task, as for
    # the connection's methods: capture may be off where it was created and on where it
    # is awaited (``disabled()``, a task left out by sampling), or the other way round.
    async def run_when_awaited(self: Any, args: Any, kwargs: Any, pending: _Pending) -> Any:
        awaitable, pending.coroutine = pending.coroutine, None
        if not (patches.active and driver_may_report()):
            return await awaitable
        return await observe(self, args, kwargs, awaitable)

    # A coroutine never awaited warns under the driver's name, as without ascope.
    run_when_awaited.__qualname__ = getattr(original, "__qualname__", call)

    @functools.wraps(original)
    def run_prepared(self: Any, *args: Any, **kwargs: Any) -> Any:
        return run_when_awaited(self, args, kwargs, _Pending(original(self, *args, **kwargs)))

    return run_prepared


class _Pending:
    """A prepared statement's coroutine, until the wrapper's coroutine takes it. If that
    one never runs (its task cancelled before the first step, ``close()``), this closes
    the driver's: left to the garbage collector, it would warn that it was never awaited,
    which it does not without ascope."""

    __slots__ = ("coroutine",)

    def __init__(self, coroutine: Any) -> None:
        self.coroutine = coroutine

    def __del__(self) -> None:
        if self.coroutine is not None:
            self.coroutine.close()


_patches: Patches | None = None


def install() -> None:
    global _patches
    if _patches is not None:
        return
    patches = Patches()
    for name, (describe, count) in _CONNECTION_METHODS.items():
        if hasattr(_connection.Connection, name):
            patches.wrap(_connection.Connection, name,
                         functools.partial(_make, patches, name, describe, count, _itself))
    for name, (describe, count) in _PREPARED_METHODS.items():
        if hasattr(_prepared.PreparedStatement, name):
            patches.wrap(_prepared.PreparedStatement, name,
                         functools.partial(_make, patches, f"prepared.{name}", describe, count,
                                           _owning_connection))
    base_cursor = getattr(_cursor, "BaseCursor", None)
    for name, (describe, count) in _CURSOR_METHODS.items():
        if base_cursor is not None and inspect.iscoroutinefunction(
                base_cursor.__dict__.get(name)):
            patches.wrap(base_cursor, name,
                         functools.partial(_make, patches, _CURSOR_CALLS[name], describe, count,
                                           _owning_connection))
    patches.active = True
    _patches = patches


def uninstall() -> None:
    global _patches
    if _patches is not None:
        _patches.restore()
        _patches = None


def _make(patches: Patches, call: str, describe: Describe, count: Count,
          connection_of: Callable[[Any], Any], original: Any) -> Any:
    return _wrapper(patches, original, call, describe, count, connection_of)


def _itself(connection: Any) -> Any:
    return connection


def _owning_connection(statement: Any) -> Any:
    return getattr(statement, "_connection", None)
