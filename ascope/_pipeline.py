"""From the hot path to the sinks: ring registry, draining and the writer thread.

    emit_event(...)        hot path: append to the ring the frame carries (else the running
                           loop's, or the thread ring)
      └─ drain timer       per loop: every ``drain_interval`` or past the high-water mark,
                           takes the pending batch and hands it to the writer (no I/O);
                           a sentinel task flushes when the loop shuts down
           └─ Writer       one thread: finishes the values (plain, bounded rows), routes
                           them to the configured sinks (the SQLite store takes rows,
                           other sinks Events) and to open ``testing.capture()`` blocks;
                           isolates failing sinks; sweeps the thread ring and rings of
                           closed loops

The loop's per-event work here is an append (its slow path, past the high-water mark,
takes the ring's lock briefly); building events, encoding and I/O all happen on the
writer thread.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _context as _c
from . import _events
from ._ring import DROP_OLDEST, Ring, RingStats

logger = logging.getLogger("ascope")

_get_running_loop = asyncio._get_running_loop  # the C fast path: None outside a loop


@dataclass(slots=True)
class PipelineSettings:
    ring_size: int = 65_536
    overflow: str = DROP_OLDEST
    high_water: float = 0.5  # fraction of ring_size that wakes the drainer early
    drain_interval: float = 0.05  # seconds between drains when the ring stays below it
    # Events handed to the writer and not yet written, at most (None: 4 x ring_size); past
    # it, batches are dropped (and counted) at hand-off, so a slow sink cannot grow memory
    # without bound.
    max_backlog: int | None = None

    def backlog_limit(self) -> int:
        return self.max_backlog if self.max_backlog is not None else 4 * self.ring_size


SETTINGS = PipelineSettings()

# Rings of running loops, keyed by loop. Only the loop's own thread adds its entry.
_rings: dict[Any, Ring] = {}
_thread_ring = Ring(None, SETTINGS.ring_size, SETTINGS.overflow, SETTINGS.high_water,
                    "threads")
_retired = [0, 0, 0, 0]  # drained, dropped, sink_errors, unrouted of rings of closed loops
_registry_lock = threading.Lock()

# Seconds the end of a loop waits for the writer to write what that loop emitted.
SHUTDOWN_WAIT = 5.0

# The writer's delivered count when it was last seen stuck (no progress while waited
# for); waits are skipped while it stays there.
_stalled = [-1]

# A scope that discards its events (used by measure_overhead to time real calls).
DISCARD_SCOPE = ("discard",)


def emit_event(kind: str, ts_ns: int, frame: _c.Frame, payload: Any) -> None:
    """Append one event of ``frame``'s operation to the ring its frame carries (else the
    running loop's).

    The ring holds flat tuples ``(kind, ts_ns, correlation_id, parent_id, task_id,
    trace_id, scope, payload)`` — no reference to the frame.

    The compiled emitters (``ascope._speedups``: this function, the report calls and the
    task factory) inline a payload tuple instead, ``(kind, ..., scope, *payload)``, and
    untrack the event from the garbage collector when they make it: events wait in the
    ring and the writer's queue long enough to live through collections, and a tuple
    holding a dict (most payloads hold one) would otherwise stay tracked, walked by every
    collection and promoted to the oldest generation. The writer tells the two forms apart
    by length (8 items: a payload tuple last; more: inlined, payloads of two fields or more
    only).
    """
    event = (kind, ts_ns, frame[0], frame[1], frame[3], frame[4], frame[6], payload)
    ring = frame[8]
    if ring is not None:
        buffer = ring.buffer
        if len(buffer) < ring.high_water:
            buffer.append(event)
        else:
            ring.put_slow(event)
        return
    _emit_slow(event)


#: The Python ``emit_event``; ascope.runtime puts the compiled one (ascope._speedups, which
#: also untracks the event from the garbage collector) in its place where it is built.
PURE_EMIT_EVENT = emit_event


def append_slow(ring: Ring | None, event: tuple[Any, ...]) -> None:
    """The part of ``emit_event`` past the fast path (for callers that inline it)."""
    if ring is None:
        _emit_slow(event)
    else:
        ring.put_slow(event)


def _emit_slow(event: tuple[Any, ...]) -> None:
    loop = _get_running_loop()
    if loop is None:
        _thread_ring.put_slow(event)
        if len(_thread_ring.buffer) >= _thread_ring.high_water:
            # No drainer serves plain threads: past the high-water mark the emitting thread
            # hands the batch over itself (it has no loop the lock could block).
            hand_off(_thread_ring, wait=True)
        WRITER.ensure_started()
        return
    ring = _rings.get(loop) or ring_for_loop(loop)
    if len(ring.buffer) < ring.high_water:
        ring.buffer.append(event)
    else:
        ring.put_slow(event)


def ring_for_loop(loop: asyncio.AbstractEventLoop) -> Ring:
    """The ring of ``loop``, created (with its drainer and task factory) on first use.

    Must be called on ``loop``'s thread while it runs.
    """
    ring = _rings.get(loop)
    if ring is not None:
        return ring
    with _registry_lock:
        label = f"loop-{len(_rings) + 1}:{type(loop).__module__}.{type(loop).__qualname__}"
        ring = Ring(loop, SETTINGS.ring_size, SETTINGS.overflow, SETTINGS.high_water, label)
        _rings[loop] = ring
    start_drainer(ring)
    from . import _tasks

    _tasks.install_task_factory(loop)
    WRITER.ensure_started()
    return ring


def ring_of(loop: asyncio.AbstractEventLoop) -> Ring:
    return _rings.get(loop) or ring_for_loop(loop)


def attach_current_loop() -> _c.Frame:
    """Make the current context's frame carry the running loop's ring and a task id.

    Tasks created by ascope's factory have both; this is for the others (the main task
    of ``asyncio.run``, tasks created before ascope was on), so their events take the
    fast path. Returns the current frame.
    """
    frame = _c.current.get()
    loop = _get_running_loop()
    if loop is None:
        return frame
    ring = ring_of(loop)
    task_id = frame[_c.TASK]
    if task_id is None and asyncio.current_task(loop) is not None:
        task_id = next(_c.task_ids)
    if frame[_c.RING] is not ring or frame[_c.TASK] != task_id:
        frame = frame[: _c.TASK] + (task_id,) + frame[_c.TASK + 1: _c.RING] + (ring,)
        _c.current.set(frame)
    return frame


_DRAINER_CONTEXT_VALUE = (None, None, None, None, None, False, None, 0, None)


def start_drainer(ring: Ring) -> None:
    """Drain ``ring`` from its loop: a timer every ``drain_interval`` (plus an immediate
    drain past the high-water mark, see ``Ring.wake``), and a sentinel task whose
    cancellation at loop shutdown flushes.

    The drain itself is a timer callback, not a task: it never shows in
    ``asyncio.all_tasks()``, nothing cancels it, and a loop that closes simply drops it —
    no "Task was destroyed but it is pending" when a loop ends without cancelling tasks.
    """
    loop = ring.loop
    if ring.drainer is not None or loop.is_closed():
        return
    context = contextvars.Context()
    context.run(_c.current.set, _DRAINER_CONTEXT_VALUE)  # draining is never captured
    ring.drainer = loop.call_later(SETTINGS.drain_interval, _tick, ring, context=context)
    # asyncio.Task directly, not loop.create_task: no user task factory, no eager start.
    ring.sentinel = asyncio.Task(_flush_at_shutdown(ring), loop=loop, context=context,
                                 name="ascope-flush-at-shutdown")


def _tick(ring: Ring) -> None:
    hand_off(ring)
    if not ring.loop.is_closed():
        ring.drainer = ring.loop.call_later(SETTINGS.drain_interval, _tick, ring)


def drain_soon(ring: Ring) -> None:
    """Called on the ring's loop past the high-water mark: drain now, not at the tick."""
    ring.wake_pending = False
    hand_off(ring)


