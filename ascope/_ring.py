"""The per-event-loop ring buffer and its counters.

One ``Ring`` per event loop, created on the first event emitted on that loop, plus one
ring for threads that have no running loop and no loop's frame (plain threads).

The hot path appends to the ring's ``deque`` without a lock: ``deque.append`` is atomic,
so threads running with a loop's context (``asyncio.to_thread`` copies it) may append to
that loop's ring too. Everything else — the overflow path and taking a batch out —
holds the ring's lock, and a batch is taken with ``popleft`` so an append racing with it
is never lost.

Counting is exact and nearly free: ``dropped`` and ``drained`` are counted where they
happen (the overflow path and the drain), and ``written`` is ``drained + dropped +
pending`` — every event appended is in exactly one of those three places. The hot path
only appends below the high-water mark (at most ``capacity - 1``), so an append that
would overflow always goes through the counted path.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from itertools import repeat, starmap
from typing import Any

DROP_OLDEST = "drop_oldest"
DROP_NEWEST = "drop_newest"
OVERFLOW_POLICIES = (DROP_OLDEST, DROP_NEWEST)


@dataclass(frozen=True, slots=True)
class RingStats:
    """Exact counters of one ring. ``written == drained + dropped + pending``."""

    label: str
    written: int
    drained: int
    dropped: int
    pending: int
    sink_errors: int
    unrouted: int = 0  # drained events no sink or open capture was there to take


def _high_water(capacity: int, fraction: float) -> int:
    return max(1, min(capacity - 1, int(capacity * fraction))) if capacity > 1 else 0


class Ring:
    """A bounded buffer of hot-path event tuples with an explicit drop policy."""

    __slots__ = (
        "buffer",
        "capacity",
        "drained",
        "drainer",
        "drop_newest",
        "dropped",
        "high_water",
        "label",
        "lock",
        "loop",
        "sentinel",
        "sink_errors",
        "thread_id",
        "unrouted",
        "wake_pending",
    )

    def __init__(self, loop: Any, capacity: int, overflow: str, high_water: float,
                 label: str) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident() if loop is not None else None
        self.label = label
        self.capacity = capacity
        self.buffer: deque[tuple[Any, ...]] = deque(maxlen=capacity)
        self.high_water = _high_water(capacity, high_water)
        self.drop_newest = overflow == DROP_NEWEST
        self.dropped = 0
        self.drained = 0
        self.sink_errors = 0
        self.unrouted = 0
        self.drainer: Any = None  # the loop timer that drains this ring, once started
        self.sentinel: Any = None  # the task whose cancellation at loop shutdown flushes
        self.wake_pending = False  # a drain_soon is scheduled on the loop
        self.lock = threading.Lock()

    def put_slow(self, event: tuple[Any, ...]) -> None:
        """Append at or past the high-water mark: count what overflows, wake the drainer."""
        with self.lock:
            buffer = self.buffer
            if len(buffer) >= self.capacity:
                self.dropped += 1
                if not self.drop_newest:
                    buffer.append(event)  # a full deque(maxlen) drops its oldest item itself
            else:
                buffer.append(event)
        self.wake()

    def wake(self) -> None:
        """Have the loop drain this ring soon (once, however many events pass the mark)."""
        if self.wake_pending or self.loop is None:
            return
        self.wake_pending = True
        from ._pipeline import drain_soon  # here: _pipeline imports this module

        try:
            if threading.get_ident() == self.thread_id:
                self.loop.call_soon(drain_soon, self)
            else:
                self.loop.call_soon_threadsafe(drain_soon, self)
        except RuntimeError:  # the loop closed; the writer sweeps this ring
            self.wake_pending = False

    def take(self) -> list[tuple[Any, ...]]:
        """Remove and return everything pending, counting it as drained."""
        with self.lock:
            # popleft, n times, in C (starmap): an append racing with this stays queued.
            batch = list(starmap(self.buffer.popleft, repeat((), len(self.buffer))))
            self.drained += len(batch)
        return batch

    def discard(self) -> None:
        """Drop everything pending, counting it as dropped (the writer is too far behind)."""
        with self.lock:
            self.dropped += len(self.buffer)
            self.buffer.clear()

    def resize(self, capacity: int, overflow: str, high_water: float) -> None:
        """Apply new settings, keeping the newest pending events that still fit."""
        with self.lock:
            kept = deque(self.buffer, maxlen=capacity)
            self.dropped += len(self.buffer) - len(kept)
            self.buffer = kept
            self.capacity = capacity
            self.high_water = _high_water(capacity, high_water)
            self.drop_newest = overflow == DROP_NEWEST

    def stats(self) -> RingStats:
        with self.lock:
            pending = len(self.buffer)
            return RingStats(self.label, self.drained + self.dropped + pending, self.drained,
                             self.dropped, pending, self.sink_errors, self.unrouted)
