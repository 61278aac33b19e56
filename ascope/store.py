"""Reading events back from the embedded SQLite store.

    with ascope.store.open_store("ascope.db") as store:
        for event in store.events(kind="function_entry"):
            ...

Events read back equal the ones the sinks were given (same ``Event`` values), in the
order they were written. Filters on correlation, parent, trace, task and kind use the
store's key index (see ``ascope/sinks/_sqlite.py``); only the segments holding a match are
decoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import orjson

from ._events import Event, Node, data_of
from .sinks._sqlite import ID_BUCKET_BITS, ID_KEYS, connect_for_reading, fingerprint


class Store:
    """A read view of one SQLite store file (safe while writers are appending)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no ascope store at {self.path!r}")
        self._connection = connect_for_reading(self.path)

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
        wanted = {name: value for name, value in (
            ("correlation_id", correlation_id), ("parent_id", parent_id),
            ("trace_id", trace_id), ("task_id", task_id), ("kind", kind)) if value is not None}
        if not self._has("segments"):  # a file no writer has written to yet
            return
        sql = "SELECT id, host, pid, process_started_ns, body FROM segments"
        clauses: list[str] = []
        params: list[Any] = []
        for name, value in wanted.items():
            bucket = _BUCKETS.get(name)
            if name == "trace_id":
                # Key rows in older stores; fingerprints (see ascope/sinks/_sqlite.py) in
                # stores that have them.
                clause = ("id IN (SELECT segment_id FROM segment_keys WHERE "
                          "key_type = 'trace_id' AND key = ?)")
                params.append(value)
                if self._has("segment_traces"):
                    clause += (" OR id IN (SELECT segment_id FROM segment_traces WHERE "
                               "instr(fingerprints, ?) > 0)")
                    params.append(fingerprint(value))
                clauses.append(f"({clause})")
            elif bucket is not None and type(value) is int:
                # Exact rows too: ids given by hand, and stores written before buckets.
                clauses.append("id IN (SELECT segment_id FROM segment_keys WHERE "
                               "(key_type = ? AND key = ?) OR (key_type = ? AND key = ?))")
                params += [name, value, bucket, value >> ID_BUCKET_BITS]
            else:
                clauses.append("id IN (SELECT segment_id FROM segment_keys WHERE "
                               "key_type = ? AND key = ?)")
                params += [name, value]
        if pid is not None:
            clauses.append("pid = ?")
            params.append(pid)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id"
        positions = [(_POSITION[name], value) for name, value in wanted.items()]
        count = 0
        for _, host, row_pid, started, body in self._connection.execute(sql, params):
            node = Node(host, row_pid, started)
            for raw in orjson.loads(body):
                if all(raw[index] == value for index, value in positions):
                    yield Event(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], node,
                                data_of(raw[0], raw[7]))
                    count += 1
                    if limit is not None and count >= limit:
                        return

    def count(self, kind: str | None = None) -> int:
        """How many events the store holds (of one kind)."""
        if not self._has("segments"):
            return 0
        if kind is None:
            row = self._connection.execute("SELECT coalesce(sum(count), 0) FROM segments")
        else:
            row = self._connection.execute(
                "SELECT coalesce(sum(n), 0) FROM segment_keys WHERE key_type = 'kind' "
                "AND key = ?", (kind,))
        return int(row.fetchone()[0])

    def kinds(self) -> dict[str, int]:
        """How many events of each kind the store holds, most frequent first."""
        if not self._has("segments"):
            return {}
        rows = self._connection.execute(
            "SELECT key, sum(n) FROM segment_keys WHERE key_type = 'kind' GROUP BY key "
            "ORDER BY sum(n) DESC, key")
        return {kind: count for kind, count in rows}

    def traces(self) -> list[str]:
        """Trace ids, in the order they first appear."""
        found: list[tuple[int, int, int, Any]] = []
        if not self._has("segments"):
            return []
        if self._has("segment_traces"):
            found += [(segment, 0, position, trace)
                      for segment, traces in self._connection.execute(
                          "SELECT segment_id, traces FROM segment_traces")
                      for position, trace in enumerate(orjson.loads(traces))]
        # Stores written before segment_traces: a key row per trace and segment (ordered by
        # SQLite, which also orders ids of different types).
        found += [(segment, 1, position, trace) for position, (segment, trace) in enumerate(
            self._connection.execute("SELECT segment_id, key FROM segment_keys WHERE "
                                     "key_type = 'trace_id' ORDER BY segment_id, key"))]
        found.sort(key=lambda entry: entry[:3])
        return list(dict.fromkeys(trace for *_, trace in found))

    def _has(self, table: str) -> bool:
        """Whether the file has ``table``. Readers make none: ``segment_traces`` is missing
        from stores of older versions, every table from a file no writer has written to.
        (``segments`` and ``segment_keys`` are made together.)"""
        return self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone() is not None


# The bucket key type indexing each id filter (ascope/sinks/_sqlite.py).
_BUCKETS = {name: bucket for name, bucket, _ in ID_KEYS}

# Where each filter's value sits in a stored event array.
_POSITION = {"kind": 0, "correlation_id": 3, "parent_id": 4, "task_id": 5, "trace_id": 6}


def open_store(path: str | os.PathLike[str] = "ascope.db") -> Store:
    """Open a store file for reading."""
    return Store(path)