async def _flush_at_shutdown(ring: Ring) -> None:
    loop = ring.loop
    try:
        await loop.create_future()  # until cancelled: asyncio.run / Runner.close cancel it
    finally:
        # The loop is ending: hand off what is pending and wait for the writer, so that when
        # asyncio.run returns the events are in the sinks. A bounded wait delays no work.
        hand_off(ring)
        # Not when closed at interpreter exit, nor for a writer stuck on a sink.
        if loop.is_running() and WRITER.running() and WRITER.delivered != _stalled[0]:
            try:
                WRITER.barrier().result(SHUTDOWN_WAIT)
            except concurrent.futures.TimeoutError:
                _stalled[0] = WRITER.delivered
                logger.warning("ascope: the writer did not finish within %ss at loop "
                               "shutdown; the rest is written in the background",
                               SHUTDOWN_WAIT)


def hand_off(ring: Ring, wait: bool = False) -> None:
    """Move everything pending in ``ring`` to the writer, or drop it (counted) when the
    writer is more than ``max_backlog`` events behind.

    ``wait=True`` (only off any loop: plain threads) first waits up to a second for the
    writer to catch up — a thread may block, a loop may not.
    """
    if not ring.buffer:
        return
    limit = SETTINGS.backlog_limit()
    if wait and WRITER.delivered != _stalled[0]:
        delivered = WRITER.delivered
        deadline = time.monotonic() + 1.0
        while WRITER.backlog() >= limit and time.monotonic() < deadline:
            time.sleep(0.001)
        if WRITER.backlog() >= limit and WRITER.delivered == delivered:
            # The writer made no progress in a second (a stuck sink): stop waiting for it
            # until it delivers again, so a thread pays that second once, not per batch.
            _stalled[0] = delivered
    if WRITER.backlog() >= limit:
        ring.discard()
    else:
        WRITER.submit(ring, ring.take())


