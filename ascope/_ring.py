"""The per-event-loop ring buffer and its counters.

One ``Ring`` per event loop, created on the first event emitted on that loop, plus one
lock-protected ring for threads that have no running loop (``asyncio.to_thread``
workers, plain threads). A loop's ring is only touched from its loop's thread, so the
hot path appends to a ``deque`` without a lock; the thread ring takes a lock, which is
fine because it is never on a loop thread.

Counting is exact and nearly free: ``dropped`` and ``drained`` are counted where they
happen (the overflow path and the drain), and ``written`` is ``drained + dropped +
pending`` — every event appended is in exactly one of those three places.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
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


class Ring:
    """A bounded buffer of hot-path event tuples with an explicit drop policy."""

    __slots__ = ("buffer", "capacity", "drainer", "drained", "drop_newest", "dropped",
                 "high_water", "label", "lock", "loop", "sink_errors", "waker")

    def __init__(self, loop: Any, capacity: int, overflow: str, high_water: float,
                 label: str, threadsafe: bool = False) -> None:
        self.loop = loop
        self.label = label
        self.capacity = capacity
        self.buffer: deque[tuple[Any, ...]] = deque(maxlen=capacity)
        self.high_water = max(1, min(capacity, int(capacity * high_water)))
        self.drop_newest = overflow == DROP_NEWEST
        self.dropped = 0
        self.drained = 0
        self.sink_errors = 0
        self.waker: Any = None  # a future the drainer sleeps on; set to wake it early
        self.drainer: Any = None  # the drain task, once started
        self.lock = threading.Lock() if threadsafe else None

    def put_slow(self, event: tuple[Any, ...]) -> None:
        """Append past the high-water mark: wake the drainer, count what overflows."""
        buffer = self.buffer
        if len(buffer) >= self.capacity:
            self.dropped += 1
            if self.drop_newest:
                self.wake()
                return
        buffer.append(event)  # a full deque(maxlen) drops its oldest item itself
        self.wake()

    def put_locked(self, event: tuple[Any, ...]) -> None:
        assert self.lock is not None
        with self.lock:
            buffer = self.buffer
            if len(buffer) >= self.capacity:
                self.dropped += 1
                if self.drop_newest:
                    return
            buffer.append(event)

    def wake(self) -> None:
        waker = self.waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    def take(self) -> list[tuple[Any, ...]]:
        """Remove and return everything pending, counting it as drained."""
        if self.lock is not None:
            with self.lock:
                return self._take()
        return self._take()

    def _take(self) -> list[tuple[Any, ...]]:
        batch = list(self.buffer)
        self.buffer.clear()
        self.drained += len(batch)
        return batch

    def resize(self, capacity: int, overflow: str, high_water: float) -> None:
        """Apply new settings, keeping the newest pending events that still fit."""
        kept = deque(self.buffer, maxlen=capacity)
        self.dropped += len(self.buffer) - len(kept)
        self.buffer = kept
        self.capacity = capacity
        self.high_water = max(1, min(capacity, int(capacity * high_water)))
        self.drop_newest = overflow == DROP_NEWEST

    def stats(self) -> RingStats:
        pending = len(self.buffer)
        return RingStats(self.label, self.drained + self.dropped + pending, self.drained,
                         self.dropped, pending, self.sink_errors)
