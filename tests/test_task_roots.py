"""Tasks a loop callback creates outside any operation or task (a server's protocol
starting a request) get a task id but no spawn/exit events; tasks created by a task or
inside an operation are recorded."""

from __future__ import annotations

import asyncio

import pytest

import ascope
from ascope import runtime as rt
from ascope.testing import capture


async def work() -> None:
    rt.report_line_execution(None, 1)


def test_task_from_a_callback_outside_any_operation_is_not_recorded() -> None:
    """A task created in a plain loop callback: its events carry a task id, and there is
    no task_spawn or task_exit for it."""
    async def main() -> list[ascope.Event]:
        loop = asyncio.get_running_loop()
        with capture() as captured:
            done: asyncio.Future[asyncio.Task[None]] = loop.create_future()
            # The callback runs in an empty context, as a protocol's callbacks do.
            import contextvars
            loop.call_soon(lambda: done.set_result(loop.create_task(work())),
                           context=contextvars.Context())
            await (await done)
        return captured.events

    events = asyncio.run(main())
    lines = [e for e in events if e.kind == "line_execution"]
    assert len(lines) == 1 and lines[0].task_id is not None
    assert [e.kind for e in events if e.kind in ("task_spawn", "task_exit")] == []


def test_task_created_by_a_task_is_recorded() -> None:
    """The same coroutine created from inside a task: spawn and exit are recorded."""
    async def main() -> list[ascope.Event]:
        with capture() as captured:
            await asyncio.get_running_loop().create_task(work())
        return captured.events

    events = asyncio.run(main())
    assert [e.kind for e in events if e.kind in ("task_spawn", "task_exit")] == [
        "task_spawn", "task_exit"]


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="eager tasks: 3.12+")
def test_an_eager_task_done_inside_the_factory_has_its_exit_at_once() -> None:
    """An eager task that finishes while being created has its task_exit recorded before
    create_task returns (3.12's gather, seeing it done, never yields to the loop)."""
    async def crash() -> None:
        raise KeyError("gone")

    async def main() -> list[ascope.Event]:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        async with capture() as captured:
            await asyncio.gather(asyncio.create_task(crash()), return_exceptions=True)
        return captured.events

    events = asyncio.run(main())
    exits = [e for e in events if e.kind == "task_exit"]
    assert [(e.data["outcome"], e.data["error"]) for e in exits] == [("exception", "KeyError")]
