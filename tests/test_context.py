"""The per-task capture context: switches, correlation stack, inheritance and isolation.

Every construct that runs code in another task or thread is checked two ways: the events it
produces descend from the operation that was current where it was started (inheritance),
and nothing the child does to its own context shows in the parent (isolation).
Each runs on asyncio, uvloop and (3.12+) a loop with the eager task factory.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
from helpers_core import descends_from, of_kind, one, run_on

import ascope
from ascope import runtime as rt
from ascope.testing import capture

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def mark(label: str) -> None:
    """A point event we can find afterwards: an expression value named ``label``."""
    rt.report_expression_value(None, label, None, 0)


def marked(events: list[ascope.Event], label: str) -> ascope.Event:
    return one(events, "expression_value", expression=label)


async def child_work(label: str) -> int:
    """A child that marks, opens an operation it never closes, and yields to the loop."""
    mark(label)
    rt.report_function_entry("tests", f"{label}.leaked", ())  # never exited: must not leak
    await asyncio.sleep(0)
    mark(label + ".after")
    return 1


# -- enabled() and the global switch -----------------------------------------------------------


def test_enabled_is_false_at_start_and_follows_the_global_switch() -> None:
    """enabled() is False while capture is off, True after enable(), False after disable()."""
    assert ascope.enabled() is False
    ascope.enable()
    assert ascope.enabled() is True
    ascope.disable()
    assert ascope.enabled() is False


def test_report_calls_record_nothing_while_capture_is_off() -> None:
    """With the global switch off, entry returns None and the event count does not move."""
    before = ascope.stats().written
    assert rt.report_function_entry("m", "f", (1,)) is None
    mark("off")
    assert ascope.stats().written == before


def test_enabled_inside_capture_block(run: Run) -> None:
    """testing.capture() turns capture on for its block only."""
    async def main() -> tuple[bool, bool, bool]:
        before = ascope.enabled()
        async with capture():
            inside = ascope.enabled()
        return before, inside, ascope.enabled()

    assert run(main()) == (False, True, False)


# -- disabled() ----------------------------------------------------------------------------------


def test_disabled_context_manager_turns_capture_off_and_back_on() -> None:
    """Inside `with disabled()` nothing is recorded; after it, recording resumes."""
    with capture() as captured:
        mark("before")
        with ascope.disabled():
            assert ascope.enabled() is False
            mark("inside")
        assert ascope.enabled() is True
        mark("after")
    assert [e.data["expression"] for e in captured.of_kind("expression_value")] == [
        "before", "after"]


def test_disabled_restores_on_exception() -> None:
    """An exception leaving the block still switches capture back on."""
    with capture() as captured:
        with pytest.raises(KeyError), ascope.disabled():
            raise KeyError("boom")
        assert ascope.enabled() is True
        mark("after")
    assert marked(captured.events, "after")


def test_disabled_nests() -> None:
    """Nested disabled() blocks (also one instance reused) unwind to the right state."""
    block = ascope.disabled()
    with capture():
        with block:
            with block:
                assert not ascope.enabled()
            assert not ascope.enabled()
        assert ascope.enabled()


def test_one_disabled_instance_shared_by_concurrent_tasks(run: Run) -> None:
    """A module-level `quiet = disabled()` entered by two tasks whose blocks interleave
    across awaits: no error, each block is off inside and on after."""
    quiet = ascope.disabled()

    async def worker(name: str, go: asyncio.Event) -> tuple[bool, bool]:
        with quiet:
            await go.wait()
            inside = ascope.enabled()
            mark(name)
        return inside, ascope.enabled()

    async def main() -> tuple[list[Any], list[ascope.Event]]:
        async with capture() as captured:
            first, second = asyncio.Event(), asyncio.Event()
            tasks = [asyncio.create_task(worker("w1", first)),
                     asyncio.create_task(worker("w2", second))]
            await asyncio.sleep(0)
            first.set()  # w1 leaves its block while w2 is still inside its own
            await asyncio.sleep(0)
            second.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        return list(results), captured.events

    results, events = run(main())
    assert results == [(False, True), (False, True)]
    assert of_kind(events, "expression_value") == []


def test_disabled_as_sync_decorator() -> None:
    """@disabled() on a function: off inside each call, returns and raises as before."""
    @ascope.disabled()
    def quiet(x: int) -> tuple[int, bool]:
        mark("quiet")
        return x * 2, ascope.enabled()

    @ascope.disabled()
    def fails() -> None:
        raise ValueError("x")

    with capture() as captured:
        assert quiet(21) == (42, False)
        with pytest.raises(ValueError):
            fails()
        assert ascope.enabled()
    assert not captured.of_kind("expression_value")
    assert quiet.__name__ == "quiet"


def test_disabled_as_async_decorator_keeps_it_off_across_awaits(run: Run) -> None:
    """@disabled() on a coroutine function: off across its awaits, on again after."""
    @ascope.disabled()
    async def quiet() -> list[bool]:
        states = [ascope.enabled()]
        await asyncio.sleep(0)
        mark("quiet")
        await asyncio.sleep(0.001)
        states.append(ascope.enabled())
        return states

    async def main() -> tuple[list[bool], bool, list[ascope.Event]]:
        async with capture() as captured:
            states = await quiet()
            after = ascope.enabled()
            mark("loud")
        return states, after, captured.events

    states, after, events = run(main())
    assert states == [False, False]
    assert after is True
    assert [e.data["expression"] for e in of_kind(events, "expression_value")] == ["loud"]
    assert asyncio.iscoroutinefunction(quiet)


def test_disabled_affects_only_the_current_task(run: Run) -> None:
    """A task inside disabled() records nothing while a concurrent task keeps recording."""
    async def quiet(step: asyncio.Event) -> None:
        with ascope.disabled():
            await step.wait()
            mark("quiet")

    async def loud(step: asyncio.Event) -> None:
        step.set()
        await asyncio.sleep(0)
        mark("loud")

    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            step = asyncio.Event()
            await asyncio.gather(quiet(step), loud(step))
            mark("main")
        return captured.events

    labels = {e.data["expression"] for e in of_kind(run(main()), "expression_value")}
    assert labels == {"loud", "main"}


def test_tasks_spawned_inside_disabled_are_disabled(run: Run) -> None:
    """disabled() is inherited: tasks created inside it record nothing, and no spawn."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            with ascope.disabled():
                await asyncio.create_task(child_work("hidden"))
            mark("visible")
        return captured.events

    events = run(main())
    assert [e.kind for e in events] == ["expression_value"]


