"""sqlite3 and aiosqlite: every statement a connection runs.

**sqlite3.** ``sqlite3.Connection`` and ``sqlite3.Cursor`` are C types whose methods
cannot be replaced, but they can be subclassed. ``sqlite3.connect`` (and its alias
``sqlite3.dbapi2.connect``, which SQLAlchemy calls) is wrapped to pass a
``factory=`` subclass that records ``execute``/``executemany``/``executescript``; a
factory the caller gives is subclassed the same way (one class per factory, cached).
The subclass also overrides ``Connection.execute`` and friends, because the C versions
run their cursor's C methods directly and would skip a Python override. The caller's
class comes first in the subclass (``Ascope<Class>(Class, <ascope's>)``), so methods it
overrides run as they would without ascope, and reach the recording ones through
``super()``. A connection
opened before ``enable()``, or with ``sqlite3.Connection(...)`` itself, is not recorded.

**aiosqlite** runs each connection's sqlite3 calls on a thread of its own that does
not copy the caller's context, so a report made there could not know the task or the
request. Queries are reported on the async side instead: aiosqlite sends every call
through ``Connection._execute(fn, *args)`` (awaited by the calling task), which is
wrapped to open the query before handing the call to the thread and close it when the
result comes back. The thread-side connection is told to stay quiet.

Rows: ``rowcount`` for statements that change rows, the number of rows returned by
``execute_fetchall``; None for a ``SELECT`` run with ``execute`` (SQLite computes rows
as they are fetched, after the statement's operation has ended).
"""

from __future__ import annotations

import functools
import sqlite3
import sqlite3.dbapi2
import sys
from typing import Any

from ascope._context import STATE
from ascope._context import current as _current

from ._patch import Patches
from ._queries import _open_outer, complete, driver_may_report, start

_aiosqlite_core: Any
try:  # optional; imported with this module, not by install() (the registry's lock is held)
    import aiosqlite.core as _aiosqlite_core
except ImportError:
    _aiosqlite_core = None

__all__ = ["install", "uninstall"]

LIBRARY = "sqlite3"

_EXECUTE = {"system": "sqlite", "driver": "sqlite3", "call": "execute"}
_EXECUTEMANY = {"system": "sqlite", "driver": "sqlite3", "call": "executemany"}
_EXECUTESCRIPT = {"system": "sqlite", "driver": "sqlite3", "call": "executescript"}

# Read by connections and cursors made while the integration was on: after disable()
# they go on working, silently.
_active = False


def _rows(cursor: Any) -> Any:
    try:
        count = cursor.rowcount  # a subclass's property may raise: never into the caller
    except Exception:
        return None
    return count if type(count) is int and count >= 0 else None


def _open(cursor: Any, sql: Any, params: Any, metadata: Any) -> int | None:
    """The query operation for a statement this cursor is about to run (its id), or None:
    not by a connection told to stay quiet (aiosqlite's thread side), nor under an outer
    layer's open query, nor with capture off (``start`` checks that, for the task too).
    Never raises: a cursor class whose ``connection`` fails runs its statement unrecorded
    (counted)."""
    try:
        connection = cursor.connection
        if not getattr(connection, "_ascope_reports", False):
            return None
        if _open_outer and not driver_may_report():
            return None
        database = getattr(connection, "_ascope_database", None)
    except Exception:
        STATE.internal_errors += 1
        return None
    return start(sql, params, database, metadata)