# -- writer ---------------------------------------------------------------------------------


class _SinkSlot:
    __slots__ = ("failed", "sink")

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.failed = False


class _Barrier:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()


_STOP = object()
# Events built and written at a time. A chunk's rows are 2 new objects an event, and
# the payloads' dict and tuple copies ~1.5 more for a web request's events: ~900 for a
# chunk of those, around the collector's young threshold (700 allocations) rather than
# the thousands of a whole drain. Smaller chunks mean more segments and commits (measured
# in docs/performance.md).
DELIVERY_CHUNK = 256


class Writer:
    """The one thread that turns batches into Events and writes them to sinks."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.sinks: list[_SinkSlot] = []
        # Open testing.capture() blocks: capture id -> (sink, perf_counter_ns when opened).
        self.captures: dict[int, tuple[Any, int]] = {}
        self.submitted = 0  # events queued by submit(); written by the loops' threads
        self.delivered = 0  # events delivered from the queue; written by the writer thread
        self._start_lock = threading.Lock()

    # called from any thread --------------------------------------------------------------

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def ensure_started(self) -> None:
        # No new thread while the interpreter finalizes: it would never start, and
        # shutdown() has already written what was queued.
        if self.thread is None and not sys.is_finalizing():
            with self._start_lock:
                if self.thread is None:
                    thread = threading.Thread(target=self._run, name="ascope-writer",
                                              daemon=True)
                    thread.start()
                    self.thread = thread

    def submit(self, ring: Ring, batch: list[tuple[Any, ...]]) -> None:
        self.submitted += len(batch)
        self.queue.put((ring, batch))
        self.ensure_started()

    def backlog(self) -> int:
        """Events submitted and not yet delivered (each counter has one writing side)."""
        return self.submitted - self.delivered

    def call(self, function: Callable[[], Any]) -> None:
        """Run ``function`` on the writer thread, in order with the batches before it."""
        self.queue.put(function)
        self.ensure_started()

    def barrier(self) -> concurrent.futures.Future[None]:
        """A future resolved once everything submitted before it has been written."""
        barrier = _Barrier()
        self.queue.put(barrier)
        self.ensure_started()
        return barrier.future

    # on the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        # Nothing the writer does is captured: a sink writing through an instrumented
        # driver (sqlite3, say) would otherwise feed its own writes back into the ring.
        _c.current.set(_DRAINER_CONTEXT_VALUE)
        while True:
            try:
                item = self.queue.get(timeout=max(SETTINGS.drain_interval, 0.01))
            except queue.Empty:
                self._sweep()
                continue
            if item is _STOP:
                return
            self._handle(item)

    def _handle(self, item: Any) -> None:
        try:
            if isinstance(item, _Barrier):
                self._sweep()
                item.future.set_result(None)
            elif isinstance(item, tuple):
                try:
                    self.deliver(*item)
                finally:
                    self.delivered += len(item[1])
            else:
                item()
        except Exception:  # never let the writer die: count and go on
            _c.STATE.internal_errors += 1
            logger.exception("ascope: writer failed on %r", type(item).__name__)

    def _sweep(self) -> None:
        """Drain the thread ring and the rings of loops that closed without a final drain."""
        if _thread_ring.buffer:
            self.deliver(_thread_ring, _thread_ring.take())
        for loop, ring in list(_rings.items()):
            if loop.is_closed():
                if ring.buffer:
                    self.deliver(ring, ring.take())
                retire(loop)

    def deliver(self, ring: Ring, batch: Sequence[tuple[Any, ...]]) -> None:
        """Build and write ``batch`` in chunks of ``DELIVERY_CHUNK`` events, each chunk's
        rows gone before the next is built (the SQLite store writes a segment a chunk).

        A drain can hold thousands of events; built at once, their rows (two to four
        objects an event) would set off young collections on this thread every few hundred
        events, each promoting whatever the program's requests hold at that moment: that,
        not the rows, is what brings on full collections (docs/performance.md).
        """
        for start in range(0, len(batch), DELIVERY_CHUNK):
            self._deliver(ring, batch[start:start + DELIVERY_CHUNK])

    def _deliver(self, ring: Ring, batch: Sequence[tuple[Any, ...]]) -> None:
        if not batch:
            return
        captures = self.captures
        global_on = _c.STATE.global_sinks
        to_sinks = global_on and bool(self.sinks)
        if not captures and not to_sinks:
            # Nobody to give them to (capture on with no sinks configured, or only
            # testing.capture() blocks that have closed since): nothing is built for
            # nothing, and they are counted.
            ring.unrouted += sum(1 for raw in batch if raw[6] is not DISCARD_SCOPE)
            return
        rows = _events.build_rows(batch, _events.wall_offset_ns())
        to_global: list[_events.Row] = []
        to_capture: dict[int, list[_events.Row]] = {}
        if not captures:
            to_global = [row for raw, row in zip(batch, rows, strict=True)
                         if raw[6] is not DISCARD_SCOPE]
        else:
            unrouted = 0
            for raw, row in zip(batch, rows, strict=True):
                scope = raw[6]
                if scope is DISCARD_SCOPE:
                    continue
                routed = to_sinks
                if global_on:
                    to_global.append(row)
                if scope is None:
                    # Unscoped: every capture that was open when it was emitted (one
                    # opened later would see an event from before its block).
                    ts = raw[1]
                    for capture_id, (_, opened) in captures.items():
                        if ts >= opened:
                            to_capture.setdefault(capture_id, []).append(row)
                            routed = True
                else:
                    for capture_id in scope:
                        if capture_id in captures:
                            to_capture.setdefault(capture_id, []).append(row)
                            routed = True
                if not routed:
                    unrouted += 1
            ring.unrouted += unrouted
        node = _events.NODE
        if to_global:
            events: list[_events.Event] | None = None  # named once, for the sinks needing it
            for slot in self.sinks:
                write_rows = getattr(slot.sink, "write_rows", None)
                if write_rows is not None:  # the SQLite store takes the rows as they are
                    self._write(slot, ring, len(to_global), write_rows, to_global, node)
                else:
                    if events is None:
                        events = _events.events_of(to_global, node)
                    self._write(slot, ring, len(events), slot.sink.write, events)
        for capture_id, selected in to_capture.items():
            captures[capture_id][0].write(_events.events_of(selected, node))

    def _write(self, slot: _SinkSlot, ring: Ring, count: int, write: Callable[..., Any],
               *batch: Any) -> None:
        """``write(*batch)`` for one sink; a sink that fails is disabled and counted."""
        if slot.failed:
            ring.sink_errors += count
            return
        try:
            write(*batch)
        except BaseException:  # any (CancelledError too): the writer thread must not die
            slot.failed = True
            ring.sink_errors += count
            logger.exception("ascope: sink %r failed and is disabled; its events are counted "
                             "in ascope.stats().sink_errors", slot.sink)

    def set_sinks(self, sinks: list[Any], timeout: float = 10.0) -> None:
        """Replace the sinks (on the writer thread, after the batches queued before), and
        wait until that is done, at most ``timeout`` (a writer stuck on a slow sink).

        Waiting matters: the writer's idle sweep takes the thread ring's events as they
        come, not in queue order, so without it an event emitted just after this call
        could still reach the sinks it replaced, or none.
        """
        swapped = threading.Event()

        def swap() -> None:
            try:
                old, self.sinks = self.sinks, [_SinkSlot(sink) for sink in sinks]
                for slot in old:
                    if all(slot.sink is not new for new in sinks):
                        _close_quietly(slot.sink)
            finally:
                swapped.set()

        self.call(swap)
        if self.running() and threading.current_thread() is not self.thread:
            swapped.wait(timeout)

    def stop(self, timeout: float) -> None:
        thread = self.thread
        if thread is not None and thread.is_alive():
            self.queue.put(_STOP)
            thread.join(timeout)
        self.thread = None
        # Whatever is still queued (the thread timed out or never ran) is written here, in
        # a context where capture is off, as on the writer thread.
        context = contextvars.Context()
        context.run(_c.current.set, _DRAINER_CONTEXT_VALUE)
        context.run(self._write_remaining)

    def _write_remaining(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._handle(item)
        self._sweep()


def _close_quietly(sink: Any) -> None:
    try:
        sink.close()
    except BaseException:  # runs on the writer thread, which must not die
        logger.exception("ascope: closing sink %r failed", sink)


WRITER = Writer()


def _after_fork_in_child() -> None:
    """A forked child is a new process: no writer thread (threads do not survive fork),
    locks that may have been held at the fork, the parent's pending events (the parent
    writes those) and sink connections that must not be shared (SQLite forbids it)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    WRITER.thread = None
    WRITER.queue = queue.SimpleQueue()
    WRITER._start_lock = threading.Lock()
    WRITER.submitted = WRITER.delivered = 0
    for ring in [*_rings.values(), _thread_ring]:
        ring.lock = threading.Lock()
        ring.buffer.clear()
        ring.drained = ring.dropped = ring.sink_errors = ring.unrouted = 0
        ring.wake_pending = False
    _retired[:] = [0, 0, 0, 0]
    _stalled[0] = -1
    for slot in WRITER.sinks:
        after_fork = getattr(slot.sink, "after_fork", None)
        if callable(after_fork):
            after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def retire(loop: Any) -> None:
    """Forget a closed loop's ring, keeping its counters in the totals."""
    with _registry_lock:
        ring = _rings.pop(loop, None)
        if ring is not None:
            _retired[0] += ring.drained
            _retired[1] += ring.dropped
            _retired[2] += ring.sink_errors
            _retired[3] += ring.unrouted


