from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from .._events import Event


class MemorySink:
    """Keeps events in memory (the newest ``maxlen`` of them when a bound is given)."""

    def __init__(self, maxlen: int | None = None) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def write(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._events.extend(events)

    def close(self) -> None:
        pass

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def __repr__(self) -> str:
        return f"MemorySink({len(self._events)} events)"
