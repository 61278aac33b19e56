"""The embedded default store: one SQLite file of event *segments*.

A segment is one batch from the writer, stored as one row whose ``body`` is a JSON array
of events (``[kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id, data]``,
in emission order), plus ``segment_keys`` rows naming what the batch holds, with how many
events carry each: its kinds and trace ids one row each, and its correlation, parent and
task ids by *bucket* (``id_bucket`` for correlation and parent ids, ``task_bucket`` for
task ids: the id shifted right by ``ID_BUCKET_BITS``). ascope's ids come from counters,
so the ids of one batch are nearly consecutive and fall in a few buckets: a request costs
the index one row (its trace) instead of five. ``segment_keys`` is a covering primary
key, so "which segments may hold correlation X" is one index lookup; the read side
decodes those segments and filters. Ids given by hand that are not ints are indexed
exactly (``correlation_id``, ``parent_id``, ``task_id`` rows), as every id was by
stores written before buckets, which read the same.

Why not a row per event: with four indexes SQLite spent 3-6 us per row on the reference
machine (over half of it holding the GIL the program needs), capping the store near
100k events/s; a batch becomes one row plus a handful of key rows, and the encoding is a
single orjson call. An index row per id still cost ~2 us each (most of the writer's
time under a web server's load), hence the buckets. For ad-hoc SQL the ``events`` view
expands segments back into rows.

Several processes may write one file: WAL mode, a busy timeout, one short transaction
per batch.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from .._events import Event
from .._values import json_safe

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_started_ns INTEGER NOT NULL,
    first_ts_ns INTEGER NOT NULL,
    last_ts_ns INTEGER NOT NULL,
    count INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segment_keys (
    key_type TEXT NOT NULL,
    key NOT NULL,
    segment_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (key_type, key, segment_id)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS events AS
SELECT s.id AS segment_id,
       CAST(j.key AS INTEGER) AS position,
       json_extract(j.value, '$[0]') AS kind,
       json_extract(j.value, '$[1]') AS ts_ns,
       json_extract(j.value, '$[2]') AS wall_ns,
       json_extract(j.value, '$[3]') AS correlation_id,
       json_extract(j.value, '$[4]') AS parent_id,
       json_extract(j.value, '$[5]') AS task_id,
       json_extract(j.value, '$[6]') AS trace_id,
       s.host AS host, s.pid AS pid, s.process_started_ns AS process_started_ns,
       json_extract(j.value, '$[7]') AS data
FROM segments AS s, json_each(s.body) AS j;
"""

# The keys a segment is indexed by exactly, and their position in an Event.
KEYS = (("trace_id", 6), ("kind", 0))
# Ids indexed by bucket when they are ints (exactly, under their own name, otherwise):
# (name, bucket key type, position in an Event).
ID_KEYS = (("correlation_id", "id_bucket", 3), ("parent_id", "id_bucket", 4),
           ("task_id", "task_bucket", 5))
ID_BUCKET_BITS = 10

INSERT_SEGMENT = ("INSERT INTO segments (host, pid, process_started_ns, first_ts_ns, last_ts_ns,"
                  " count, body) VALUES (?, ?, ?, ?, ?, ?, ?)")
# All of a segment's key rows in one statement, from a JSON array of [key_type, key, n]:
# the sqlite3 module releases the GIL around every statement step, and with executemany
# (a step per row) a writer sharing the CPU with the program's loop handed the GIL back
# and forth about once per event.
INSERT_KEYS = ("INSERT INTO segment_keys (key_type, key, segment_id, n) "
               "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?, "
               "json_extract(value, '$[2]') FROM json_each(?)")

BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite3.Connection:
    """Open a store file the way every ascope reader and writer does (WAL, busy timeout)."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
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


def encode_segment(events: Sequence[Event]) -> tuple[str, list[tuple[str, Any, int]], int, int]:
    """The body of one segment, its (key_type, key, count) rows, first and last ts_ns."""
    try:
        return _encode(events)
    except orjson.JSONEncodeError:  # a string that is not valid UTF-8: store it escaped
        return _encode([event._replace(kind=json_safe(event.kind),
                                       correlation_id=json_safe(event.correlation_id),
                                       parent_id=json_safe(event.parent_id),
                                       trace_id=json_safe(event.trace_id),
                                       data=json_safe(event.data)) for event in events])


def _encode(events: Sequence[Event]) -> tuple[str, list[tuple[str, Any, int]], int, int]:
    # Transposing with zip(*) and counting with Counter keep the per-event work in C.
    columns = list(zip(*events, strict=True))
    body = orjson.dumps(list(zip(columns[0], columns[1], columns[2], columns[3], columns[4],
                                 columns[5], columns[6], columns[8], strict=True))).decode()
    keys = [(name, key, count) for name, index in KEYS
            for key, count in Counter(columns[index]).items() if key is not None]
    buckets: Counter[tuple[str, int]] = Counter()
    for name, bucket, index in ID_KEYS:
        for key, count in Counter(columns[index]).items():
            if type(key) is int:
                buckets[bucket, key >> ID_BUCKET_BITS] += count
            elif key is not None:
                keys.append((name, key, count))
    keys += [(bucket, key, count) for (bucket, key), count in buckets.items()]
    return body, keys, min(columns[1]), max(columns[1])


class SqliteSink:
    """The embedded default store: one SQLite file, safe for several writing processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._connection: sqlite3.Connection | None = None

    def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if self._connection is None:
            self._connection = connect(self.path)
        node = events[0].node
        if all(event.node is node for event in events):
            groups = [events]
        else:  # events of several processes (a copy between stores): a segment each
            by_node: dict[Any, list[Event]] = {}
            for event in events:
                by_node.setdefault(tuple(event.node), []).append(event)
            groups = list(by_node.values())
        encoded = [(group, *encode_segment(group)) for group in groups]
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for group, body, keys, first_ts, last_ts in encoded:
                node = group[0].node
                segment = connection.execute(
                    INSERT_SEGMENT,
                    (node[0], node[1], node[2], first_ts, last_ts, len(group), body)).lastrowid
                connection.execute(INSERT_KEYS, (segment, orjson.dumps(keys).decode()))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connection (SQLite connections must not
        cross a fork; closing it here could disturb the parent's) and open a new one."""
        self._connection = None

    def __repr__(self) -> str:
        return f"SqliteSink({self.path!r})"
