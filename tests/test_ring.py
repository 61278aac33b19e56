"""The per-loop ring: overflow policies, exact counters, the thread path, wake-ups, flush.

The loop-side tests emit without yielding to the loop, so the drainer cannot run in between
and what the ring keeps or drops is determined by the policy alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from helpers_core import of_kind, run_on
from hypothesis import given
from hypothesis import strategies as st

import ascope
from ascope import _pipeline
from ascope import runtime as rt
from ascope.sinks import MemorySink
from ascope.testing import capture

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def emit_marks(count: int, label: str = "m", start: int = 0) -> None:
    """``count`` point events whose values are start, start+1, ..."""
    for value in range(start, start + count):
        rt.report_expression_value(None, label, value, 0)


def values(events: list[ascope.Event], label: str = "m") -> list[Any]:
    return [e.data["value"] for e in of_kind(events, "expression_value")
            if e.data["expression"] == label]


def this_ring() -> ascope.RingStats:
    ring = _pipeline.current_ring()
    assert ring is not None
    return ring.stats()


def check_invariant(stats: ascope.Stats) -> None:
    assert stats.written == stats.drained + stats.dropped + stats.pending
    for ring in stats.rings:
        assert ring.written == ring.drained + ring.dropped + ring.pending


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", list(range(12, 20))),
                                              ("drop_newest", list(range(8)))])
def test_overflow_policy_keeps_the_right_events_and_counts_drops(
        run: Run, policy: str, kept: list[int]) -> None:
    """20 events into a ring of 8 without a drain: 12 dropped, counted, and the 8 kept are
    the newest (drop_oldest) or the first (drop_newest)."""
    ascope.configure(ring_size=8, overflow=policy)

    async def main() -> tuple[ascope.Stats, ascope.Stats, list[ascope.Event]]:
        async with capture() as captured:
            before = ascope.stats()
            emit_marks(20)
            mid = this_ring()
            assert mid.pending == 8
        return before, ascope.stats(), captured.events

    before, after, events = run(main())
    assert values(events) == kept
    assert after.dropped - before.dropped == 12
    assert after.written - before.written == 20
    assert after.drained - before.drained == 8
    check_invariant(after)


@given(ring_size=st.integers(min_value=1, max_value=40),
       policy=st.sampled_from(["drop_oldest", "drop_newest"]),
       bursts=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=4))
def test_counters_are_exact_for_any_ring_size_and_burst(
        ring_size: int, policy: str, bursts: list[int]) -> None:
    """For any ring size and bursts separated by flushes: written grows by exactly the
    events emitted, dropped by exactly the overflow of each burst, and the sink gets the
    rest; written == drained + dropped + pending at every step."""
    ascope.configure(ring_size=ring_size, overflow=policy)

    async def main() -> None:
        async with capture() as captured:
            before = ascope.stats()
            emitted = 0
            for burst in bursts:
                emit_marks(burst, start=emitted)
                emitted += burst
                check_invariant(ascope.stats())
                await ascope.flush()
            after = ascope.stats()
        check_invariant(after)
        lost = sum(max(0, burst - ring_size) for burst in bursts)
        assert after.written - before.written == emitted
        assert after.dropped - before.dropped == lost
        assert len(values(captured.events)) == emitted - lost
        assert after.pending == 0

    try:
        run_on("asyncio", main())
    finally:
        ascope.configure(ring_size=_pipeline.PipelineSettings().ring_size,
                         overflow="drop_oldest")


def test_stats_is_frozen_and_has_the_counters() -> None:
    """stats() returns a frozen dataclass with total and per-ring counters."""
    stats = ascope.stats()
    for name in ("written", "drained", "dropped", "pending", "sink_errors", "unrouted"):
        assert isinstance(getattr(stats, name), int)
    assert all(isinstance(ring, ascope.RingStats) for ring in stats.rings)
    with pytest.raises(AttributeError):
        stats.written = 0  # type: ignore[misc]


def test_events_with_nowhere_to_go_are_counted_as_unrouted(tmp_path: Any) -> None:
    """Capture switched on with no sinks configured: the events are drained, not stored,
    and counted in ``unrouted`` (total and per ring); with a sink they are not."""
    from ascope import runtime as rt
    from ascope.sinks import MemorySink

    per_ring: list[int] = []

    async def emit(n: int) -> None:
        for i in range(n):
            rt.report_line_execution(None, i)
        await ascope.flush()
        ring = _pipeline.current_ring()
        assert ring is not None
        per_ring.append(ring.stats().unrouted)

    ascope.configure(sinks=[])
    ascope.enable()
    try:
        before = ascope.stats()
        asyncio.run(emit(25))
        assert _pipeline.flush_blocking()
        after = ascope.stats()
        assert after.unrouted - before.unrouted == 25
        assert after.drained - before.drained == 25
        assert per_ring == [25]  # this loop's ring, before it closed
        memory = MemorySink()
        ascope.configure(sinks=[memory])
        asyncio.run(emit(10))
        assert _pipeline.flush_blocking()
        assert ascope.stats().unrouted == after.unrouted
        assert per_ring == [25, 0]
        assert len(memory.events) == 10
    finally:
        ascope.disable()
        ascope.configure(sinks=[])


def test_events_from_before_a_capture_opened_are_unrouted_not_captured() -> None:
    """Unscoped events still in the ring when a ``testing.capture()`` opens reach the
    writer while it is open, but were emitted before it: the capture does not get them,
    and with no sink to take them they are counted as unrouted (not dropped unseen)."""
    from ascope import runtime as rt
    from ascope.testing import capture

    async def main() -> capture:
        for i in range(5):
            rt.report_line_execution(None, i)  # unscoped, still in the ring
        async with capture() as inside:
            rt.report_line_execution(None, 99)
        return inside

    ascope.configure(sinks=[])
    ascope.enable()
    try:
        before = ascope.stats()
        inside = asyncio.run(main())
        assert _pipeline.flush_blocking()
        after = ascope.stats()
    finally:
        ascope.disable()
    assert [e.data["line"] for e in inside.events] == [99]
    assert after.unrouted - before.unrouted == 5
    assert after.drained - before.drained == 6


def test_stats_per_loop_and_total() -> None:
    """Two loops in two threads each get a ring; each ring counts its own events and the
    total counts all of them."""
    ready = threading.Barrier(3, timeout=30)  # a failing thread must not hang the others
    done = threading.Barrier(3, timeout=30)
    labels: dict[str, str] = {}
    per_ring: dict[str, int] = {}

    async def loop_main(name: str, count: int) -> None:
        async with capture():
            emit_marks(count, name)
            ring = _pipeline.current_ring()
            assert ring is not None
            labels[name] = ring.label
            ready.wait()  # both rings exist and hold their events
            done.wait()  # the main thread has read stats
            per_ring[name] = ring.stats().written

    before = ascope.stats()
    threads = [threading.Thread(target=run_on, args=("asyncio", loop_main("a", 5))),
               threading.Thread(target=run_on, args=("uvloop", loop_main("b", 7)))]
    for thread in threads:
        thread.start()
    ready.wait()
    during = ascope.stats()
    by_label = {ring.label: ring for ring in during.rings}
    done.wait()
    for thread in threads:
        thread.join()
    after = ascope.stats()
    assert labels["a"] != labels["b"]
    assert "uvloop" in labels["b"]
    assert by_label[labels["a"]].written >= 5 and by_label[labels["b"]].written >= 7
    assert per_ring == {"a": 5, "b": 7}
    assert during.written - before.written == 12
    assert after.written >= during.written
    check_invariant(during)
    check_invariant(after)


def test_events_from_plain_threads_are_not_lost() -> None:
    """Events from threads without a loop go to the thread ring and reach the sinks."""
    sink = MemorySink()
    ascope.configure(sinks=[sink])
    ascope.enable()
    before = ascope.stats()
    threads = [threading.Thread(target=emit_marks, args=(500, f"t{n}")) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _pipeline.flush_blocking()
    for n in range(4):
        assert values(sink.events, f"t{n}") == list(range(500))
    stats = ascope.stats()
    assert stats.dropped == before.dropped
    assert stats.written - before.written == 2000
    check_invariant(stats)


def test_totals_never_go_backwards_while_loops_close() -> None:
    """stats() read from another thread while loops start, emit and close: the totals only
    grow (a closing loop's ring is folded into the totals exactly once)."""
    stop = threading.Event()
    backwards: list[tuple[int, int]] = []

    def poll() -> None:
        highest = 0
        while not stop.is_set():
            written = ascope.stats().written
            if written < highest:
                backwards.append((highest, written))
            highest = max(highest, written)

    async def short_loop() -> None:
        async with capture():
            emit_marks(20)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(60):
            run_on("asyncio", short_loop())
    finally:
        stop.set()
        poller.join()
    assert backwards == []


def test_thread_burst_larger_than_the_ring_is_not_dropped() -> None:
    """A plain thread emitting 10 rings' worth at once loses nothing: past the high-water
    mark the batch is handed to the writer without waiting for the drain interval."""
    sink = MemorySink()
    ascope.configure(sinks=[sink], ring_size=64, drain_interval=30.0)
    ascope.enable()
    before = ascope.stats()
    thread = threading.Thread(target=emit_marks, args=(640, "burst"))
    thread.start()
    thread.join()
    assert _pipeline.flush_blocking()
    after = ascope.stats()
    assert after.dropped == before.dropped
    assert values(sink.events, "burst") == list(range(640))


def test_high_water_wakes_the_drainer_before_the_interval(run: Run) -> None:
    """Below the high-water mark events wait for the interval; past it the drainer runs
    at the next loop iteration."""
    ascope.configure(ring_size=100, high_water=0.5, drain_interval=30.0)

    async def main() -> tuple[int, int]:
        async with capture():
            await ascope.flush()  # the drainer is now asleep on the 30 s interval
            emit_marks(10)
            for _ in range(5):
                await asyncio.sleep(0)
            below = this_ring().pending
            emit_marks(60)
            for _ in range(5):
                await asyncio.sleep(0)
            above = this_ring().pending
        return below, above

    below, above = run(main())
    assert below == 10
    assert above == 0


def test_flush_writes_everything_pending(run: Run) -> None:
    """await ascope.flush() leaves nothing pending and every event in the sink."""
    sink = MemorySink()
    ascope.configure(sinks=[sink], drain_interval=30.0)

    async def main() -> tuple[int, int]:
        ascope.enable()
        emit_marks(25, "flushed")
        pending = this_ring().pending
        await ascope.flush()
        return pending, this_ring().pending

    pending, after = run(main())
    assert pending == 25 and after == 0
    assert values(sink.events, "flushed") == list(range(25))


def test_flush_on_a_loop_that_never_emitted() -> None:
    """flush() on a loop ascope has not seen yet returns (and does not raise)."""
    async def main() -> None:
        await ascope.flush()

    run_on("asyncio", main())
    run_on("uvloop", main())


def test_shrinking_the_ring_counts_what_no_longer_fits(run: Run) -> None:
    """configure(ring_size=smaller) with events pending keeps the newest, counts the rest."""
    async def main() -> tuple[ascope.Stats, ascope.Stats, list[ascope.Event]]:
        async with capture() as captured:
            await ascope.flush()
            before = ascope.stats()
            emit_marks(30)
            ascope.configure(ring_size=10)
            after = ascope.stats()
        return before, after, captured.events

    before, after, events = run(main())
    assert after.dropped - before.dropped == 20
    assert values(events) == list(range(20, 30))
    check_invariant(after)


def test_memory_stays_bounded_under_overload(run: Run) -> None:
    """50,000 events into a ring of 1,000 without a drain never hold more than 1,000."""
    ascope.configure(ring_size=1000)

    async def main() -> int:
        async with capture():
            emit_marks(50_000)
            return this_ring().pending

    assert run(main()) == 1000


def test_memory_stays_bounded_while_the_sink_is_stuck(run: Run) -> None:
    """With the sink stuck, ascope holds a bounded number of events (ring plus a few
    batches in flight); everything beyond that is dropped and counted."""
    release = threading.Event()

    class StuckSink:
        def write(self, events: Any) -> None:
            release.wait(10)

        def close(self) -> None:
            pass

    ascope.configure(sinks=[StuckSink()], ring_size=100)

    async def main() -> tuple[ascope.Stats, ascope.Stats]:
        ascope.enable()
        before = ascope.stats()
        for _ in range(50):
            emit_marks(100)
            for _ in range(3):
                await asyncio.sleep(0)  # the drainer runs (high-water wake-up)
        after = ascope.stats()
        release.set()  # before the loop ends: its shutdown flush waits for the writer
        return before, after

    try:
        before, after = run(main())
    finally:
        release.set()
    emitted = after.written - before.written
    dropped = after.dropped - before.dropped
    assert emitted == 5000
    assert emitted - dropped <= 100 * 5  # held in memory: at most the ring and a few batches
