"""Test helpers: capture what a block of code did, query it, assert on it.

    with ascope.testing.capture() as captured:
        await handler()
    captured.only("function_entry", function="app.db:fetch_user")
    print(captured.tree())                 # the call/task/request tree, as text
    assert_queries(captured, request="/users/1", count=1)

``capture()`` switches capture on for its block only (events go to memory, not to the
configured sinks unless ``ascope.enable()`` is also on) and, on exit, flushes and holds
every event that belongs to the block: events of the block's task and of the tasks it
spawned, plus events emitted elsewhere in the process during the block that belong to
no other capture (a server running in the same process, for instance). Events emitted
before the block opened never count, even when they reach the writer late.

With pytest, the ``ascope_events`` fixture (``ascope.pytest_plugin``) does the same for a
whole test. docs/testing.md has the guide.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from . import _context as _c
from . import _pipeline
from ._events import Event
from ._query import EventQuery, Events, deterministic
from ._testing_asserts import (
    assert_called,
    assert_no_errors,
    assert_queries,
    assert_tree,
    render_spec,
)
from ._tree import Tree, TreeNode, build_tree
from .sinks import MemorySink

__all__ = [
    "EventQuery",
    "Events",
    "Tree",
    "TreeNode",
    "assert_called",
    "assert_no_errors",
    "assert_queries",
    "assert_tree",
    "build_tree",
    "capture",
    "deterministic",
    "render_spec",
]

_capture_ids = itertools.count(1)


class capture(EventQuery):  # lower case: used like a function, `with capture() as c:`
    """Capture into memory for one block; usable as ``with`` and ``async with``.

    After the block, ``.events`` is the list of captured events in time order and the
    query methods (``filter``, ``only``, ``tree``, ``calls``...) work on it. While the
    block is open, ``.events`` is empty; ``snapshot()`` flushes and reads what is there.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._sink = MemorySink()
        self._id = next(_capture_ids)
        self._token: Any = None
        self._opened_ns = 0
        self.scope: tuple[Any, ...] = ()

    # entering and leaving --------------------------------------------------------------------

    def _enter(self) -> None:
        if self._token is not None:
            raise RuntimeError("this capture() is already open; create a new one")
        writer = _pipeline.WRITER
        self._opened_ns = time.perf_counter_ns()
        # A copy: the writer thread reads the dict without a lock.
        writer.captures = {**writer.captures, self._id: (self._sink, self._opened_ns)}
        self._token = _c.current.set(_c.current.get())
        frame = _pipeline.attach_current_loop()
        self.scope = (frame[_c.SCOPE] or ()) + (self._id,)
        _c.current.set(frame[: _c.ENABLED] + (True, self.scope) + frame[_c.SCOPE + 1:])
        _c.STATE.scoped_captures += 1
        _c.STATE.recompute()

    def _leave(self) -> None:
        writer = _pipeline.WRITER
        writer.captures = {k: v for k, v in writer.captures.items() if k != self._id}
        _c.current.reset(self._token)
        _c.STATE.scoped_captures -= 1
        _c.STATE.recompute()
        self.events = self._collected()

    def _collected(self) -> list[Event]:
        # The writer gives a capture only what was emitted while it was open.
        return sorted(self._sink.events, key=_by_time)

    def snapshot(self) -> Events:
        """Flush (blocking) and return what has been captured so far."""
        _pipeline.flush_blocking()
        return Events(self._collected())

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

    def _all(self) -> Sequence[Event]:
        return self.events

    def __repr__(self) -> str:
        if self._id in _pipeline.WRITER.captures:
            state = "open"
        else:
            state = "closed" if self._opened_ns else "not started"
        return f"<ascope.testing.capture {state}, {len(self.events)} events>"


def _by_time(event: Event) -> int:
    return event.ts_ns