def hand_off_current() -> None:
    """Hand off the ring of this thread's running loop, or the thread ring."""
    loop = _get_running_loop()
    ring = _thread_ring if loop is None else _rings.get(loop)
    if ring is not None:
        hand_off(ring)


def current_ring() -> Ring | None:
    loop = _get_running_loop()
    return _thread_ring if loop is None else _rings.get(loop)


def all_rings() -> list[Ring]:
    return [*list(_rings.values()), _thread_ring]


def resize_rings() -> None:
    """Apply ring settings to existing rings (those of other running threads via their loop)."""
    here = _get_running_loop()
    for loop, ring in list(_rings.items()):
        if loop is here or not loop.is_running():
            ring.resize(SETTINGS.ring_size, SETTINGS.overflow, SETTINGS.high_water)
        else:
            loop.call_soon_threadsafe(ring.resize, SETTINGS.ring_size, SETTINGS.overflow,
                                      SETTINGS.high_water)
    _thread_ring.resize(SETTINGS.ring_size, SETTINGS.overflow, SETTINGS.high_water)


# -- flushing and shutdown -------------------------------------------------------------------


async def flush() -> None:
    """Write everything pending on this loop (and in the thread ring) to the sinks."""
    loop = asyncio.get_running_loop()
    ring = _rings.get(loop)
    if ring is not None:
        hand_off(ring)
    await asyncio.wrap_future(WRITER.barrier(), loop=loop)


