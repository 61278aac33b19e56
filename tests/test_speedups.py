"""The compiled hot path (``ascope._speedups``) against the pure-Python code it replaces.

Both must record the same events for the same calls: each case here runs once through
each implementation and compares what was recorded, ids and times aside. The rest of the
suite runs on whichever is in use; CI runs it again with ASCOPE_NO_EXTENSIONS=1.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_values import values as values_strategy

import ascope
from ascope import _context, _tasks
from ascope import runtime as rt
from ascope.testing import capture

# Not importorskip: the first test must see a build that failed silently.
speedups = _context.load_speedups()


def test_the_compiled_module_is_in_use_where_it_can_be_built() -> None:
    # Not a skip in disguise: on Linux CPython with a C compiler (CI) the install builds
    # it, and then it must be the one the runtime uses.
    buildable = (sys.platform.startswith("linux") and sys.implementation.name == "cpython"
                 and shutil.which("cc") is not None)
    if _context.extensions_disabled():
        assert not rt.COMPILED
        assert rt.report_function_entry is rt.PURE_PYTHON["report_function_entry"]
        assert type(_tasks.make_task_factory(None)).__module__ != "ascope._speedups"
    elif buildable:
        assert rt.COMPILED
        assert rt.report_function_entry is not rt.PURE_PYTHON["report_function_entry"]
        assert type(_tasks.make_task_factory(None)).__module__ == "ascope._speedups"
    else:
        pytest.skip("no C compiler or not Linux CPython: nothing is built here")


needs_compiled = pytest.mark.skipif(speedups is None, reason="ascope._speedups not in use")


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _cycle() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


# (module, function, args, result) given to entry and exit
CALLS: list[tuple[Any, Any, Any, Any]] = [
    ("app", "f", (), None),
    ("app", "f", (1, 2.5, True, None, "short"), 3),
    ("app", "f", ("x" * 600,), "y" * 600),  # strings past max_string
    ("app", "f", tuple(range(40)), 1.5),  # past max_length
    ("app", "f", (1, [1, 2], {"password": "p"}), [1]),
    ("app", "f", [1, 2], {"token": "t", "n": 1}),
    ("app", "f", {"a": 1, "api_key": "k"}, (1, 2)),
    ("app", "f", (Hostile(),), Hostile()),
    ("app", "f", (_cycle(),), _cycle()),
    (object, len, "not a tuple", b"bytes"),
    (None, None, None, True),
    ("app", "f", 42, 10**30),
]


def _shape(events: list[ascope.Event]) -> list[tuple[Any, ...]]:
    """What was recorded, with ids replaced by their order of appearance and no times."""
    seen: dict[Any, int] = {}

    def norm(value: Any) -> Any:
        if value is None:
            return None
        return seen.setdefault(value, len(seen))

    out = []
    for event in events:
        data = dict(event.data)
        data.pop("duration_ns", None)
        if "child_task_id" in data:
            data["child_task_id"] = norm(data["child_task_id"])
        if isinstance(data.get("name"), str) and data["name"].startswith("Task-"):
            data["name"] = "Task-N"  # asyncio's counter goes on between the two runs
        out.append((event.kind, norm(event.correlation_id), norm(event.parent_id),
                    event.task_id is None, event.trace_id, data))
    return out


def _record(entry: Callable[..., Any], exit_: Callable[..., Any]) -> list[tuple[Any, ...]]:
    async def main() -> list[ascope.Event]:
        with capture() as captured:
            for module, function, args, result in CALLS:
                outer = entry(module, function, args)
                inner = entry("app", "inner", (1,))
                exit_(inner, result)
                exit_(outer, result, 123, "raise")
            exit_(12345)  # not open here (closed from another task): a detached exit
            exit_(None)
            assert entry("app", "f", (), correlation_id="given") == "given"
            exit_("given", None)
        return list(captured.events)

    return _shape(asyncio.run(main()))


def _record_points(reports: dict[str, Callable[..., Any]]) -> list[tuple[Any, ...]]:
    line = reports["report_line_execution"]
    expression = reports["report_expression_value"]
    snapshot = reports["report_variable_snapshot"]
    branch = reports["report_ast_branch_execution"]
    iteration = reports["report_ast_loop_iteration"]
    values = [None, 1, "s" * 600, [1, {"secret": 2}], Hostile(), _cycle(), b"b", 2**70]

    async def main() -> list[ascope.Event]:
        with capture() as captured:
            outer = rt.report_function_entry("app", "f", ())
            for value in values:
                for cid in (None, outer, "foreign"):
                    line(cid, 3)
                    line(cid, 4, {"x": value, "password": "p"}, "ast", "m:f:4:expr")
                    expression(cid, "x + 1", value, 5)
                    expression(cid, Hostile(), value, 5, "ast", "m:f:5:binop")
                    snapshot(cid, {"x": value, "token": "t"}, 6)
                    snapshot(cid, "not a mapping", 6, "ast", "m:f:6:assign")
                    branch(cid, "if", "x > 1", value, 7, "m:f:7:if")
                    iteration(cid, "for", 2, value, 8, "m:f:8:for")
            rt.report_function_exit(outer)
            with ascope.disabled():
                line(None, 9)
        return list(captured.events)

    return _shape(asyncio.run(main()))


@needs_compiled
def test_point_reports_record_what_the_python_code_records() -> None:
    pure = _record_points(rt.PURE_PYTHON)
    compiled = _record_points({name: getattr(speedups, name) for name in rt.PURE_PYTHON})
    assert len(pure) == 2 + 8 * 3 * 8
    assert compiled == pure


@needs_compiled
def test_every_replaced_function_is_the_compiled_one() -> None:
    for name, pure in rt.PURE_PYTHON.items():
        assert getattr(rt, name) is getattr(speedups, name)
        assert getattr(rt, name).__doc__ == pure.__doc__


@needs_compiled
def test_entry_and_exit_record_what_the_python_code_records() -> None:
    pure = _record(rt.PURE_PYTHON["report_function_entry"],
                   rt.PURE_PYTHON["report_function_exit"])
    compiled = _record(speedups.report_function_entry, speedups.report_function_exit)
    assert len(pure) == 2 * 2 * len(CALLS) + 1 + 2
    assert compiled == pure


@needs_compiled
def test_compiled_calls_restore_the_context_like_the_python_ones() -> None:
    async def main() -> None:
        with capture():
            before = rt.current_correlation_id()
            outer = speedups.report_function_entry("app", "f", ())
            assert rt.current_correlation_id() == outer
            inner = speedups.report_function_entry("app", "g", ())
            speedups.report_function_exit(outer)  # closes the outer one, inner included
            assert rt.current_correlation_id() == before
            speedups.report_function_exit(inner)  # not on the stack any more: no change
            assert rt.current_correlation_id() == before

    asyncio.run(main())


@needs_compiled
def test_compiled_calls_are_quiet_when_capture_is_off() -> None:
    ascope.disable()
    assert speedups.report_function_entry("app", "f", (1,)) is None
    speedups.report_function_exit(None)
    with capture(), ascope.disabled():
        assert speedups.report_function_entry("app", "f", (1,)) is None


@needs_compiled
def test_a_broken_frame_is_an_internal_error_not_an_exception() -> None:
    async def main() -> None:
        with capture():
            token = _context.current.set("not a frame")  # type: ignore[arg-type]
            try:
                before = ascope.stats().internal_errors
                assert speedups.report_function_entry("app", "f", ()) is None
                speedups.report_function_exit(1)
                assert ascope.stats().internal_errors == before + 2
            finally:
                _context.current.reset(token)

    asyncio.run(main())


@needs_compiled
def test_the_compiled_clock_is_perf_counter_ns() -> None:
    for _ in range(1000):
        before = time.perf_counter_ns()
        now = speedups.perf_counter_ns()
        assert before <= now <= time.perf_counter_ns()


async def _tasks_workload() -> None:
    async def ok() -> int:
        return 1

    async def fails() -> None:
        raise ValueError("x")

    async def sleeps() -> None:
        await asyncio.sleep(10)

    await asyncio.create_task(ok(), name="named")
    failing = asyncio.create_task(fails())
    with pytest.raises(ValueError):
        await failing
    sleeping = asyncio.create_task(sleeps())
    await asyncio.sleep(0)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    await asyncio.gather(ok(), ok())
    with pytest.raises(TypeError):
        asyncio.create_task(42)  # type: ignore[arg-type]  # noqa: RUF006
    await asyncio.get_running_loop().create_task(ok(), context=contextvars.copy_context())


def _delegate(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
    """A task factory of the application's, which ascope's chains onto."""
    return asyncio.Task(coro, loop=loop, **{k: v for k, v in kwargs.items() if v is not None})


def _record_tasks(compiled: bool, loop_kind: str, delegate: Any,
                  monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    monkeypatch.setattr(_tasks, "_speedups", speedups if compiled else None)

    async def main() -> list[ascope.Event]:
        asyncio.get_running_loop().set_task_factory(delegate)
        with capture() as captured:
            ascope.install_task_factory()
            factory = asyncio.get_running_loop().get_task_factory()
            inner = getattr(factory, "_factory", factory)  # under an eager look-alike
            assert (type(inner).__module__ == "ascope._speedups") is compiled
            assert factory.ascope_delegate is delegate  # type: ignore[union-attr]
            await _tasks_workload()
        return list(captured.events)

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return _shape(runner.run(main()))
    return _shape(asyncio.run(main()))


@needs_compiled
@pytest.mark.parametrize("delegate", [
    None, _delegate,
    pytest.param(getattr(asyncio, "eager_task_factory", None), marks=pytest.mark.skipif(
        not hasattr(asyncio, "eager_task_factory"), reason="eager tasks: 3.12+"))],
    ids=["default", "delegate", "eager"])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_the_compiled_task_factory_records_what_the_python_one_records(
        loop_kind: str, delegate: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pure = _record_tasks(False, loop_kind, delegate, monkeypatch)
    compiled = _record_tasks(True, loop_kind, delegate, monkeypatch)
    kinds = [event[0] for event in pure]
    assert kinds.count("task_spawn") == 7 and kinds.count("task_exit") == 7
    assert compiled == pure


BAD_FRAMES = r"""
import asyncio, sys
import ascope
from ascope import _context, _tasks, runtime
ascope.configure(sinks=["memory:"])
ascope.enable()
reports = dict(runtime.PURE_PYTHON)
if sys.argv[1] == "compiled":
    from ascope import _speedups
    reports = {name: getattr(_speedups, name) for name in reports}
    _tasks._speedups = _speedups