class _CursorMixin(sqlite3.Cursor):
    """Records the statements a sqlite3 cursor runs.

    A caller's cursor class comes before it (``Ascope<Class>(Class, _CursorMixin)``): its
    own ``execute`` runs as it would without ascope, and reaches this one through
    ``super()``. Each method is written out, not shared through a helper taking the call:
    this runs on every statement, and a ``functools.partial`` plus a call layer cost about
    a quarter of what recording a statement does on the caller's thread. ``execute``, the
    one a request runs, also checks its task's capture inline."""

    def execute(self, sql: Any, parameters: Any = (), /) -> Any:
        cid = None
        if _active and STATE.on:
            try:
                # A task whose capture is off (a request left out by sampling) goes
                # straight on: nothing opened, and no call made to find that out.
                if _current.get()[5]:
                    cid = _open(self, sql, parameters, _EXECUTE)
            except Exception:  # not a frame (counted): the statement runs unrecorded
                STATE.internal_errors += 1
        if cid is None:
            return super().execute(sql, parameters)
        try:
            result = super().execute(sql, parameters)
        except BaseException as error:
            complete(cid, sql, None, error)
            raise
        complete(cid, sql, _rows(self))
        return result

    def executemany(self, sql: Any, seq_of_parameters: Any, /) -> Any:
        # Only a list is captured: a generator of parameters must reach sqlite3 unconsumed.
        params = seq_of_parameters if isinstance(seq_of_parameters, (list, tuple)) else None
        cid = _open(self, sql, params, _EXECUTEMANY) if _active and STATE.on else None
        if cid is None:
            return super().executemany(sql, seq_of_parameters)
        try:
            result = super().executemany(sql, seq_of_parameters)
        except BaseException as error:
            complete(cid, sql, None, error)
            raise
        complete(cid, sql, _rows(self))
        return result

    def executescript(self, sql_script: Any, /) -> Any:
        cid = _open(self, sql_script, None, _EXECUTESCRIPT) if _active and STATE.on else None
        if cid is None:
            return super().executescript(sql_script)
        try:
            result = super().executescript(sql_script)
        except BaseException as error:
            complete(cid, sql_script, None, error)
            raise
        complete(cid, sql_script, _rows(self))
        return result


class _ConnectionMixin(sqlite3.Connection):
    """Makes a sqlite3 connection hand out recording cursors, also from ``execute``.

    A caller's connection class comes before it (``Ascope<Class>(Class,
    _ConnectionMixin)``), so its own ``cursor()`` and ``execute()`` run as they would
    without ascope. ``execute`` and friends do what sqlite3's C versions do: make a cursor
    of the default class without calling ``cursor()`` (only here it is the recording
    one), and run the statement on it; the C versions would run the cursor's C methods
    directly and skip the recording."""

    _ascope_reports = True
    _ascope_database: Any = None

    def cursor(self, factory: Any = sqlite3.Cursor) -> Any:
        # sqlite3's default, so that cursor(None) fails as it does without ascope
        return super().cursor(_cursor_class(factory))

    def execute(self, sql: Any, parameters: Any = (), /) -> Any:
        return super().cursor(Cursor).execute(sql, parameters)

    def executemany(self, sql: Any, seq_of_parameters: Any, /) -> Any:
        return super().cursor(Cursor).executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: Any, /) -> Any:
        return super().cursor(Cursor).executescript(sql_script)


class Cursor(_CursorMixin):
    """The recording cursor used when the caller asks for no particular cursor class."""


class Connection(_ConnectionMixin):
    """The recording connection ``sqlite3.connect`` returns while the integration is on."""


_cursor_classes: dict[Any, Any] = {sqlite3.Cursor: Cursor}
_connection_classes: dict[Any, Any] = {sqlite3.Connection: Connection}


def _subclass(cls: type, mixin: type) -> type | None:
    """``Ascope<cls>(cls, mixin)``, or None (counted) when ``cls`` refuses it (its
    ``__init_subclass__`` wants arguments, say): then the caller's class is used as it is,
    unrecorded, rather than failing the caller's ``connect()`` or ``cursor()``."""
    try:
        return type(f"Ascope{cls.__name__}", (cls, mixin), {})
    except Exception:
        STATE.internal_errors += 1
        return None


def _cursor_class(factory: Any) -> Any:
    try:
        known = _cursor_classes.get(factory)
    except TypeError:  # an unhashable callable: not a class, sqlite3 checks what it returns
        return factory
    if known is None:
        if isinstance(factory, type) and issubclass(factory, _CursorMixin):
            return factory
        if not (isinstance(factory, type) and issubclass(factory, sqlite3.Cursor)):
            return factory  # a factory function: sqlite3 checks what it returns
        known = _subclass(factory, _CursorMixin)
        if known is None:
            return factory
        _cursor_classes[factory] = known
    return known


def _connection_class(factory: Any) -> Any:
    try:
        known = _connection_classes.get(factory)
    except TypeError:  # an unhashable callable: not a class we can subclass
        return None
    if known is None:
        if not (isinstance(factory, type) and issubclass(factory, sqlite3.Connection)):
            return None  # not a class we can subclass: leave the call alone
        if issubclass(factory, _ConnectionMixin):
            return factory
        known = _subclass(factory, _ConnectionMixin)
        if known is None:
            return None
        _connection_classes[factory] = known
    return known


