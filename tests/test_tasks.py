"""The task factory: chaining, keywords, spawn/exit events, install/uninstall.

Runs on asyncio, uvloop and (3.12+) the eager task factory through the ``run`` fixture.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from helpers_core import of_kind, one, run_on

import ascope
from ascope import _tasks
from ascope import runtime as rt
from ascope.sinks import MemorySink
from ascope.testing import capture

Run = Callable[[Coroutine[Any, Any, Any]], Any]

flavour: contextvars.ContextVar[str] = contextvars.ContextVar("flavour", default="plain")


async def returns() -> int:
    await asyncio.sleep(0)
    return 7


async def raises() -> None:
    await asyncio.sleep(0)
    raise KeyError("boom")


async def sleeps() -> None:
    await asyncio.sleep(10)


def recording_factory(calls: list[dict[str, Any]],
                      inner: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """A user task factory that records each call's keywords and delegates."""
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        calls.append({**kwargs, "coroutine": getattr(coro, "__qualname__", None)})
        if inner is not None:
            return inner(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


def test_factory_is_installed_on_first_capture(run: Run) -> None:
    """Entering capture() installs ascope's factory on the running loop."""
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        before = _tasks.is_ascope_factory(loop.get_task_factory())
        async with capture():
            after = _tasks.is_ascope_factory(loop.get_task_factory())
        return before, after

    assert run(main()) == (False, True)


def test_chains_onto_an_existing_factory(run: Run) -> None:
    """A factory set before ascope keeps being called (with the task's keywords), and
    its tasks are still tracked; ascope never replaces it silently."""
    calls: list[dict[str, Any]] = []

    async def main() -> tuple[Any, list[ascope.Event]]:
        loop = asyncio.get_running_loop()
        user = recording_factory(calls, loop.get_task_factory())
        loop.set_task_factory(user)
        async with capture() as captured:
            installed = loop.get_task_factory()
            result = await asyncio.create_task(returns(), name="chained")
        assert result == 7
        return installed, captured.events

    installed, events = run(main())
    assert _tasks.is_ascope_factory(installed)
    assert installed.ascope_delegate is not None
    # The user factory made our task (Runner's own tasks went through it too).
    assert any(call.get("coroutine") == "returns" for call in calls)
    one(events, "task_spawn", coroutine="returns")
    one(events, "task_exit", outcome="result")


def test_passes_name_keyword(run: Run) -> None:
    """name= reaches the task."""
    async def main() -> str:
        async with capture():
            task = asyncio.create_task(returns(), name="my-task")
            await task
        return task.get_name()

    assert run(main()) == "my-task"


def test_the_name_given_to_create_task_is_recorded(run: Run) -> None:
    """create_task(name=...) shows on task_exit on every version (before 3.13 asyncio
    names the task after the factory ran, so task_spawn has it only from 3.13), and the
    task tree labels the task with it."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            await asyncio.create_task(returns(), name="poller")
            await asyncio.create_task(returns())
        return captured.events

    events = run(main())
    exits = of_kind(events, "task_exit")
    assert exits[0].data["name"] == "poller"
    assert exits[1].data["name"].startswith("Task-")
    spawned = of_kind(events, "task_spawn")[0].data["name"]
    assert spawned == ("poller" if sys.version_info >= (3, 13) else None)
    from ascope.testing import build_tree

    labels = [node.label for node in build_tree(events).walk()]
    assert any("[poller]" in label for label in labels), labels
    assert sum("[Task-" in label for label in labels) == 0


def test_passes_context_keyword(run: Run) -> None:
    """context= is the context the task runs in (its variables are seen), and the task is
    still tracked under the spawner's operation."""
    async def reads() -> tuple[str, Any]:
        await asyncio.sleep(0)
        return flavour.get(), ascope.current_correlation_id()

    async def main() -> tuple[Any, int, list[ascope.Event]]:
        context = contextvars.copy_context()
        context.run(flavour.set, "chosen")
        async with capture() as captured:
            cid = rt.report_function_entry("tests", "spawner", ())
            assert cid is not None
            seen = await asyncio.get_running_loop().create_task(reads(), context=context)
        return seen, cid, captured.events

    (value, child_cid), cid, events = run(main())
    assert value == "chosen"
    spawn = one(events, "task_spawn",
                coroutine="test_passes_context_keyword.<locals>.reads")
    assert spawn.parent_id == cid
    assert child_cid == spawn.correlation_id


def test_context_keyword_with_the_callers_own_context() -> None:
    """create_task(context=ctx) called from inside ctx.run() works as without ascope
    (the context is entered at that moment; ascope must not raise into the caller)."""
    async def value() -> int:
        return 1

    async def main() -> int:
        async with capture():
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            task = context.run(lambda: loop.create_task(value(), context=context))
            return await task

    assert run_on("asyncio", main()) == 1


def test_passes_keywords_through_to_a_delegate(run: Run) -> None:
    """Every keyword the loop gives the factory reaches the chained one: context= always,
    name= where the loop passes it to factories (3.13+; before, it names the task after)."""
    calls: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(recording_factory(calls, loop.get_task_factory()))
        async with capture():
            context = contextvars.copy_context()
            await loop.create_task(returns(), name="kw", context=context)

    run(main())
    ours = [call for call in calls if call["coroutine"] == "returns"]
    assert len(ours) == 1
    assert isinstance(ours[0]["context"], contextvars.Context)
    if sys.version_info >= (3, 13):
        assert ours[0]["name"] == "kw"


@pytest.mark.skipif(sys.version_info < (3, 14), reason="eager_start= is a 3.14 keyword")
def test_passes_eager_start_keyword() -> None:  # pragma: no cover - 3.14 only
    """eager_start=True reaches the task: it runs its first step inside create_task."""
    ran: list[bool] = []

    async def first_step() -> None:
        ran.append(True)

    async def main() -> list[bool]:
        async with capture():
            task = asyncio.get_running_loop().create_task(first_step(), eager_start=True)
            seen = list(ran)
            await task
        return seen

    assert run_on("asyncio", main()) == [True]


def test_task_exit_outcomes(run: Run) -> None:
    """task_exit says result / exception (with its type) / cancelled, with a duration."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            ok = asyncio.create_task(returns())
            bad = asyncio.create_task(raises())
            cancelled = asyncio.create_task(sleeps())
            await asyncio.sleep(0)
            cancelled.cancel()
            results = await asyncio.gather(ok, bad, cancelled, return_exceptions=True)
            assert results[0] == 7
            assert isinstance(results[1], KeyError)
            assert isinstance(results[2], asyncio.CancelledError)
        return captured.events

    events = run(main())
    exits = {e.correlation_id: e for e in of_kind(events, "task_exit")}
    spawns = {e.data["coroutine"]: e for e in of_kind(events, "task_spawn")}
    by_coroutine = {name: exits[spawn.correlation_id] for name, spawn in spawns.items()}
    assert by_coroutine["returns"].data["outcome"] == "result"
    assert by_coroutine["returns"].data["error"] is None
    assert by_coroutine["raises"].data["outcome"] == "exception"
    assert by_coroutine["raises"].data["error"] == "KeyError"
    assert by_coroutine["sleeps"].data["outcome"] == "cancelled"
    for name, event in by_coroutine.items():
        assert isinstance(event.data["duration_ns"], int) and event.data["duration_ns"] >= 0
        assert event.task_id == spawns[name].data["child_task_id"]


def test_spawn_comes_before_the_childs_events(run: Run) -> None:
    """task_spawn is recorded before the child runs (before delegation, eager or not),
    and the child's events carry the child's task id."""
    async def child() -> None:
        rt.report_expression_value(None, "child", 1, 0)

    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            await asyncio.create_task(child())
        return captured.events

    events = run(main())
    spawn = one(events, "task_spawn", coroutine="test_spawn_comes_before_the_childs_events."
                "<locals>.child")
    mark = one(events, "expression_value", expression="child")
    assert spawn.ts_ns <= mark.ts_ns
    assert mark.task_id == spawn.data["child_task_id"]
    assert events.index(spawn) < events.index(mark)


def test_unretrieved_task_exception_is_still_reported(run: Run) -> None:
    """Tracking a task must not mark its exception as retrieved: asyncio still reports
    'Task exception was never retrieved' for a failed task nobody awaited."""
    reported: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        async with capture():
            task = asyncio.create_task(raises())
            await asyncio.sleep(0.01)
            assert task.done()
            del task
        gc.collect()
        await asyncio.sleep(0)

    run(main())
    assert any("never retrieved" in message for message in reported), reported


def test_task_exception_still_raises_for_the_awaiter(run: Run) -> None:
    """The awaiter of a failed tracked task gets the very exception object."""
    error = KeyError("mine")

    async def fails() -> None:
        raise error

    async def main() -> BaseException | None:
        async with capture():
            try:
                await asyncio.create_task(fails())
            except KeyError as caught:
                return caught
        return None

    assert run(main()) is error


def test_install_twice_is_harmless_and_uninstall_restores(run: Run) -> None:
    """install_task_factory is idempotent; uninstall puts back the factory it wrapped;
    uninstalling again (or when not installed) changes nothing."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        original = loop.get_task_factory()
        ascope.install_task_factory(loop)
        installed = loop.get_task_factory()
        assert _tasks.is_ascope_factory(installed)
        ascope.install_task_factory()
        assert loop.get_task_factory() is installed
        ascope.uninstall_task_factory(loop)
        assert loop.get_task_factory() is original
        ascope.uninstall_task_factory()
        assert loop.get_task_factory() is original

    run(main())


def test_install_keeps_a_user_factory_and_uninstall_gives_it_back(run: Run) -> None:
    """With a user factory set, install wraps it and uninstall restores exactly it."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        user = recording_factory([], loop.get_task_factory())
        loop.set_task_factory(user)
        ascope.install_task_factory(loop)
        assert loop.get_task_factory().ascope_delegate is user  # type: ignore[union-attr]
        ascope.uninstall_task_factory(loop)
        assert loop.get_task_factory() is user

    run(main())


def test_factory_while_capture_is_off_creates_plain_tasks(run: Run) -> None:
    """With capture off the installed factory only delegates: tasks work, nothing recorded."""
    async def main() -> int:
        ascope.install_task_factory()
        before = ascope.stats().written
        assert await asyncio.create_task(returns()) == 7
        assert ascope.stats().written == before
        return 0

    run(main())


def test_many_tasks_each_get_one_spawn_and_one_exit(run: Run) -> None:
    """100 tasks: exactly 100 spawns and 100 exits, distinct task ids."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            await asyncio.gather(*(returns() for _ in range(100)))
        return captured.events

    events = run(main())
    spawns = of_kind(events, "task_spawn")
    exits = of_kind(events, "task_exit")
    assert len(spawns) == len(exits) == 100
    assert len({e.data["child_task_id"] for e in spawns}) == 100
    assert {e.correlation_id for e in spawns} == {e.correlation_id for e in exits}


def test_failed_task_creation_leaves_no_dangling_spawn(run: Run) -> None:
    """create_task with something that is not a coroutine raises TypeError as without
    ascope, and every recorded task_spawn has its task_exit."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            with pytest.raises(TypeError):
                asyncio.create_task(42)  # type: ignore[arg-type]  # noqa: RUF006
            await asyncio.create_task(returns())
        return captured.events

    events = run(main())
    spawned = {e.correlation_id for e in of_kind(events, "task_spawn")}
    exited = {e.correlation_id for e in of_kind(events, "task_exit")}
    assert spawned == exited


def test_tasks_are_tracked_when_enable_comes_before_the_loop() -> None:
    """The zero-code path: capture switched on before asyncio.run; the main coroutine
    gathers children that report events. Each child has its own task id and a spawn."""
    sink = MemorySink()
    ascope.configure(sinks=[sink])
    ascope.enable()

    async def child(n: int) -> None:
        rt.report_expression_value(None, "child", n, 0)

    async def main() -> None:
        await asyncio.gather(child(1), child(2))
        await ascope.flush()

    asyncio.run(main())
    marks = of_kind(sink.events, "expression_value")
    assert len(marks) == 2
    assert None not in {e.task_id for e in marks}
    assert len({e.task_id for e in marks}) == 2
    assert len(of_kind(sink.events, "task_spawn")) >= 2