else:
    _tasks._speedups = None

async def child():
    return 1

async def main():
    asyncio.get_running_loop().set_task_factory(None)
    ascope.install_task_factory()
    for bad in [("x",), (), "not a frame", None]:
        _context.current.set(bad)
        before = ascope.stats().internal_errors
        assert reports["report_function_entry"]("m", "f", (1,)) is None
        reports["report_function_exit"](1, 2)
        reports["report_line_execution"](None, 1, {"a": 1})
        reports["report_expression_value"](None, "x", 1, 2)
        reports["report_variable_snapshot"](None, {"a": 1}, 3)
        reports["report_ast_branch_execution"](None, "if", "x", True, 4, "m:f:4:if")
        reports["report_ast_loop_iteration"](None, "for", 1, 2, 5, "m:f:5:for")
        assert await asyncio.create_task(child()) == 1
        assert ascope.stats().internal_errors > before, bad
    print("ok")

asyncio.run(main())
"""


@pytest.mark.parametrize("implementation", [
    "python", pytest.param("compiled", marks=needs_compiled)])
def test_a_context_that_holds_no_frame_is_counted_not_raised_or_crashed(
        implementation: str, tmp_path: Any) -> None:
    # In a process of its own: a compiled read past a tuple's end would crash, not fail.
    script = tmp_path / "bad_frames.py"
    script.write_text(BAD_FRAMES)
    done = subprocess.run([sys.executable, str(script), implementation],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


BROKEN_BUILD = r"""
import importlib.abc, importlib.util, sys

