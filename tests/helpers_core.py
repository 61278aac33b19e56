"""Shared helpers for the runtime-core tests: loop kinds, running coroutines, event lookups."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import uvloop

import ascope

HAS_EAGER = sys.version_info >= (3, 12)


def _eager_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    return loop


# name -> loop factory. The eager variant runs only where the interpreter has it (3.12+).
LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
if HAS_EAGER:
    LOOP_FACTORIES["eager"] = _eager_loop


def run_on(loop_kind: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` to completion on a fresh loop of ``loop_kind`` (closed after)."""
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_kind]) as runner:
        return runner.run(coroutine)


def of_kind(events: Iterable[ascope.Event], *kinds: str) -> list[ascope.Event]:
    return [event for event in events if event.kind in kinds]


def one(events: Iterable[ascope.Event], kind: str, **data: Any) -> ascope.Event:
    """The single event of ``kind`` whose data has the given items."""
    found = [e for e in events if e.kind == kind
             and all(e.data.get(key) == value for key, value in data.items())]
    assert len(found) == 1, f"expected one {kind} with {data}, got {found}"
    return found[0]


def lineage(events: Iterable[ascope.Event], event: ascope.Event) -> list[int]:
    """The correlation ids from ``event``'s own up through every known parent.

    Each event says which operation it belongs to (``correlation_id``) and which operation
    that one started under (``parent_id``); chaining those gives the ancestry.
    """
    parents: dict[int, int | None] = {}
    for other in events:
        if other.correlation_id is not None:
            parents.setdefault(other.correlation_id, other.parent_id)
    chain: list[int] = []
    cid = event.correlation_id
    while cid is not None and cid not in chain:
        chain.append(cid)
        cid = parents.get(cid)
    if event.parent_id is not None and event.parent_id not in chain:
        chain.append(event.parent_id)
    return chain


def descends_from(events: Iterable[ascope.Event], event: ascope.Event, cid: int | None) -> bool:
    events = list(events)
    return cid is not None and cid in lineage(events, event)