# -- initialize_context / clear_context / current_correlation_id ----------------------------


def test_current_correlation_id_follows_entry_and_exit() -> None:
    """current_correlation_id() is None at the root, the entry's id inside, None after."""
    with capture():
        assert ascope.current_correlation_id() is None
        cid = rt.report_function_entry("m", "f")
        assert cid is not None and ascope.current_correlation_id() == cid
        rt.report_function_exit(cid)
        assert ascope.current_correlation_id() is None


def test_initialize_context_starts_a_new_trace_and_drops_the_stack(run: Run) -> None:
    """initialize_context(): no current operation, a fresh trace id on following events."""
    async def main() -> tuple[Any, list[ascope.Event]]:
        async with capture() as captured:
            rt.report_function_entry("m", "outer")
            ascope.initialize_context()
            inside = ascope.current_correlation_id()
            mark("new-trace")
            ascope.initialize_context("4bf92f3577b34da6a3ce929d0e0e4736")
            mark("given-trace")
        return inside, captured.events

    inside, events = run(main())
    assert inside is None
    fresh = marked(events, "new-trace")
    assert fresh.correlation_id is None and fresh.parent_id is None
    assert isinstance(fresh.trace_id, str) and len(fresh.trace_id) == 32
    assert int(fresh.trace_id, 16) != 0
    assert marked(events, "given-trace").trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert fresh.task_id is not None  # the task keeps its id


def test_clear_context_forgets_stack_and_trace() -> None:
    """clear_context(): no correlation id and no trace id afterwards."""
    with capture() as captured:
        ascope.initialize_context()
        rt.report_function_entry("m", "f")
        ascope.clear_context()
        assert ascope.current_correlation_id() is None
        mark("cleared")
    event = marked(captured.events, "cleared")
    assert (event.correlation_id, event.parent_id, event.trace_id) == (None, None, None)


def test_trace_id_is_inherited_by_tasks(run: Run) -> None:
    """A task spawned after initialize_context(trace) carries the same trace id."""
    trace = "0af7651916cd43dd8448eb211c80319c"

    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            ascope.initialize_context(trace)
            await asyncio.create_task(child_work("child"))
        return captured.events

    assert marked(run(main()), "child").trace_id == trace


def test_initialize_context_in_a_child_does_not_touch_the_parent(run: Run) -> None:
    """A child task that starts its own trace leaves the parent's trace and operation."""
    async def child() -> None:
        ascope.initialize_context("11111111111111111111111111111111")
        mark("child")

    async def main() -> tuple[int, list[ascope.Event]]:
        async with capture() as captured:
            ascope.initialize_context("22222222222222222222222222222222")
            cid = await open_parent()
            await asyncio.create_task(child())
            assert ascope.current_correlation_id() == cid
            mark("parent")
        return cid, captured.events

    cid, events = run(main())
    assert marked(events, "child").trace_id == "1" * 32
    parent = marked(events, "parent")
    assert parent.trace_id == "2" * 32 and parent.correlation_id == cid