def flush_blocking(timeout: float | None = 10.0) -> bool:
    """Like ``flush`` but blocking; usable from sync code, also on a loop's thread.

    Drains the rings this thread can touch safely: its running loop's ring, the rings of
    loops that are not running, and the thread ring. Returns False on time-out.
    """
    here = _get_running_loop()
    for loop, ring in list(_rings.items()):
        if loop is here or not loop.is_running():
            hand_off(ring)
    try:
        WRITER.barrier().result(timeout)
    except concurrent.futures.TimeoutError:
        return False
    return True


_shut_down = False


def shutdown(timeout: float = 10.0) -> None:
    """Flush every ring, stop the writer and close the sinks. Runs at interpreter exit."""
    global _shut_down
    for ring in list(_rings.values()):
        if ring.loop is _get_running_loop() or not ring.loop.is_running():
            hand_off(ring)
    WRITER.stop(timeout)
    for slot in WRITER.sinks:
        _close_quietly(slot.sink)
    _shut_down = True


def _at_exit() -> None:
    if not _shut_down:
        shutdown()


atexit.register(_at_exit)


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """Exact counters, in total and per ring: ``written == drained + dropped + pending``."""

    written: int
    drained: int
    dropped: int
    pending: int
    sink_errors: int
    internal_errors: int
    rings: tuple[RingStats, ...]
    # Drained events that no sink or open capture was there to take (capture switched on
    # with no sinks configured; a testing.capture() block closed before its events
    # reached the writer). Part of ``drained``.
    unrouted: int = 0


def stats() -> Stats:
    # Under the registry lock: a ring retired between listing the rings and reading
    # ``_retired`` would otherwise be counted twice.
    with _registry_lock:
        rings = tuple(ring.stats() for ring in all_rings())
        retired = tuple(_retired)
    drained = retired[0] + sum(r.drained for r in rings)
    dropped = retired[1] + sum(r.dropped for r in rings)
    pending = sum(r.pending for r in rings)
    sink_errors = retired[2] + sum(r.sink_errors for r in rings)
    unrouted = retired[3] + sum(r.unrouted for r in rings)
    return Stats(drained + dropped + pending, drained, dropped, pending, sink_errors,
                 _c.STATE.internal_errors, rings, unrouted)