class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "ascope._speedups":
            return importlib.util.spec_from_loader(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise AttributeError("module 'ascope._tasks' has no attribute '_coroutine_name'")

sys.meta_path.insert(0, Broken())
import ascope
from ascope import _tasks, runtime
assert runtime.COMPILED is False
assert runtime.report_function_entry is runtime.PURE_PYTHON["report_function_entry"]
assert type(_tasks.make_task_factory(None)).__module__ != "ascope._speedups"
print("ok")
"""


def test_a_compiled_module_that_fails_to_load_leaves_pure_python(tmp_path: Any) -> None:
    script = tmp_path / "broken_build.py"
    script.write_text(BROKEN_BUILD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "ASCOPE_NO_EXTENSIONS": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
    assert "does not load" in done.stderr and "pip install -e ." in done.stderr


@needs_compiled
def test_a_module_built_from_another_source_is_not_used(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_context, "_speedups_checked", None)
    monkeypatch.setattr(_context, "_warned", False)
    monkeypatch.setattr(speedups, "SOURCE_HASH", "0" * 64)
    assert _context.load_speedups() is None
    assert "built from another version" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(_context, "_speedups_checked", None)
    assert _context.load_speedups() is speedups  # the real hash matches its source



class SlowRepr:
    def __repr__(self) -> str:
        time.sleep(0.2)
        return "slow"


@pytest.mark.parametrize("implementation", [
    "python", pytest.param("compiled", marks=needs_compiled)])
def test_a_point_event_is_stamped_before_its_values_are_captured(implementation: str) -> None:
    reports = (rt.PURE_PYTHON if implementation == "python"
               else {name: getattr(speedups, name) for name in rt.PURE_PYTHON})

    async def main() -> list[ascope.Event]:
        with capture() as captured:
            called_at = time.perf_counter_ns()
            reports["report_expression_value"](None, "x", SlowRepr(), 1)
        assert captured.events[0].data["value"]["$repr"] == "slow"
        return [event for event in captured.events if event.ts_ns - called_at > 100_000_000]

    assert asyncio.run(main()) == []  # stamped when called, not 200 ms later


# -- the writer's row building ---------------------------------------------------------------

_BIG = 2**70
_ROWS_BATCH: list[Any] = [
    ("function_entry", 1, 2, None, 3, None, None, "m", "f", (1, "a" * 5000, _BIG), None, None),
    ("function_exit", 2, 2, None, 3, None, None, {"x": 1}, 5, "return", None, None),
    ("http_request_start", 3, 4, None, 3, "t" * 32, None,
     ("GET", "/items/1", {"q": ["a", "b"]}, ("127.0.0.1", 5000), {"host": "h"}, "/items/{id}")),
    ("endpoint_entry", 4, 5, 4, 3, "t" * 32, None, ("app.item", None, {"id": 1}, None)),
    ("endpoint_exit", 5, 5, 4, 3, "t" * 32, None, ("app.item", None, 200, "return", 9, "x")),
    ("http_request_complete", 6, 4, None, 3, "t" * 32, None,
     (200, "application/json", float("nan"), -_BIG, "complete")),
    ("custom_kind", 7, None, None, None, None, None, {"k": (1, 2), 3: "non-str key"}),
    ("custom_kind", 8, None, None, None, None, None, Hostile()),
    ("state_change", 9, "by-hand", _BIG, None, "x" * 100, None, ("t", [1, [2, [3]]], _cycle(),
                                                                None)),
    ("line_execution", 10, 1, None, None, None, None, 5),  # payload not a sequence
    ("error", 11, 1, None, None, 12345, None, ("E", "m", None, "asgi")),  # trace id not str
    ("short",),  # not an event at all
    ["function_entry", 12, 2, None, 3, None, None, ("m", "f", (), None, None)],  # a list
    ("expression_value", 13, 1, None, None, None, None, ("x", {(1, 2): 3}, 1, None, None)),
    ("variable_snapshot", 14, 1, None, None, None, None,
     ({"a": 1.5, "b": True, "c": None, "d": "s" * 3000}, 3, None, None)),
]


@needs_compiled
def test_compiled_build_rows_is_the_writers_and_builds_what_the_python_one_builds() -> None:
    from ascope import _events

    assert _events.build_rows is speedups.build_rows
    before = ascope.stats().internal_errors
    pure = _events.PURE_BUILD_ROWS(_ROWS_BATCH, 1_000)
    pure_errors = ascope.stats().internal_errors - before
    compiled = speedups.build_rows(_ROWS_BATCH, 1_000)
    assert ascope.stats().internal_errors - before == 2 * pure_errors > 0
    assert orjson.dumps(compiled) == orjson.dumps(pure)
    assert [type(row[7]) for row in compiled] == [type(row[7]) for row in pure]
    assert len(pure) == len(_ROWS_BATCH)


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(st.lists(values_strategy, max_size=6), st.one_of(st.none(), st.integers(),
                                                          st.text(max_size=70)))
def test_compiled_build_rows_agrees_on_any_payload(payload: list[Any], any_id: Any) -> None:
    from ascope import _events

    batch = [("http_request_start", 1, any_id, any_id, 2, None, None, tuple(payload)),
             ("function_entry", 2, 3, any_id, 2, None, None, *payload),
             ("custom_kind", 3, 4, None, 2, None, None, payload)]
    assert (orjson.dumps(speedups.build_rows(batch, 0))
            == orjson.dumps(_events.PURE_BUILD_ROWS(batch, 0)))


@pytest.mark.parametrize("compiled", [False, True])
def test_build_rows_never_iterates_a_payload_that_is_not_a_tuple_or_list(compiled: bool) -> None:
    """An event whose payload is an iterator (or a string, or any other object) is
    recorded whole, as ``{"value": ...}``: the writer's thread must not use up an iterator
    the program may still hold, and both builds record the same."""
    from ascope import _events

    if compiled and speedups is None:
        pytest.skip("the compiled build is not there")
    build = speedups.build_rows if compiled else _events.PURE_BUILD_ROWS
    numbers = iter([1, 2])
    rows = build([("function_entry", 2, 3, None, 2, None, None, numbers),
                  ("function_entry", 3, 4, None, 2, None, None, "abc")], 0)
    assert list(numbers) == [1, 2]
    assert rows[0][7] == {"value": {"$type": "list_iterator", "$repr": repr(numbers)}}
    assert rows[1][7] == {"value": "abc"}


# -- what the garbage collector sees -------------------------------------------------------------

_EMIT_PAYLOADS: list[Any] = [
    ("GET", "/items/42", {"q": "1"}, ("127.0.0.1", 5), {"host": "h"}, "/items/{id}"),
    (200, "application/json", 54, 1_000, "complete"),
    ("only one",),  # one value: kept as a payload tuple (inlined it would read as one)
    (),
    {"mapping": [1, 2]},  # report_event's mapping
    "not a tuple",
    None,
]


@needs_compiled
def test_compiled_emit_event_is_the_pipelines_and_builds_what_the_python_one_builds() -> None:
    """The compiled ``emit_event`` (the ASGI middleware's and the report calls') inlines a
    payload of two values or more; the rows built from its events are the Python ones'."""
    from ascope.integrations import _asgi_base

    from ascope import _events, _pipeline, _report

    assert _pipeline.emit_event is speedups.emit_event
    # Every module that holds it under a name of its own holds the compiled one.
    holders = [module for name, module in list(sys.modules.items())
               if name.startswith("ascope") and callable(getattr(module, "_emit", None))]
    assert {_report, _asgi_base, rt} <= set(holders)
    assert all(module._emit is speedups.emit_event for module in holders), holders

    def ring_events(emit: Callable[..., Any]) -> list[tuple[Any, ...]]:
        ring = _pipeline.Ring(None, 64, "drop_oldest", 1.0, "test")
        frame = (7, 3, None, 2, "trace", True, None, 0, ring)
        for index, payload in enumerate(_EMIT_PAYLOADS):
            emit(f"kind_{index}", index, frame, payload)
        return list(ring.buffer)

    compiled, pure = ring_events(speedups.emit_event), ring_events(_pipeline.PURE_EMIT_EVENT)
    assert [len(event) for event in compiled] == [13, 12, 8, 8, 8, 8, 8]
    assert [len(event) for event in pure] == [8] * len(_EMIT_PAYLOADS)
    assert (orjson.dumps(_events.build_rows(compiled, 0))
            == orjson.dumps(_events.build_rows(pure, 0)))


@needs_compiled
def test_ring_events_and_writer_rows_are_not_walked_by_the_collector() -> None:
    """Events wait in the ring, and rows in the writer, long enough to live through
    collections: untracked, they are never walked or promoted (a tuple holding a dict, an
    ASGI event's payload, would otherwise stay tracked for good)."""
    import gc

    from ascope import _pipeline

    ring = _pipeline.Ring(None, 64, "drop_oldest", 1.0, "test")
    frame = (7, 3, None, 2, "trace", True, None, 0, ring)
    headers = {"host": "h"}
    speedups.emit_event("http_request_start", 1, frame,
                        ("GET", "/", None, ("127.0.0.1", 5), headers, None))
    speedups.emit_event("http_request_complete", 2, frame, (200, None, 0, 1, "complete"))
    speedups.emit_event("custom", 3, frame, {"k": [1]})
    events = list(ring.buffer)
    assert not any(gc.is_tracked(event) for event in events)
    assert events[0][11] is headers  # inlined: the payload tuple itself is not kept
    rows = speedups.build_rows(events, 0)
    assert not any(gc.is_tracked(row) for row in rows)
    assert not any(gc.is_tracked(row[7]) for row in rows[:2])  # the values lists
    assert rows[2][7] == {"k": [1]}


# -- trace ids ------------------------------------------------------------------------------------


@needs_compiled
def test_compiled_trace_ids_have_the_python_ones_layout() -> None:
    """Both make 32 lowercase hex digits: the time in milliseconds, then 80 random bits,
    never repeating; the compiled one is the runtime's."""
    import re

    assert _context.new_trace_id is speedups.new_trace_id
    before = time.time_ns() // 1_000_000
    compiled = [speedups.new_trace_id() for _ in range(20_000)]
    pure = _context.PURE_NEW_TRACE_ID()
    after = time.time_ns() // 1_000_000
    assert len(set(compiled)) == len(compiled)
    for trace_id in (*compiled[:100], compiled[-1], pure):
        assert re.fullmatch("[0-9a-f]{32}", trace_id)
        assert before <= int(trace_id[:12], 16) <= after
    # The random part is uniform: the sampling decision (its low 56 bits) keeps ~10%.
    kept = sum(int(trace_id[-14:], 16) < 0.1 * 2**56 for trace_id in compiled)
    assert 0.08 * len(compiled) < kept < 0.12 * len(compiled)


@pytest.mark.parametrize("implementation", ["python", "compiled"])
def test_trace_ids_neither_follow_nor_move_the_programs_random_numbers(
        implementation: str) -> None:
    """A program that seeds ``random`` gets its own numbers, trace ids or not, and ascope's
    trace and span ids do not repeat after it seeds again."""
    import random

    from ascope.integrations import _traceparent

    if implementation == "compiled" and speedups is None:
        pytest.skip("ascope._speedups not in use")
    make = speedups.new_trace_id if implementation == "compiled" else _context.PURE_NEW_TRACE_ID
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    first = make(), _traceparent.new_span_id()
    assert random.random() == expected
    random.seed(1234)
    again = make(), _traceparent.new_span_id()
    assert first[0] != again[0] and first[1] != again[1]


@needs_compiled
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("entropy", ["os.urandom", "none in the child"])
def test_a_forked_child_makes_trace_ids_of_its_own(entropy: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The random part restarts at random in a forked child: without that, parent and
    child would make the same ids in the same millisecond. Without an entropy source
    the child mixes its process id and the clocks in instead."""
    def no_entropy(size: int) -> bytes:
        raise NotImplementedError("no entropy source")

    speedups.new_trace_id()
    read, write = os.pipe()
    if entropy != "os.urandom":
        monkeypatch.setattr(os, "urandom", no_entropy)
    pid = os.fork()
    monkeypatch.undo()
    if pid == 0:  # the child: its next ids, then out without running the parent's exits
        try:
            os.write(write, ",".join(speedups.new_trace_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    parent = {speedups.new_trace_id()[12:] for _ in range(50)}
    with os.fdopen(read) as pipe:
        child = {trace_id[12:] for trace_id in pipe.read().split(",")}
    os.waitpid(pid, 0)
    assert len(child) == 50 and not parent & child


# -- the SQLite store's segment index ------------------------------------------------------------


def _index_rows() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for n in range(300):  # runs of one id and one trace, across bucket boundaries
        cid = 1_000 + n // 3
        rows.append(("function_entry", 5_000 - n, 4, cid, cid - 1 if n % 4 else None,
                     n // 50, f"trace-{n // 7}" if n % 5 else None, []))
    rows += [  # ids of every kind a store can hold, in runs and alone
        ("custom", 7, 7, "by-hand", "by-hand", None, None, {}),
        ("custom", 7, 7, "by-hand", 1.0, True, 42, {}),  # 1.0 == 1, True == 1
        ("custom", 9, 9, 1, 1, 1, 42, {}),
        ("custom", 9, 9, -(2**63), 2**63 - 1, -1, "", {}),
        ("ascope_error", 0, 0, None, None, None, None, {}),
        ("custom", 3, 3, (1, 2), None, 10**30, ("t",), {}),
    ]
    return rows


@needs_compiled
def test_compiled_segment_index_is_the_stores_and_indexes_what_the_python_one_does() -> None:
    from ascope.sinks import _sqlite

    assert _sqlite._segment_index is speedups.segment_index
    rows = _index_rows()
    negative = [("custom", n, n, -n * 300, -1 - n, -(2**63) + n, None, {}) for n in range(20)]
    for batch in (rows, rows[:1], rows[::-1], rows[290:], list(reversed(rows[:40])),
                  negative + rows[:30]):
        assert speedups.segment_index(batch) == _sqlite.python_segment_index(batch)
    assert speedups.segment_index(tuple(rows)) == _sqlite.python_segment_index(tuple(rows))
    with pytest.raises(ValueError):
        _sqlite.python_segment_index([])
    with pytest.raises(ValueError):
        speedups.segment_index([])


# -- the database integrations' query start and end --------------------------------------------

_QUERIES: list[tuple[Any, Any, Any, Any]] = [  # statement, params, database, rows
    ("SELECT 1", None, "app.db", 1),
    ("SELECT ?", (1, 2.5, True, None, "short"), None, 0),
    ("SELECT ?", tuple(range(40)), "app.db", None),  # past max_length: the snapshot
    ("UPDATE t SET x = :x", {"x": 1, "password": "p"}, "app.db", 2**70),
    ("INSERT", [(1,), (2,)], "app.db", True),  # executemany's rows
    ("x" * 600, ("y" * 600,), "z" * 600, 3),  # past the text and string bounds
    (Hostile(), (Hostile(),), Hostile(), Hostile()),
    (len, {"k": _cycle()}, 42, [1, 2]),
]


def _record_queries(start: Callable[..., Any], complete: Callable[..., Any]
                    ) -> list[tuple[Any, ...]]:
    metadata = {"system": "sqlite", "driver": "sqlite3", "call": "execute"}

    async def main() -> list[ascope.Event]:
        with capture() as captured:
            outer = rt.report_function_entry("app", "handler", ())
            for statement, params, database, rows in _QUERIES:
                cid = start(statement, params, database, metadata)
                complete(cid, statement, rows)
                failed = start(statement, params, database, metadata)
                complete(failed, statement, None, ValueError("boom"))
            # Values are captured when the call is made, not when the writer gets them.
            mutable_params, mutable_rows = [1, 2], [3, 4]
            cid = start("SELECT ?", mutable_params, None, metadata)
            complete(cid, "SELECT ?", mutable_rows)
            mutable_params.append("later")
            mutable_rows.append("later")
            detached = start("SELECT 2", None, None, metadata)
            complete(12345, "SELECT 2", 1)  # not open here: a detached end
            complete(detached, "SELECT 2", 1)
            complete(None, "SELECT 3", 1)
            with ascope.disabled():
                assert start("SELECT 4", (1,), None, metadata) is None
            rt.report_function_exit(outer)
        return list(captured.events)

    return _shape(asyncio.run(main()))


@needs_compiled
def test_compiled_query_start_and_complete_record_what_the_python_code_records() -> None:
    from ascope.integrations import _queries

    assert _queries.start is speedups.query_start
    assert _queries.complete is speedups.query_complete
    pure = _record_queries(_queries.PURE_START, _queries.PURE_COMPLETE)
    compiled = _record_queries(speedups.query_start, speedups.query_complete)
    assert len(pure) == 2 + 5 * len(_QUERIES) + 2 + 3
    assert compiled == pure


@pytest.mark.parametrize("implementation", ["python", "compiled"])
def test_a_query_under_a_context_that_holds_no_frame_is_counted_not_raised(
        implementation: str) -> None:
    from ascope.integrations import _queries

    if implementation == "compiled" and speedups is None:
        pytest.skip("ascope._speedups not in use")
    start = _queries.PURE_START if implementation == "python" else speedups.query_start

    def broken() -> tuple[Any, Any]:
        _context.current.set(42)  # type: ignore[arg-type]
        return start("SELECT 1", None, None, {}), _queries.driver_may_report()

    with capture():
        before = ascope.stats().internal_errors
        assert contextvars.copy_context().run(broken) == (None, False)
        assert ascope.stats().internal_errors - before == 2


@needs_compiled
def test_compiled_build_rows_takes_a_string_bound_past_a_c_length() -> None:
    """``configure(max_string=...)`` takes any positive int; the compiled rows clamp it
    instead of failing on the whole batch."""
    from ascope import _events, _values

    default = _values.SETTINGS.max_string
    ascope.configure(max_string=2**63)
    try:
        batch = [("function_entry", 1, 2, None, 3, None, None, "m", "f", ("x" * 5000,), None,
                  None),
                 ("custom_kind", 2, 4, None, 3, None, None, {"k": ("y" * 5000, 1)}),
                 ("http_request_start", 3, 5, None, 3, None, None,
                  ("GET", "/", None, ("h", 1), {"host": "z" * 5000}, None))]
        before = ascope.stats().internal_errors
        compiled = speedups.build_rows(batch, 0)
        assert ascope.stats().internal_errors == before
        assert orjson.dumps(compiled) == orjson.dumps(_events.PURE_BUILD_ROWS(batch, 0))
    finally:
        ascope.configure(max_string=default)


@needs_compiled
def test_a_compiled_query_end_with_an_error_before_the_integrations_load() -> None:
    """The error path of the compiled ``query_complete`` calls the Python one in
    ``integrations/_queries.py``, also when nothing has imported that module yet."""
    script = textwrap.dedent("""
        import asyncio, sys
        import ascope
        from ascope import _context
        from ascope.testing import capture
        speedups = _context.load_speedups()
        assert "ascope.integrations._queries" not in sys.modules

        async def main():
            with capture() as captured:
                cid = speedups.query_start("SELECT 1", None, None, {})
                speedups.query_complete(cid, "SELECT 1", None, ValueError("boom"))
                assert _context.current.get()[0] != cid
            return [(e.kind, e.data.get("error")) for e in captured.events]

        print(asyncio.run(main()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "[('query_start', None), ('error', None), ('query_complete', 'ValueError')]")
