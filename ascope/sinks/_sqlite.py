"""The embedded default store: one SQLite file of event *segments*.

A segment is one batch from the writer, stored as one row whose ``body`` is a JSON array
of events (``[kind, ts_ns, wall_ns, correlation_id, parent_id, task_id, trace_id, data]``,
in emission order; ``data`` is the list of the kind's field values in the order of
``ascope._events.SCHEMA``, whose names the ``fields`` table holds, or an object for kinds
outside it and for stores written before lists), plus ``segment_keys`` rows naming what
the batch holds, with how many events carry each: its kinds one row each, and its
correlation, parent and task ids by *bucket* (``id_bucket`` for correlation and parent
ids, ``task_bucket`` for task ids: the id shifted right by ``ID_BUCKET_BITS``). ascope's
ids come from counters, so the ids of one batch are nearly consecutive and fall in a few
buckets. ``segment_keys`` is a covering primary key, so "which segments may hold
correlation X" is one index lookup; the read side decodes those segments and filters. Ids
given by hand that are not ints are indexed exactly (``correlation_id``, ``parent_id``,
``task_id`` rows), as every id was by stores written before buckets, which read the same.

Trace ids are not in that index: they are random, so each would be an index row at a
random place in the B-tree, a page written to the WAL per request, and the store slowed
as it grew (4.5 us per event with 50k traces stored, most of the writer's time). Each
segment has a ``segment_traces`` row instead: the ``CRC32`` of each of its trace ids, 4
bytes each (``fingerprints``), and the ids themselves in the order they first appear
(``traces``, a JSON array). "Which segments may hold trace X" scans the fingerprints with
``instr`` (about a kilobyte per segment, in C; a 4-byte match found by chance costs one
segment decoded for nothing), as column stores find a trace by per-block filters. A
trace id that is not a string (copied from another store) is fingerprinted by its ``str``.
Stores written before this kept trace ids as ``segment_keys`` rows; they read the same, and
reading one leaves it as it is (writers create ``segment_traces``).

Why not a row per event: with four indexes SQLite spent 3-6 us per row on the reference
machine (over half of it holding the GIL the program needs), capping the store near
100k events/s; a batch becomes one row plus a handful of key rows, and the encoding is a
single orjson call. An index row per id still cost ~2 us each (most of the writer's
time under a web server's load), hence the buckets; and naming every event's values in
a dict cost a quarter of the writer's time, hence the lists. For ad-hoc SQL the
``events`` view expands segments back into rows, with ``data`` as a JSON object.

Several processes may write one file: WAL mode, a busy timeout, one short transaction
per batch.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from typing import Any
from zlib import crc32

import orjson

from .._events import SCHEMA, Event, Node, Row
from .._values import json_safe

# One row per event, for ad-hoc SQL: the stored field lists named from ``fields``.
EVENTS_VIEW = """CREATE VIEW events AS
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
       CASE json_type(j.value, '$[7]') WHEN 'array' THEN
           (SELECT json_group_object(f.name, v.value)
              FROM json_each(j.value, '$[7]') AS v
              JOIN fields AS f ON f.kind = json_extract(j.value, '$[0]')
                              AND f.position = v.key)
       ELSE json_extract(j.value, '$[7]') END AS data
FROM segments AS s, json_each(s.body) AS j"""

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
CREATE TABLE IF NOT EXISTS fields (
    kind TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, position)
) WITHOUT ROWID;
""" + EVENTS_VIEW.replace("CREATE VIEW", "CREATE VIEW IF NOT EXISTS", 1) + ";\n"

# Made by writers (connect): a reader leaves a store of an older version as it is, and
# reads it without this table.
TRACES_SQL = """CREATE TABLE IF NOT EXISTS segment_traces (
    segment_id INTEGER PRIMARY KEY,
    fingerprints BLOB NOT NULL,
    traces TEXT NOT NULL
)"""

# The keys a segment is indexed by exactly, and their position in a row.
KEYS = (("kind", 0),)
TRACE = 6  # a row's trace id (indexed by fingerprints: see above)
# Ids indexed by bucket when they are ints (exactly, under their own name, otherwise):
# (name, bucket key type, position in a row).
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
INSERT_TRACES = "INSERT INTO segment_traces (segment_id, fingerprints, traces) VALUES (?, ?, ?)"

BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite3.Connection:
    """Open a store file for writing (WAL, busy timeout, the tables made if missing)."""
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
            connection.execute(TRACES_SQL)
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 49:
                raise
            time.sleep(0.05)
    return connection