def test_context_functions_are_harmless_while_off() -> None:
    """initialize_context/clear_context/current_correlation_id work with capture off."""
    ascope.initialize_context()
    ascope.clear_context()
    assert ascope.current_correlation_id() is None
    assert ascope.enabled() is False


# -- inheritance and isolation, construct by construct ---------------------------------------


def check_child(events: list[ascope.Event], label: str, parent_cid: int | None) -> None:
    """The child's marks descend from ``parent_cid``, and its leaked entry stays its own."""
    first = marked(events, label)
    assert descends_from(events, first, parent_cid), (label, first, parent_cid)
    after = marked(events, label + ".after")
    # After the leaked entry the child's marks belong to that entry: stack is per task.
    leaked = one(events, "function_entry", function=f"{label}.leaked")
    assert after.correlation_id == leaked.correlation_id


async def open_parent() -> int:
    cid = rt.report_function_entry("tests", "parent", ())
    assert cid is not None
    return cid


def test_create_task(run: Run) -> None:
    """create_task: child events descend from the spawner's operation; nothing leaks back."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.create_task(child_work("child"))
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "child", cid)
    spawn = one(events, "task_spawn", coroutine="child_work")
    assert spawn.parent_id == cid


def test_sibling_tasks_are_isolated(run: Run) -> None:
    """Two concurrent tasks each see only their own operations, interleaved at awaits."""
    async def worker(name: str) -> list[Any]:
        seen = []
        cid = rt.report_function_entry("tests", name, ())
        for _ in range(3):
            await asyncio.sleep(0)
            seen.append(ascope.current_correlation_id() == cid)
            mark(name)
        rt.report_function_exit(cid)
        seen.append(ascope.current_correlation_id() != cid)
        return seen

    async def main() -> tuple[list[list[Any]], list[ascope.Event]]:
        async with capture() as captured:
            results = await asyncio.gather(worker("a"), worker("b"))
        return results, captured.events

    results, events = run(main())
    assert results == [[True] * 4, [True] * 4]
    for name in ("a", "b"):
        entry = one(events, "function_entry", function=name)
        marks = [e for e in of_kind(events, "expression_value") if e.data["expression"] == name]
        assert len(marks) == 3
        assert {e.correlation_id for e in marks} == {entry.correlation_id}


def test_gather(run: Run) -> None:
    """gather: every awaited coroutine becomes a task under the caller's operation."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.gather(child_work("g1"), child_work("g2"))
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "g1", cid)
    check_child(events, "g2", cid)


def test_task_group(run: Run) -> None:
    """asyncio.TaskGroup: children descend from the operation current at create_task."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            async with asyncio.TaskGroup() as group:
                group.create_task(child_work("t1"))
                group.create_task(child_work("t2"))
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "t1", cid)
    check_child(events, "t2", cid)


def test_wait_for(run: Run) -> None:
    """wait_for (a task on 3.11, the same task on 3.12+): descends from the caller."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.wait_for(asyncio.create_task(child_work("w1")), timeout=5)
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "w1", cid)


def test_wait_for_bare_coroutine(run: Run) -> None:
    """wait_for(coroutine): marks descend from the caller whichever way it is run."""
    async def quiet_child() -> None:
        mark("wc")
        await asyncio.sleep(0)

    async def main() -> tuple[int, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.wait_for(quiet_child(), timeout=5)
        return cid, captured.events

    cid, events = run(main())
    assert descends_from(events, marked(events, "wc"), cid)


def test_shield(run: Run) -> None:
    """shield: the shielded coroutine's task descends from the caller."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.shield(child_work("s1"))
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "s1", cid)


def test_as_completed(run: Run) -> None:
    """as_completed: each coroutine's task descends from the caller."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            for next_done in asyncio.as_completed([child_work("a1"), child_work("a2")]):
                await next_done
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "a1", cid)
    check_child(events, "a2", cid)


def test_timeout_block(run: Run) -> None:
    """asyncio.timeout runs in the same task: events inside belong to the caller."""
    async def main() -> tuple[int, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            async with asyncio.timeout(5):
                await asyncio.sleep(0)
                mark("in-timeout")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.001):
                    mark("timing-out")
                    await asyncio.sleep(1)
            assert ascope.current_correlation_id() == cid
        return cid, captured.events

    cid, events = run(main())
    assert marked(events, "in-timeout").correlation_id == cid
    assert marked(events, "timing-out").correlation_id == cid


