from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence

import orjson

from .._events import Event

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    wall_ns INTEGER NOT NULL,
    correlation_id INTEGER,
    parent_id INTEGER,
    task_id INTEGER,
    trace_id TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_started_ns INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_task ON events (task_id);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind);
"""

INSERT_SQL = (
    "INSERT INTO events (kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id,"
    " host, pid, process_started_ns, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite3.Connection:
    """Open a store file the way every ascope reader and writer does (WAL, busy timeout)."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # WAL lets several processes write one file (one at a time) while readers keep reading.
    for attempt in range(50):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(SCHEMA_SQL)
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 49:
                raise
            time.sleep(0.05)
    return connection


class SqliteSink:
    """The embedded default store: one SQLite file, safe for several writing processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._connection: sqlite3.Connection | None = None

    def write(self, events: Sequence[Event]) -> None:
        if self._connection is None:
            self._connection = connect(self.path)
        dumps = orjson.dumps
        rows = [
            (e.kind, e.ts_ns, e.wall_ns, e.correlation_id, e.parent_id, e.task_id, e.trace_id,
             e.node[0], e.node[1], e.node[2], dumps(e.data).decode())
            for e in events
        ]
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(INSERT_SQL, rows)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __repr__(self) -> str:
        return f"SqliteSink({self.path!r})"