def connect_for_reading(path: str) -> sqlite3.Connection:
    """Open a store file for reading: the busy timeout only. The file is left as it is (no
    journal mode set, no table made), so a store of an older version, or one the reader
    may not write, reads as it is; the reader checks which tables it has."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def prepare_for_writing(connection: sqlite3.Connection) -> None:
    """What only writers need: the field names of every kind, and the ``events`` view
    (replaced when a file carries an older one)."""
    wanted = [(kind, position, name) for kind, names in SCHEMA.items()
              for position, name in enumerate(names)]
    have = connection.execute("SELECT count(*) FROM fields").fetchone()[0]
    view = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'events'").fetchone()
    if have == len(wanted) and view is not None and view[0] == EVENTS_VIEW:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # A kind's fields only ever grow at the end (docs/events.md): older rows stay right.
        connection.executemany("INSERT OR REPLACE INTO fields VALUES (?, ?, ?)", wanted)
        connection.execute("DROP VIEW IF EXISTS events")
        connection.execute(EVENTS_VIEW)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


Encoded = tuple[str, list[tuple[str, Any, int]], list[str], int, int]


def encode_segment(rows: Sequence[Row]) -> Encoded:
    """The body of one segment, its (key_type, key, count) rows, its trace ids (in the order
    they first appear), first and last ts_ns."""
    try:
        return _encode(rows)
    except orjson.JSONEncodeError:  # a string that is not valid UTF-8: store it escaped
        return _encode([(json_safe(kind), ts, wall, json_safe(cid), json_safe(pid), task,
                         json_safe(trace), json_safe(data))
                        for kind, ts, wall, cid, pid, task, trace, data in rows])


def _encode(rows: Sequence[Row]) -> Encoded:
    # The rows are the stored events already: one orjson call.
    body = orjson.dumps(rows).decode()
    return (body, *_segment_index(rows))


Index = tuple[list[tuple[str, Any, int]], list[str], int, int]


def python_segment_index(rows: Sequence[Row]) -> Index:
    """A segment's (key_type, key, count) rows, its trace ids in the order they first
    appear, and its first and last ts_ns. ``ascope._speedups.segment_index`` is the same
    code compiled (counting in C, without an ``itemgetter`` call per row and key)."""
    keys = [(name, key, count) for name, index in KEYS
            for key, count in Counter(map(itemgetter(index), rows)).items() if key is not None]
    buckets: Counter[tuple[str, int]] = Counter()
    for name, bucket, index in ID_KEYS:
        for key, count in Counter(map(itemgetter(index), rows)).items():
            if type(key) is int:
                buckets[bucket, key >> ID_BUCKET_BITS] += count
            elif key is not None:
                keys.append((name, key, count))
    keys += [(bucket, key, count) for (bucket, key), count in buckets.items()]
    traces = dict.fromkeys(map(itemgetter(TRACE), rows))
    traces.pop(None, None)
    times = list(map(itemgetter(1), rows))
    return keys, list(traces), min(times), max(times)


_segment_index = python_segment_index  # ascope.runtime puts the compiled one in its place


def fingerprint(trace_id: Any) -> bytes:
    """The 4 bytes a segment's ``fingerprints`` hold for one trace id (one that is not a
    string, copied from another store, by its ``str``)."""
    text = trace_id if type(trace_id) is str else str(trace_id)
    return crc32(text.encode("utf-8", "surrogatepass")).to_bytes(4, "little")


def fingerprints(traces: Sequence[Any]) -> bytes:
    return b"".join([fingerprint(trace) for trace in traces])


def rows_of(events: Sequence[Event]) -> list[Row]:
    """Events (from another store, say) as rows: their data stays a mapping."""
    return [(event.kind, event.ts_ns, event.wall_ns, event.correlation_id, event.parent_id,
             event.task_id, event.trace_id,
             event.data if type(event.data) is dict else dict(event.data))
            for event in events]


class SqliteSink:
    """The embedded default store: one SQLite file, safe for several writing processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._connection: sqlite3.Connection | None = None

    def write_rows(self, rows: Sequence[Row], node: Node) -> None:
        """The writer's path: rows built from the ring, all of one process."""
        if rows:
            self._write_segments([(node, rows)])

    def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        node = events[0].node
        if all(event.node is node for event in events):
            groups = [(node, rows_of(events))]
        else:  # events of several processes (a copy between stores): a segment each
            by_node: dict[Any, list[Event]] = {}
            for event in events:
                by_node.setdefault(tuple(event.node), []).append(event)
            groups = [(Node(*key), rows_of(group)) for key, group in by_node.items()]
        self._write_segments(groups)

    def _write_segments(self, groups: Sequence[tuple[Any, Sequence[Row]]]) -> None:
        if self._connection is None:
            connection = connect(self.path)
            prepare_for_writing(connection)
            self._connection = connection
        encoded = [(node, len(rows), *encode_segment(rows)) for node, rows in groups]
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for node, count, body, keys, traces, first_ts, last_ts in encoded:
                segment = connection.execute(
                    INSERT_SEGMENT,
                    (node[0], node[1], node[2], first_ts, last_ts, count, body)).lastrowid
                connection.execute(INSERT_KEYS, (segment, orjson.dumps(keys).decode()))
                if traces:
                    connection.execute(INSERT_TRACES, (segment, fingerprints(traces),
                                                       orjson.dumps(traces).decode()))
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
