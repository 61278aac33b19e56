"""Sinks: memory, JSON lines, SQLite; sink URLs; failing sinks; two writing processes."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from test_values import values as values_strategy

import ascope
from ascope import _pipeline
from ascope import runtime as rt
from ascope._values import json_safe
from ascope.sinks import JsonlSink, MemorySink, SqliteSink, sink_from_url
from ascope.sinks._jsonl import read_jsonl
from ascope.store import open_store
from ascope.testing import capture


def emit_variety() -> None:
    """One of each shape of event: call tree, nested values, error, custom kind."""
    cid = rt.report_function_entry("app.mod", "Handler.get", {"x": 1, "items": [1, "a", None]})
    rt.report_ast_variable_snapshot(None, {"n": 3, "f": 1.5, "t": (1, 2), "s": {3, 1}}, 4,
                                    "app.mod:Handler.get:4:assign")
    rt.report_error(KeyError("missing"))
    rt.report_event("custom_kind", {"nested": {"deep": [1, [2, [3]]]}, "big": 2**70})
    rt.report_function_exit(cid, {"ok": True, "ratio": float("inf")})


def write_with(*sinks: Any) -> None:
    """Enable capture into ``sinks``, emit the variety, flush, switch off."""
    ascope.configure(sinks=list(sinks))
    ascope.enable()
    emit_variety()
    assert _pipeline.flush_blocking()
    ascope.disable()


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "kind", "path"), [
    ("memory:", MemorySink, None),
    (" MEMORY: ", MemorySink, None),
    ("jsonl:events.jsonl", JsonlSink, "events.jsonl"),
    ("jsonl:/tmp/x/events.jsonl", JsonlSink, "/tmp/x/events.jsonl"),
    ("sqlite:ascope.db", SqliteSink, "ascope.db"),
    ("sqlite:///var/data/a.db", SqliteSink, "/var/data/a.db"),
    ("sqlite://rel/a.db", SqliteSink, "rel/a.db"),
])
def test_sink_urls(url: str, kind: type, path: str | None) -> None:
    """Each URL form builds the right sink with the right path (nothing opened yet)."""
    sink = sink_from_url(url)
    assert isinstance(sink, kind)
    if path is not None:
        assert sink.path == path  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["memory", "nosuch:x", "jsonl:", "sqlite:", "sqlite://", "",
                                 "http://example.com/x"])
def test_bad_sink_urls_raise_configuration_error(url: str) -> None:
    """A URL without a scheme, with an unknown scheme or without a path is refused."""
    with pytest.raises(ascope.ConfigurationError):
        sink_from_url(url)


def test_configure_accepts_comma_separated_urls(tmp_path: Path) -> None:
    """One string may hold several sink URLs separated by commas."""
    store = tmp_path / "a.db"
    lines = tmp_path / "a.jsonl"
    ascope.configure(sinks=f"sqlite:{store}, jsonl:{lines}")
    from ascope import _config

    built = _config.configured_sinks()
    assert [type(sink) for sink in built] == [SqliteSink, JsonlSink]


# -- each sink -------------------------------------------------------------------------------


def test_memory_sink_receives_events_and_can_be_bounded() -> None:
    """MemorySink keeps what it is given; with maxlen, only the newest."""
    sink = MemorySink()
    bounded = MemorySink(maxlen=2)
    write_with(sink, bounded)
    kinds = [e.kind for e in sink.events]
    assert kinds == ["function_entry", "variable_snapshot", "error", "custom_kind",
                     "function_exit"]
    assert [e.kind for e in bounded.events] == kinds[-2:]
    sink.clear()
    assert sink.events == []


def test_jsonl_sink_round_trips_events(tmp_path: Path) -> None:
    """Events read back from a JSON lines file equal those a memory sink received."""
    path = tmp_path / "sub" / "events.jsonl"
    memory = MemorySink()
    write_with(memory, f"jsonl:{path}")
    lines = path.read_bytes().splitlines()
    assert len(lines) == 5
    assert all(isinstance(orjson.loads(line), dict) for line in lines)
    assert list(read_jsonl(path)) == memory.events


def test_sqlite_event_read_back_equals_the_memory_event(tmp_path: Path) -> None:
    """An event read back with ascope.store.open_store equals the memory sink's one,
    field by field (ids, clocks, node, data)."""
    path = tmp_path / "events.db"
    memory = MemorySink()
    write_with(memory, f"sqlite:{path}")
    with open_store(path) as store:
        stored = store.events()
        assert store.count() == 5
        assert store.kinds()["function_entry"] == 1
        entry = memory.events[0]
        assert store.events(correlation_id=entry.correlation_id)[0] == entry
        assert store.events(kind="custom_kind") == [memory.events[3]]
    assert stored == memory.events
    assert stored[0].node == ascope.Node(*stored[0].node)
    assert stored[0].node.pid == os.getpid()


def test_sqlite_store_filters_by_correlation_trace_task_and_kind(tmp_path: Path) -> None:
    """The store answers the indexed look-ups: by correlation id, parent, trace, task, kind
    (each returns exactly the matching events, in order)."""
    path = tmp_path / "events.db"
    memory = MemorySink()
    ascope.configure(sinks=[memory, f"sqlite:{path}"])
    ascope.enable()

    async def handler(n: int) -> None:
        ascope.initialize_context()
        cid = rt.report_function_entry("app", f"handler{n}", (n,))
        rt.report_expression_value(None, "n", n, 1)
        rt.report_function_exit(cid, n)

    async def main() -> None:
        await asyncio.gather(*(handler(n) for n in range(5)))
        await ascope.flush()

    asyncio.run(main())
    ascope.disable()
    events = [e for e in memory.events if e.kind in ("function_entry", "expression_value",
                                                      "function_exit")]
    assert len(events) == 15
    with open_store(path) as store:
        for event in events:
            assert event in store.events(correlation_id=event.correlation_id)
            assert store.events(correlation_id=event.correlation_id) == [
                e for e in memory.events if e.correlation_id == event.correlation_id]
            assert store.events(trace_id=event.trace_id) == [
                e for e in memory.events if e.trace_id == event.trace_id]
            assert store.events(task_id=event.task_id) == [
                e for e in memory.events if e.task_id == event.task_id]
        assert store.events(kind="expression_value") == [
            e for e in memory.events if e.kind == "expression_value"]
        assert len(store.traces()) == 5


def test_id_lookups_are_exact_across_many_segments_and_buckets(tmp_path: Path) -> None:
    """Ids are indexed by bucket: look-ups still return exactly the matching events, for
    a long-lived operation whose events span many segments, for thousands of short ones
    (several buckets), and for an id given by hand; the index holds far fewer rows than
    there are ids."""
    path = tmp_path / "events.db"
    memory = MemorySink()
    ascope.configure(sinks=[memory, f"sqlite:{path}"])
    ascope.enable()

    async def main() -> None:
        root = rt.report_function_entry("app", "long_lived", ())
        for batch in range(12):  # a flush each (of 601 events: 3 segments)
            for n in range(300):
                cid = rt.report_function_entry("app", "short", (n,))
                rt.report_function_exit(cid, n)
            rt.report_expression_value(None, "batch", batch, 1)  # the root's, each segment
            await ascope.flush()
        by_hand = rt.report_function_entry("app", "by_hand", (), correlation_id=7)
        rt.report_function_exit(by_hand)
        rt.report_function_exit(root)
        await ascope.flush()

    asyncio.run(main())
    ascope.disable()
    events = memory.events
    ids = {e.correlation_id for e in events} | {e.parent_id for e in events} - {None}
    assert len(ids) > 3_000
    with open_store(path) as store:
        for wanted in sorted(i for i in ids if i is not None)[::97] + [7]:
            assert store.events(correlation_id=wanted) == [
                e for e in events if e.correlation_id == wanted]
            assert store.events(parent_id=wanted) == [
                e for e in events if e.parent_id == wanted]
        task = events[0].task_id
        assert store.events(task_id=task) == [e for e in events if e.task_id == task]
        rows = store._connection.execute(
            "SELECT count(*) FROM segment_keys WHERE key_type IN "
            "('id_bucket', 'correlation_id', 'parent_id')").fetchone()[0]
    assert rows < 100


def _one_call() -> list[ascope.Event]:
    """The events of one recorded call (entry and exit), from a memory sink."""
    memory = MemorySink()
    ascope.configure(sinks=[memory])
    ascope.enable()
    cid = rt.report_function_entry("app", "f", (1,))
    rt.report_function_exit(cid, 1)
    assert _pipeline.flush_blocking()
    ascope.disable()
    return memory.events


def test_a_large_drain_is_written_in_chunks_in_order(tmp_path: Path) -> None:
    """A drain of more than ``DELIVERY_CHUNK`` events is built and written a chunk at a
    time (a segment each, so rows never pile up for the collector); every event arrives,
    in order, in the store and in the other sinks alike."""
    path = tmp_path / "events.db"
    memory = MemorySink()
    ascope.configure(sinks=[memory, f"sqlite:{path}"])
    ascope.enable()
    count = 2 * _pipeline.DELIVERY_CHUNK + 88

    async def main() -> None:
        for n in range(count):  # no await: one drain
            rt.report_line_execution(None, n)
        await ascope.flush()

    try:
        asyncio.run(main())
    finally:
        ascope.disable()
    assert [e.data["line"] for e in memory.events] == list(range(count))
    connection = sqlite3.connect(path)
    sizes = [size for (size,) in connection.execute("SELECT count FROM segments ORDER BY id")]
    connection.close()
    assert sizes == [_pipeline.DELIVERY_CHUNK, _pipeline.DELIVERY_CHUNK, 88]
    with open_store(path) as store:
        assert [e.data["line"] for e in store.events(kind="line_execution")] == list(
            range(count))


def test_trace_lookups_are_exact_with_fingerprints_that_collide(tmp_path: Path) -> None:
    """Trace ids are found through per-segment CRC32 fingerprints, not index rows: a look-up
    returns exactly the trace's events, for a trace spanning segments and for two trace
    ids with the same fingerprint in different segments; ``traces()`` lists every id once,
    in the order they first appear; the key index holds no row per trace."""
    import hashlib

    from ascope.sinks import _sqlite

    template = _one_call()[0]
    # Two distinct trace ids whose CRC32 is the same.
    seen: dict[bytes, str] = {}
    for i in range(1, 200_000):
        trace = hashlib.md5(str(i).encode()).hexdigest()
        mark = _sqlite.fingerprint(trace)
        if mark in seen:
            twin_a, twin_b = seen[mark], trace
            break
        seen[mark] = trace
    assert twin_a != twin_b and _sqlite.fingerprint(twin_a) == _sqlite.fingerprint(twin_b)
    long_lived = "0af7651916cd43dd8448eb211c80319c"
    segments: list[list[Any]] = []
    order: list[str] = []
    for k in range(20):
        traces = [f"{k:04x}{n:028x}" for n in range(150)] + [long_lived]
        traces.append(twin_a if k == 3 else twin_b if k == 15 else traces[0])
        segments.append([template._replace(trace_id=trace, ts_ns=k * 1000 + n,
                                           correlation_id=k * 1000 + n)
                         for n, trace in enumerate(traces)])
        order += [trace for trace in dict.fromkeys(traces) if trace not in order]
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    for events in segments:
        sink.write(events)
    sink.close()
    written = [event for events in segments for event in events]
    with open_store(path) as store:
        for trace in [long_lived, twin_a, twin_b, "0000" + "0" * 28, "0013" + "0" * 28]:
            assert store.events(trace_id=trace) == [e for e in written if e.trace_id == trace]
        assert store.events(trace_id="not-stored") == []
        assert store.traces() == order
        assert store._connection.execute(
            "SELECT count(*) FROM segment_keys WHERE key_type = 'trace_id'").fetchone() == (0,)


def test_trace_ids_that_are_not_strings_are_stored_and_found(tmp_path: Path) -> None:
    """Events copied from another store may carry a trace id that is not a string: the
    SQLite sink stores them (fingerprinted by their ``str``) instead of failing, and a
    look-up finds them without reading every segment."""
    from ascope.sinks import _sqlite

    template = _one_call()[0]
    events = [template._replace(trace_id=trace, correlation_id=n)
              for n, trace in enumerate(["abc", 42, "abc", None])]
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    sink.write(events[:2])
    sink.write(events[2:])
    sink.close()
    with open_store(path) as store:
        assert store.events(trace_id="abc") == [events[0], events[2]]
        assert store.events(trace_id=42) == [events[1]]  # type: ignore[arg-type]
        assert store.traces() == ["abc", 42]
        holding = store._connection.execute(
            "SELECT count(*) FROM segment_traces WHERE instr(fingerprints, ?) > 0",
            (_sqlite.fingerprint(42),)).fetchone()
        assert holding == (1,)


def test_stores_with_exact_id_rows_still_read(tmp_path: Path) -> None:
    """A store written before buckets, field lists and trace fingerprints (one key row per
    id and trace, each event's data an object, no ``fields`` or ``segment_traces`` table)
    answers the same look-ups with the same events, and reading it leaves the file as it
    was (not a byte changed: it may be another version's, or read-only)."""
    import hashlib

    from ascope.sinks import _sqlite

    path = tmp_path / "events.db"
    recorded = _one_call()
    cid = recorded[0].correlation_id
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    events = [event._replace(trace_id=trace) for event in recorded]
    body, _keys, _traces, first, last = _sqlite.encode_segment(_sqlite.rows_of(events))
    assert '"module":"app"' in body  # data stored as objects, as before field lists
    old = sqlite3.connect(path)  # the tables of that version, made by hand
    old.executescript(
        "CREATE TABLE segments (id INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER"
        " NOT NULL, process_started_ns INTEGER NOT NULL, first_ts_ns INTEGER NOT NULL,"
        " last_ts_ns INTEGER NOT NULL, count INTEGER NOT NULL, body TEXT NOT NULL);"
        "CREATE TABLE segment_keys (key_type TEXT NOT NULL, key NOT NULL, segment_id INTEGER"
        " NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (key_type, key, segment_id))"
        " WITHOUT ROWID;")
    node = events[0].node
    segment = old.execute(_sqlite.INSERT_SEGMENT, (node[0], node[1], node[2], first, last,
                                                   len(events), body)).lastrowid
    old.executemany(
        "INSERT OR IGNORE INTO segment_keys VALUES (?, ?, ?, ?)",
        [(name, getattr(event, name), segment, 1) for event in events
         for name in ("correlation_id", "task_id", "trace_id", "kind")
         if getattr(event, name) is not None] + [("trace_id", 42, segment, 1)])
    old.commit()
    old.close()
    written = hashlib.sha256(path.read_bytes()).hexdigest()
    with open_store(path) as store:
        assert store.events(correlation_id=cid) == events
        assert store.events(task_id=events[0].task_id) == events
        assert store.events(trace_id=trace) == events
        assert store.traces() == [42, trace]  # ids of two types, as SQLite orders them
        assert store.kinds() == {"function_entry": 1, "function_exit": 1}
        assert store.count() == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == written
    assert sorted(os.listdir(tmp_path)) == ["events.db"]


def test_a_store_file_no_writer_has_written_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with open_store(path) as store:
        assert (store.events(), store.traces(), store.kinds(), store.count()) == ([], [], {}, 0)
        assert store.events(trace_id="abc", kind="function_entry") == []
    assert path.read_bytes() == b""


def test_the_events_view_names_each_events_fields(tmp_path: Path) -> None:
    """Segments keep each event's field values as a list in SCHEMA order; the ``events``
    view gives ad-hoc SQL one row per event with ``data`` as a JSON object, for such rows
    and for a kind outside SCHEMA alike; an older view in the file is replaced."""
    import sqlite3

    path = tmp_path / "events.db"
    old = sqlite3.connect(path)  # a file from before field lists, with its own view
    old.executescript("CREATE TABLE segments (id INTEGER PRIMARY KEY, host TEXT NOT NULL,"
                      " pid INTEGER NOT NULL, process_started_ns INTEGER NOT NULL,"
                      " first_ts_ns INTEGER NOT NULL, last_ts_ns INTEGER NOT NULL,"
                      " count INTEGER NOT NULL, body TEXT NOT NULL);"
                      "CREATE VIEW events AS SELECT id AS segment_id FROM segments;")
    old.close()
    ascope.configure(sinks=[f"sqlite:{path}"])
    ascope.enable()
    cid = rt.report_function_entry("app.orders", "place", {"order": [1, 2]})
    rt.report_function_exit(cid, {"ok": True})
    rt.report_event("custom", {"x": 1})
    assert _pipeline.flush_blocking()
    ascope.disable()
    connection = sqlite3.connect(path)
    body = connection.execute("SELECT body FROM segments").fetchone()[0]
    assert orjson.loads(body)[0][7] == ["app.orders", "place", {"order": [1, 2]}, None, None]
    rows = {kind: orjson.loads(data) for kind, data in connection.execute(
        "SELECT kind, data FROM events WHERE kind IN ('function_entry', 'function_exit',"
        " 'custom')")}
    connection.close()
    assert rows["function_entry"] == {"module": "app.orders", "function": "place",
                                      "args": {"order": [1, 2]}, "source": None,
                                      "node_id": None}
    assert rows["function_exit"]["result"] == {"ok": True}
    assert rows["function_exit"]["outcome"] == "return"
    assert rows["custom"] == {"x": 1}


def test_default_sink_is_the_sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """enable() with no sinks ever configured writes to ascope.db in the working directory."""
    from ascope import _config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_config, "_configured_sinks", None)
    ascope.enable()
    try:
        rt.report_event("hello", {"a": 1})
        assert _pipeline.flush_blocking()
    finally:
        ascope.disable()
        ascope.configure(sinks=[])
    with open_store(tmp_path / "ascope.db") as store:
        assert store.count("hello") == 1


# -- failing sinks ---------------------------------------------------------------------------


class ExplodingSink:
    """A sink whose write always raises."""

    def __init__(self) -> None:
        self.calls = 0

    def write(self, events: Any) -> None:
        self.calls += 1
        raise OSError("disk on fire")

    def close(self) -> None:
        pass


def test_a_failing_sink_is_disabled_logged_once_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises: the program goes on, the sink is called no more, one log record
    on the "ascope" logger, its events counted in sink_errors; other sinks are unaffected."""
    bad = ExplodingSink()
    good = MemorySink()
    before = ascope.stats().sink_errors
    with caplog.at_level(logging.ERROR, logger="ascope"):
        write_with(bad, good)  # raises nothing
        ascope.enable()
        emit_variety()
        assert _pipeline.flush_blocking()
        ascope.disable()
    assert bad.calls == 1
    assert len(good.events) == 10
    assert ascope.stats().sink_errors - before == 10
    records = [r for r in caplog.records if r.name == "ascope"]
    assert len(records) == 1
    assert "ExplodingSink" in records[0].getMessage()


def test_a_failing_sink_never_reaches_async_code() -> None:
    """Inside a loop, a raising sink is invisible to the program, flush() included."""
    bad = ExplodingSink()

    async def main() -> str:
        ascope.configure(sinks=[bad])
        ascope.enable()
        for _ in range(3):
            emit_variety()
            await ascope.flush()
        return "done"

    assert asyncio.run(main()) == "done"
    assert bad.calls == 1


def test_a_sink_whose_close_raises_is_replaced_quietly(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    """Replacing sinks closes the old ones; a close() that raises is only logged."""
    class BadClose(MemorySink):
        def close(self) -> None:
            raise RuntimeError("no")

    ascope.configure(sinks=[BadClose()])
    with caplog.at_level(logging.ERROR, logger="ascope"):
        ascope.configure(sinks=[])
        assert _pipeline.flush_blocking()
    assert any(r.name == "ascope" for r in caplog.records)


def test_capture_blocks_do_not_go_to_the_configured_sinks() -> None:
    """testing.capture() alone records into memory; the configured sinks stay untouched."""
    sink = MemorySink()
    ascope.configure(sinks=[sink])
    with capture() as captured:
        emit_variety()
    assert len(captured.events) == 5
    assert sink.events == []


def test_a_surrogate_string_does_not_break_the_sqlite_sink(tmp_path: Path) -> None:
    """A captured string that is not valid UTF-8 still gets stored, and the store keeps
    working for the events after it."""
    path = tmp_path / "events.db"
    before = ascope.stats().sink_errors
    ascope.configure(sinks=[f"sqlite:{path}"])
    ascope.enable()
    rt.report_event("name", {"file": os.fsdecode(b"caf\xe9.txt")})
    assert _pipeline.flush_blocking()
    rt.report_event("after", {"x": 1})
    assert _pipeline.flush_blocking()
    ascope.disable()
    assert ascope.stats().sink_errors == before
    with open_store(path) as store:
        assert store.count("after") == 1
        assert store.count("name") == 1


HAND_GIVEN_IDS = [10**30, -(2**70), [1, 2], {"a": 1}, 2.5, "order-17", "x" * 100,
                  os.fsdecode(b"caf\xe9"), object()]


@pytest.mark.parametrize("given_id", HAND_GIVEN_IDS, ids=lambda v: type(v).__name__)
def test_a_hand_given_correlation_id_of_any_kind_is_stored_and_indexed(
        tmp_path: Path, given_id: Any) -> None:
    """A correlation id passed by hand that is not a 63-bit int is kept as a string (its
    bounded repr): the store indexes it and goes on working (it once disabled the sink)."""
    path = tmp_path / "events.db"
    memory = MemorySink()
    before = ascope.stats().sink_errors
    ascope.configure(sinks=[f"sqlite:{path}", memory])
    ascope.enable()
    cid = rt.report_function_entry("m", "f", (1,), correlation_id=given_id)
    rt.report_function_exit(cid, None)
    rt.report_event("after", {"x": 1})
    assert _pipeline.flush_blocking()
    ascope.disable()
    assert ascope.stats().sink_errors == before
    recorded = memory.events[0].correlation_id
    assert type(recorded) is str or recorded == given_id
    assert len(str(recorded)) <= 64 + 3
    stored_id = json_safe(recorded)  # the store escapes what is not valid UTF-8
    with open_store(path) as store:
        assert store.count("after") == 1
        kinds = [event.kind for event in store.events(correlation_id=stored_id)]
    assert kinds == ["function_entry", "function_exit"]


# -- two processes, one store ----------------------------------------------------------------


WRITER_PROGRAM = """
import asyncio, os, sys
import ascope
from ascope import runtime as rt

ascope.configure(sinks=["sqlite:" + sys.argv[1]], ring_size=4096)
ascope.enable()

async def main():
    for batch in range(40):
        for value in range(500):
            rt.report_expression_value(None, "w", value, batch)
        await ascope.flush()

asyncio.run(main())
stats = ascope.stats()
assert stats.dropped == 0 and stats.sink_errors == 0, stats
print(os.getpid())
"""


def test_two_processes_write_one_store(tmp_path: Path) -> None:
    """Two processes writing 20,000 events each into one SQLite file at the same time:
    both succeed without errors and every row of each is there."""
    path = tmp_path / "shared.db"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER_PROGRAM))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASCOPE_")}
    processes = [subprocess.Popen([sys.executable, str(script), str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=environment) for _ in range(2)]
    outputs = [process.communicate(timeout=100) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "Error" not in err and "Traceback" not in err, err
    pids = sorted(int(out.strip()) for out, _ in outputs)
    with open_store(path) as store:
        assert store.count("expression_value") == 40_000
        for pid in pids:
            events = store.events(kind="expression_value", pid=pid)
            assert len(events) == 20_000
            assert sorted(e.data["value"] for e in events if e.data["line"] == 7) == list(
                range(500))


FORKING_PROGRAM = """
import os, sys
import ascope
from ascope import _pipeline
from ascope import runtime as rt

ascope.configure(sinks=["sqlite:" + sys.argv[1]])
ascope.enable()
rt.report_event("parent", {"n": 1})
assert _pipeline.flush_blocking(5)
pid = os.fork()
if pid == 0:
    import asyncio

    async def main():
        for n in range(500):
            rt.report_event("child", {"n": n})
        await asyncio.wait_for(ascope.flush(), 5)

    asyncio.run(main())
    for n in range(500, 1000):
        rt.report_event("child", {"n": n})
    os._exit(0 if _pipeline.flush_blocking(5) else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_to_the_store(tmp_path: Path) -> None:
    """A process that forks after enabling capture (a pre-forking server, multiprocessing's
    fork start method): the child's events reach the store and its flush returns."""
    path = tmp_path / "forked.db"
    script = tmp_path / "forking.py"
    script.write_text(FORKING_PROGRAM)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASCOPE_")}
    completed = subprocess.run([sys.executable, str(script), str(path)], capture_output=True,
                               text=True, env=environment, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "0", completed.stderr
    with open_store(path) as store:
        assert store.count("parent") == 1
        assert store.count("child") == 1000


BASE_EXCEPTION_SINK_PROGRAM = """
import asyncio, sys
import ascope
from ascope import runtime as rt

class CancellingSink:
    def write(self, events):
        raise asyncio.CancelledError()  # a BaseException, as a sink using asyncio may raise
    def close(self):
        raise asyncio.CancelledError()

good = ascope.sinks.MemorySink()
ascope.configure(sinks=[CancellingSink(), good])
ascope.enable()

async def main():
    for n in range(3):
        rt.report_event("tick", {"n": n})
        await asyncio.wait_for(ascope.flush(), 5)

asyncio.run(main())
ascope.configure(sinks=[good])  # closes the failing sink, whose close() raises too
asyncio.run(main())
assert [e.data["n"] for e in good.events if e.kind == "tick"] == [0, 1, 2] * 2, good.events
assert ascope.stats().sink_errors >= 3
print("ok")
"""


def test_a_sink_raising_a_base_exception_is_disabled_too(tmp_path: Path) -> None:
    """A sink raising a BaseException (CancelledError) from write() or close() is isolated
    like any failing sink: the writer keeps going, flush() returns, the other sinks get
    every event."""
    script = tmp_path / "program.py"
    script.write_text(BASE_EXCEPTION_SINK_PROGRAM)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASCOPE_")}
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               env=environment, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
    assert "Exception in thread" not in completed.stderr


@given(value=values_strategy)
def test_any_value_reads_back_from_sqlite_and_jsonl_equal(value: Any) -> None:
    """Property: whatever value an event captured, the event read back from the SQLite store
    and from a JSON lines file equals the one the memory sink received."""
    with tempfile.TemporaryDirectory() as directory:
        memory = MemorySink()
        ascope.configure(sinks=[memory, f"sqlite:{directory}/e.db",
                                f"jsonl:{directory}/e.jsonl"])
        ascope.enable()
        try:
            rt.report_expression_value(None, "v", value, 1)
            rt.report_event("custom", {"v": value, "w": [value, {"x": value}]})
            assert _pipeline.flush_blocking()
        finally:
            ascope.disable()
            ascope.configure(sinks=[])
            assert _pipeline.flush_blocking()
        # Seen once under load (two suites at a time on 2 CPUs): no store file at all, not
        # reproduced since. Say what the pipeline counted if it happens again.
        assert os.path.exists(f"{directory}/e.db"), (
            f"no store file; memory sink got {len(memory.events)} events; {ascope.stats()}")
        with open_store(f"{directory}/e.db") as store:
            assert store.events() == memory.events
        assert list(read_jsonl(f"{directory}/e.jsonl")) == memory.events
        assert len(memory.events) == 2
