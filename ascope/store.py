"""Reading events back from the embedded SQLite store.

    with ascope.store.open_store("ascope.db") as store:
        for event in store.events(kind="function_entry"):
            ...

Events read back equal the ones the sinks were given (same ``Event`` values).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import orjson

from ._events import Event, Node
from .sinks._sqlite import connect

_COLUMNS = ("kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id, host, pid,"
            " process_started_ns, data")


class Store:
    """A read view of one SQLite store file (safe while writers are appending)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no ascope store at {self.path!r}")
        self._connection = connect(self.path)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def events(self, *, kind: str | None = None, correlation_id: int | None = None,
               parent_id: int | None = None, trace_id: str | None = None,
               task_id: int | None = None, pid: int | None = None,
               limit: int | None = None) -> list[Event]:
        """Events matching every filter given, in the order they were written."""
        return list(self.iter_events(kind=kind, correlation_id=correlation_id,
                                     parent_id=parent_id, trace_id=trace_id, task_id=task_id,
                                     pid=pid, limit=limit))

    def iter_events(self, *, kind: str | None = None, correlation_id: int | None = None,
                    parent_id: int | None = None, trace_id: str | None = None,
                    task_id: int | None = None, pid: int | None = None,
                    limit: int | None = None) -> Iterator[Event]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("correlation_id", correlation_id),
                              ("parent_id", parent_id), ("trace_id", trace_id),
                              ("task_id", task_id), ("pid", pid)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        for row in self._connection.execute(sql, params):
            yield _event_from_row(row)

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            row = self._connection.execute("SELECT count(*) FROM events").fetchone()
        else:
            row = self._connection.execute("SELECT count(*) FROM events WHERE kind = ?",
                                           (kind,)).fetchone()
        return int(row[0])

    def kinds(self) -> dict[str, int]:
        """How many events of each kind the store holds."""
        rows = self._connection.execute(
            "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY count(*) DESC")
        return {kind: count for kind, count in rows}

    def traces(self) -> list[str]:
        rows = self._connection.execute(
            "SELECT trace_id FROM events WHERE trace_id IS NOT NULL GROUP BY trace_id "
            "ORDER BY min(id)")
        return [trace for (trace,) in rows]


def _event_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    (kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id, host, pid, started,
     data) = row
    return Event(kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id,
                 Node(host, pid, started), orjson.loads(data))


def open_store(path: str | os.PathLike[str] = "ascope.db") -> Store:
    """Open a store file for reading."""
    return Store(path)