def test_anyio_task_group(run: Run) -> None:
    """anyio task groups (on the asyncio backend): children descend from the caller. With
    the eager task factory too: anyio recognises ascope's wrapper as an eager factory and
    builds its tasks non-eagerly through it, as it would without ascope."""
    async def main() -> tuple[int, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            async with anyio.create_task_group() as group:
                group.start_soon(child_work, "any1")
                group.start_soon(child_work, "any2")
            after = ascope.current_correlation_id()
        return cid, after, captured.events

    cid, after, events = run(main())
    assert after == cid
    check_child(events, "any1", cid)
    check_child(events, "any2", cid)


def test_to_thread_keeps_the_callers_correlation_id(run: Run) -> None:
    """asyncio.to_thread copies the context: thread events carry the caller's id."""
    def in_thread() -> Any:
        mark("thread")
        inner = rt.report_function_entry("tests", "in_thread", ())
        rt.report_function_exit(inner)
        return threading.current_thread() is not threading.main_thread()

    async def main() -> tuple[int, Any, Any, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            other_thread = await asyncio.to_thread(in_thread)
            after = ascope.current_correlation_id()
        return cid, other_thread, after, captured.events

    cid, other_thread, after, events = run(main())
    assert other_thread is True
    assert after == cid
    event = marked(events, "thread")
    assert event.correlation_id == cid
    assert one(events, "function_entry", function="in_thread").parent_id == cid


def test_run_in_executor_does_not_carry_the_context(run: Run) -> None:
    """Decided behaviour: loop.run_in_executor does not copy the context, so events there
    have no correlation id or parent (they are still recorded)."""
    async def main() -> tuple[int, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.get_running_loop().run_in_executor(None, mark, "executor")
        return cid, captured.events

    _, events = run(main())
    event = marked(events, "executor")
    assert (event.correlation_id, event.parent_id) == (None, None)


def test_run_in_executor_with_copied_context(run: Run) -> None:
    """Wrapping the call in contextvars.copy_context().run keeps the caller's id."""
    async def main() -> tuple[int, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            context = contextvars.copy_context()
            await asyncio.get_running_loop().run_in_executor(None, context.run, mark, "copied")
        return cid, captured.events

    cid, events = run(main())
    assert marked(events, "copied").correlation_id == cid


def test_copy_context_run_inherits_and_isolates() -> None:
    """copy_context().run sees the current operation; what it opens stays inside the copy."""
    def inside() -> Any:
        mark("copy")
        return rt.report_function_entry("tests", "in_copy", ())

    with capture() as captured:
        cid = rt.report_function_entry("tests", "outer", ())
        inner = contextvars.copy_context().run(inside)
        assert ascope.current_correlation_id() == cid
        assert inner != cid
    assert marked(captured.events, "copy").correlation_id == cid
    assert one(captured.events, "function_entry", function="in_copy").parent_id == cid


def test_plain_thread_has_its_own_root_context() -> None:
    """A threading.Thread starts from an empty context: its events have no parent."""
    def in_thread() -> None:
        mark("plain-thread")

    with capture() as captured:
        rt.report_function_entry("tests", "outer", ())
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
    event = marked(captured.events, "plain-thread")
    assert (event.correlation_id, event.parent_id) == (None, None)


def test_nested_tasks_chain_their_parents(run: Run) -> None:
    """A grandchild's events descend from the grandparent's operation through the child."""
    async def grandchild() -> None:
        mark("grandchild")

    async def middle() -> None:
        cid = rt.report_function_entry("tests", "middle", ())
        await asyncio.create_task(grandchild())
        rt.report_function_exit(cid)

    async def main() -> tuple[int, list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            await asyncio.create_task(middle())
        return cid, captured.events

    cid, events = run(main())
    middle_cid = one(events, "function_entry", function="middle").correlation_id
    event = marked(events, "grandchild")
    assert descends_from(events, event, middle_cid)
    assert descends_from(events, event, cid)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is 3.12+")
def test_eager_child_runs_its_first_step_with_its_own_frame() -> None:
    """With the eager factory a child's first step runs inside create_task, already in its
    own frame under the spawner's operation, and the spawn is recorded before it."""
    first_step: list[Any] = []

    async def eager_child() -> None:
        first_step.append(ascope.current_correlation_id())
        mark("eager")
        await asyncio.sleep(0)

    async def main() -> tuple[int, list[Any], list[ascope.Event]]:
        async with capture() as captured:
            cid = await open_parent()
            task = asyncio.create_task(eager_child())
            seen_before_await = list(first_step)
            assert ascope.current_correlation_id() == cid
            await task
        return cid, seen_before_await, captured.events

    cid, seen_before_await, events = run_on("eager", main())
    assert len(seen_before_await) == 1 and seen_before_await[0] not in (None, cid)
    event = marked(events, "eager")
    assert event.parent_id == cid
    spawn = one(events, "task_spawn", coroutine="test_eager_child_runs_its_first_step_with_"
                "its_own_frame.<locals>.eager_child")
    assert spawn.ts_ns <= event.ts_ns
    assert spawn.correlation_id == event.correlation_id
