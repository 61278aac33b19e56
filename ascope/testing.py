"""Test helpers: capture what a block of code did, as a list of events.

    with ascope.testing.capture() as captured:
        await handler()
    assert [e.kind for e in captured.events][:1] == ["function_entry"]

``capture()`` switches capture on for its block only (events go to memory, not to the
configured sinks unless ``ascope.enable()`` is also on) and, on exit, flushes and holds
every event that belongs to the block: events of the block's task and of the tasks it
spawned, plus events emitted elsewhere in the process during the block that belong to
no other capture (a server running in the same process, for instance).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from . import _context as _c
from . import _pipeline
from ._events import Event
from .sinks import MemorySink

__all__ = ["capture"]

_capture_ids = itertools.count(1)


class capture:  # noqa: N801 - used like a function: `with capture() as c:`
    """Capture into memory for one block; usable as ``with`` and ``async with``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._sink = MemorySink()
        self._id = next(_capture_ids)
        self._token: Any = None

    # entering and leaving --------------------------------------------------------------------

    def _enter(self) -> None:
        if self._token is not None:
            raise RuntimeError("this capture() is already open; create a new one")
        writer = _pipeline.WRITER
        writer.captures = {**writer.captures, self._id: self._sink}  # copy: the writer reads it
        self._token = _c.current.set(_c.current.get())
        frame = _pipeline.attach_current_loop()
        scope = (frame[_c.SCOPE] or ()) + (self._id,)
        _c.current.set(frame[: _c.ENABLED] + (True, scope) + frame[_c.SCOPE + 1:])
        _c.STATE.scoped_captures += 1
        _c.STATE.recompute()

    def _leave(self) -> None:
        writer = _pipeline.WRITER
        writer.captures = {k: v for k, v in writer.captures.items() if k != self._id}
        _c.current.reset(self._token)
        _c.STATE.scoped_captures -= 1
        _c.STATE.recompute()
        self.events = sorted(self._sink.events, key=_by_time)

    def __enter__(self) -> capture:
        self._enter()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        _pipeline.flush_blocking()
        self._leave()

    async def __aenter__(self) -> capture:
        self._enter()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await _pipeline.flush()
        self._leave()

    # reading ----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def of_kind(self, *kinds: str) -> list[Event]:
        return [event for event in self.events if event.kind in kinds]


def _by_time(event: Event) -> int:
    return event.ts_ns