def _called_by_ascope() -> bool:
    """Whether ascope itself (its SQLite sink, its store) is opening the connection.

    Those are never recorded: the sink writes every batch of events, and its queries
    would show up in the traces, or feed themselves. One frame lookup, per connect only.
    """
    try:
        caller = sys._getframe(2).f_globals.get("__name__", "")
    except ValueError:
        return False
    return type(caller) is str and (caller == "ascope" or caller.startswith("ascope."))


# sqlite3.connect's positional parameters after ``database``; ``factory`` is the fifth.
_FACTORY_POSITION = 4


def _make_connect(patches: Patches, original: Any) -> Any:
    @functools.wraps(original)
    def connect(database: Any, *args: Any, **kwargs: Any) -> Any:
        if not patches.active or _called_by_ascope():
            return original(database, *args, **kwargs)
        if len(args) > _FACTORY_POSITION:
            factory = _connection_class(args[_FACTORY_POSITION])
            if factory is not None:
                args = (*args[:_FACTORY_POSITION], factory, *args[_FACTORY_POSITION + 1:])
        else:
            factory = _connection_class(kwargs.get("factory", sqlite3.Connection))
            if factory is not None:
                kwargs["factory"] = factory
        connection = original(database, *args, **kwargs)
        if isinstance(connection, _ConnectionMixin):
            try:
                connection._ascope_database = database if type(database) is str else str(database)
            except Exception:  # a class refusing new attributes: recorded without its name
                STATE.internal_errors += 1
        return connection

    return connect


# -- aiosqlite -------------------------------------------------------------------------------

# aiosqlite's functions that run SQL (bound methods of sqlite3 objects, or its own helpers),
# by name, and how to count the rows of what they return.
_AIOSQLITE_CALLS = {
    "execute": ("execute", _rows),
    "executemany": ("executemany", _rows),
    "executescript": ("executescript", lambda result: None),
    "_execute_insert": ("execute_insert", lambda result: None),
    "_execute_fetchall": ("execute_fetchall",
                          lambda result: len(result) if isinstance(result, list) else None),
}

_AIOSQLITE_METADATA = {
    name: {"system": "sqlite", "driver": "aiosqlite", "call": call}
    for name, (call, _) in _AIOSQLITE_CALLS.items()
}


def _make_aiosqlite_execute(patches: Patches, original: Any) -> Any:
    @functools.wraps(original)
    async def _execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not patches.active:
            return await original(self, fn, *args, **kwargs)
        connection = getattr(self, "_connection", None)
        if connection is not None and getattr(connection, "_ascope_reports", False):
            try:
                connection._ascope_reports = False  # this side reports; the thread is quiet
            except Exception:  # a class refusing new attributes: both sides may report
                STATE.internal_errors += 1
        name = getattr(fn, "__name__", None)
        known = _AIOSQLITE_CALLS.get(name)  # type: ignore[arg-type]
        if known is None or not driver_may_report():
            return await original(self, fn, *args, **kwargs)
        sql = args[0] if args else kwargs.get("sql")
        params = args[1] if len(args) > 1 else None
        if name == "executemany" and not isinstance(params, (list, tuple)):
            params = None
        cid = start(sql, params, getattr(connection, "_ascope_database", None),
                    _AIOSQLITE_METADATA[name])  # type: ignore[index]
        if cid is None:
            return await original(self, fn, *args, **kwargs)
        try:
            result = await original(self, fn, *args, **kwargs)
        except BaseException as error:
            complete(cid, sql, None, error)
            raise
        try:
            rows = known[1](result)
        except Exception:
            rows = None
        complete(cid, sql, rows)
        return result

    return _execute


_patches: Patches | None = None


def install() -> None:
    global _patches, _active
    if _patches is not None:
        return
    patches = Patches()
    patches.wrap(sqlite3, "connect", functools.partial(_make_connect, patches))
    if sqlite3.dbapi2 is not sqlite3:
        patches.wrap(sqlite3.dbapi2, "connect", functools.partial(_make_connect, patches))
    if _aiosqlite_core is not None:
        patches.wrap(_aiosqlite_core.Connection, "_execute",
                     functools.partial(_make_aiosqlite_execute, patches))
    patches.active = True
    _patches = patches
    _active = True


def uninstall() -> None:
    global _patches, _active
    _active = False
    if _patches is not None:
        _patches.restore()
        _patches = None
