"""``@ascope.instrument``: what each kind of callable reports, with which options.

Semantics (same results, exceptions and protocols with and without the decorator) are
specified in test_instrument_semantics.py; this file is about the events.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import typing
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest
from helpers_core import lineage, of_kind

import ascope
from ascope import _context as _c
from ascope.instrument import SourceUnavailableWarning
from ascope.testing import capture

Run = Callable[[Coroutine[Any, Any, Any]], Any]

HAS_AST = importlib.util.find_spec("ascope.instrument._ast_rewrite") is not None


def calls(events: list[ascope.Event]) -> list[tuple[str, Any, Any]]:
    """(kind, function-or-outcome, args-or-result) for each entry/exit, in order."""
    out: list[tuple[str, Any, Any]] = []
    for event in events:
        if event.kind == "function_entry":
            out.append(("entry", event.data["function"], event.data["args"]))
        elif event.kind == "function_exit":
            out.append(("exit", event.data["outcome"], event.data["result"]))
    return out


@ascope.instrument
def add(a: int, b: int = 2, *rest: int, key: str | None = None, **extra: Any) -> int:
    return a + b + sum(rest)


@ascope.instrument()
def add_with_parens(a: int, b: int) -> int:
    return a + b


@ascope.instrument
def outer(x: int) -> int:
    return add(x, 1) * 2


@ascope.instrument
def fails(message: str) -> None:
    raise ValueError(message)


# -- plain functions ---------------------------------------------------------------------------


def test_bare_and_called_forms_report_entry_and_exit() -> None:
    """`@instrument` and `@instrument()` both record entry (module, qualname, arguments by
    parameter name, defaults filled in) and exit (result, duration, outcome return)."""
    with capture() as captured:
        assert add(1, 5, 6, key="k", z=1) == 12
        assert add_with_parens(2, 3) == 5
    entry, exit_, entry2, exit2 = captured.events
    assert entry.kind == "function_entry"
    assert entry.data["module"] == __name__
    assert entry.data["function"] == "add"
    assert entry.data["args"] == {"a": 1, "b": 5, "rest": [6], "key": "k", "extra": {"z": 1}}
    assert exit_.kind == "function_exit"
    assert exit_.data["result"] == 12
    assert exit_.data["outcome"] == "return"
    assert exit_.data["duration_ns"] >= 0
    assert exit_.correlation_id == entry.correlation_id
    assert entry2.data["function"] == "add_with_parens"
    assert entry2.data["args"] == {"a": 2, "b": 3}
    assert exit2.data["result"] == 5


def test_defaults_are_captured_for_parameters_not_passed() -> None:
    """Every parameter appears in args: those not passed with their default, empty *args
    and **kwargs as an empty list and dict."""
    with capture() as captured:
        add(1)
    assert captured.events[0].data["args"] == {"a": 1, "b": 2, "rest": [], "key": None,
                                               "extra": {}}


def test_nothing_is_recorded_while_capture_is_off() -> None:
    """With capture off the wrapper calls straight through and records nothing."""
    assert not _c.STATE.on
    assert add(1, 2) == 3
    with capture() as captured:
        pass
    assert captured.events == []


def test_disabled_block_records_nothing() -> None:
    """Inside ascope.disabled() the decorated function runs without recording."""
    with capture() as captured:
        with ascope.disabled():
            assert add(1, 2) == 3
        add(3, 4)
    assert calls(captured.events) == [("entry", "add", {"a": 3, "b": 4, "rest": [],
                                                        "key": None, "extra": {}}),
                                      ("exit", "return", 7)]


def test_nested_calls_get_the_caller_as_parent() -> None:
    """A call made inside an instrumented call has the caller's correlation id as parent,
    and the caller's id is current again after the inner call returns."""
    with capture() as captured:
        outer(3)
    outer_entry, inner_entry, inner_exit, outer_exit = captured.events
    assert inner_entry.parent_id == outer_entry.correlation_id
    assert inner_exit.correlation_id == inner_entry.correlation_id
    assert outer_exit.correlation_id == outer_entry.correlation_id
    assert outer_exit.data["result"] == 8
    assert ascope.current_correlation_id() is None


def test_exception_reports_error_then_exit_raise() -> None:
    """An escaping exception records `error` (type, message, traceback) in the call, then
    `function_exit` with outcome raise."""
    with capture() as captured, pytest.raises(ValueError, match="bad input"):
        fails("bad input")
    entry, error, exit_ = captured.events
    assert error.kind == "error"
    assert error.correlation_id == entry.correlation_id
    assert error.data["type"] == "ValueError"
    assert error.data["message"] == "bad input"
    assert error.data["traceback"][-1][2] == "fails"
    assert exit_.data["outcome"] == "raise"
    assert exit_.data["result"] is None


# -- options -----------------------------------------------------------------------------------


def test_args_false_and_result_false_record_none() -> None:
    """args=False and result=False keep arguments and result out of the events."""
    @ascope.instrument(args=False, result=False)
    def secret(value: str) -> str:
        return value.upper()

    with capture() as captured:
        assert secret("x") == "X"
    entry, exit_ = captured.events
    assert entry.data["args"] is None
    assert exit_.data["result"] is None


def test_name_replaces_the_qualname() -> None:
    """name= is what function_entry reports as the function."""
    @ascope.instrument(name="billing.charge")
    def charge(amount: int) -> int:
        return amount

    with capture() as captured:
        charge(3)
    assert captured.events[0].data["function"] == "billing.charge"


def test_sample_zero_records_nothing_and_one_records_all() -> None:
    """sample= is the fraction of calls recorded: 0 records none, 1 records every one."""
    @ascope.instrument(sample=0.0)
    def never(x: int) -> int:
        return x

    @ascope.instrument(sample=1)
    def always(x: int) -> int:
        return x

    with capture() as captured:
        for i in range(20):
            assert never(i) == i
            assert always(i) == i
    assert {e.data["function"] for e in of_kind(captured.events, "function_entry")} == {
        always.__qualname__}
    assert len(of_kind(captured.events, "function_entry")) == 20


def test_sample_is_drawn_per_call() -> None:
    """With sample=0.5, some calls are recorded and some are not (400 calls)."""
    @ascope.instrument(sample=0.5)
    def half(x: int) -> int:
        return x

    with capture() as captured:
        for i in range(400):
            half(i)
    recorded = len(of_kind(captured.events, "function_entry"))
    assert 0 < recorded < 400


@pytest.mark.parametrize(("options", "error"), [
    ({"sample": 1.5}, ValueError),
    ({"sample": -0.1}, ValueError),
    ({"sample": "all"}, ValueError),
    ({"args": "yes"}, TypeError),
    ({"result": 1}, TypeError),
    ({"name": ""}, TypeError),
    ({"expressions": "total"}, TypeError),
    ({"loop_head": -1}, ValueError),
])
def test_invalid_options_are_rejected_at_decoration(options: dict[str, Any],
                                                    error: type[Exception]) -> None:
    """Bad option values raise when the decorator is built, naming the option."""
    with pytest.raises(error, match=next(iter(options))):
        ascope.instrument(**options)


def test_state_on_a_function_is_rejected() -> None:
    """state= is for classes; on a function it is a TypeError."""
    with pytest.raises(TypeError, match="classes"):
        ascope.instrument(state=True)(lambda: None)


def test_non_callable_is_rejected() -> None:
    """Decorating something that is not callable is a TypeError."""
    with pytest.raises(TypeError, match="function, method or class"):
        ascope.instrument(42)


def test_sensitive_parameters_are_redacted() -> None:
    """Arguments whose parameter name looks secret are recorded as redacted."""
    @ascope.instrument
    def login(user: str, password: str) -> bool:
        return bool(password)

    with capture() as captured:
        login("ann", "hunter2")
    assert captured.events[0].data["args"] == {"user": "ann", "password": "[redacted]"}


def test_hostile_repr_does_not_break_the_call() -> None:
    """An argument whose __repr__ raises is recorded as a marker; the call goes on."""
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    @ascope.instrument
    def take(value: Any) -> str:
        return "ok"

    with capture() as captured:
        assert take(Hostile()) == "ok"
    assert captured.events[0].data["args"]["value"]["$type"].endswith("Hostile")


def test_instrumenting_twice_wraps_once() -> None:
    """Instrumenting an instrumented function returns it unchanged: one entry per call."""
    again = ascope.instrument(add)
    assert again is add
    with capture() as captured:
        again(1)
    assert len(of_kind(captured.events, "function_entry")) == 1


# -- methods and classes -----------------------------------------------------------------------


class Shop:
    tax = 2

    @ascope.instrument
    def price(self, amount: int) -> int:
        return amount + self.tax

    @ascope.instrument
    @classmethod
    def cls_outer(cls, amount: int) -> int:
        return amount * cls.tax

    @classmethod
    @ascope.instrument
    def cls_inner(cls, amount: int) -> int:
        return amount * cls.tax

    @ascope.instrument
    @staticmethod
    def static_outer(amount: int) -> int:
        return amount + 1

    @staticmethod
    @ascope.instrument
    def static_inner(amount: int) -> int:
        return amount + 1

    @ascope.instrument
    @property
    def label(self) -> str:
        return "shop"


def test_methods_leave_self_and_cls_out_of_args() -> None:
    """Methods, classmethods and staticmethods in either decorator order all report their
    qualname and arguments without self/cls."""
    shop = Shop()
    with capture() as captured:
        assert shop.price(1) == 3
        assert Shop.cls_outer(2) == 4
        assert shop.cls_inner(3) == 6
        assert Shop.static_outer(4) == 5
        assert shop.static_inner(5) == 6
        assert shop.label == "shop"
    assert [(f, a) for k, f, a in calls(captured.events) if k == "entry"] == [
        ("Shop.price", {"amount": 1}),
        ("Shop.cls_outer", {"amount": 2}),
        ("Shop.cls_inner", {"amount": 3}),
        ("Shop.static_outer", {"amount": 4}),
        ("Shop.static_inner", {"amount": 5}),
        ("Shop.label", {}),
    ]


@ascope.instrument
class Inventory:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, item: str) -> int:
        self.items.append(item)
        return self._count()

    def _count(self) -> int:
        return len(self.items)

    async def fetch(self, index: int) -> str:
        await asyncio.sleep(0)
        return self.items[index]

    @classmethod
    def make(cls) -> Inventory:
        return cls()

    @staticmethod
    def version() -> int:
        return 1

    def __repr__(self) -> str:
        return "Inventory()"


def test_class_decorator_instruments_its_methods() -> None:
    """@instrument on a class instruments its methods (public, private, class and static,
    sync and async, __init__) but not other dunders such as __repr__."""
    async def main() -> None:
        inventory = Inventory.make()
        inventory.add("apple")
        assert await inventory.fetch(0) == "apple"
        assert Inventory.version() == 1
        assert repr(inventory) == "Inventory()"

    with capture() as captured:
        asyncio.run(main())
    entries = [f for k, f, _ in calls(captured.events) if k == "entry"]
    assert entries == ["Inventory.make", "Inventory.__init__", "Inventory.add",
                       "Inventory._count", "Inventory.fetch", "Inventory.version"]


def test_class_decorator_with_name_prefixes_methods() -> None:
    """name= on a class names its methods NAME.method."""
    @ascope.instrument(name="Store")
    class Local:
        def get(self) -> int:
            return 1

    with capture() as captured:
        Local().get()
    assert captured.events[0].data["function"] == "Store.get"


def test_nested_functions_and_closures() -> None:
    """A closure decorated inside a function reports its <locals> qualname and sees the
    variables it closes over."""
    def make(factor: int) -> Callable[[int], int]:
        @ascope.instrument
        def scale(x: int) -> int:
            return x * factor
        return scale

    scale = make(3)
    with capture() as captured:
        assert scale(2) == 6
    assert captured.events[0].data["function"].endswith("make.<locals>.scale")
    assert captured.events[1].data["result"] == 6


def log_calls(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def logged(*args: Any, **kwargs: Any) -> Any:
        return ("logged", function(*args, **kwargs))
    return logged


@log_calls
@ascope.instrument
def under_a_decorator(x: int) -> int:
    return x


@ascope.instrument
@log_calls
def over_a_decorator(x: int) -> int:
    return x


def test_functions_with_decorators_above_and_below() -> None:
    """Under another decorator the wrapper sees the plain result; over one it sees that
    decorator's result; both report the function's own name and parameter names."""
    with capture() as captured:
        assert under_a_decorator(1) == ("logged", 1)
        assert over_a_decorator(2) == ("logged", 2)
    assert calls(captured.events) == [
        ("entry", "under_a_decorator", {"x": 1}), ("exit", "return", 1),
        ("entry", "over_a_decorator", {"x": 2}), ("exit", "return", ["logged", 2]),
    ]


def test_wrapper_lives_in_the_decorated_functions_globals() -> None:
    """The wrapper's __globals__ is the function's module, so frameworks resolving string
    annotations through __globals__ (FastAPI) find the module's names."""
    assert add.__globals__ is globals()
    assert typing.get_type_hints(add)["return"] is int


# -- coroutines and tasks ----------------------------------------------------------------------


@ascope.instrument
async def leaf(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@ascope.instrument
async def fan_out(n: int) -> list[int]:
    first = await leaf(0)
    rest = await asyncio.gather(*(asyncio.create_task(leaf(i)) for i in range(1, n)))
    return [first, *rest]


def test_coroutine_nested_calls_across_await_and_tasks(run: Run) -> None:
    """Calls awaited directly and calls run in tasks spawned inside an instrumented
    coroutine all descend from its correlation id (asyncio and uvloop)."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            assert await fan_out(3) == [1, 2, 3]
        return captured.events

    events = run(main())
    entries = of_kind(events, "function_entry")
    root = next(e for e in entries if e.data["function"] == "fan_out")
    leaves = [e for e in entries if e.data["function"] == "leaf"]
    assert len(leaves) == 3
    assert leaves[0].parent_id == root.correlation_id
    for event in leaves:
        assert root.correlation_id in lineage(events, event)
    exits = {e.correlation_id: e for e in of_kind(events, "function_exit")}
    assert exits[root.correlation_id].data["result"] == [1, 2, 3]


@ascope.instrument
async def sleeps_forever() -> None:
    await asyncio.sleep(3600)


def test_cancellation_is_reported_as_cancel(run: Run) -> None:
    """A cancelled instrumented coroutine records outcome cancel and no error event."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            task = asyncio.create_task(sleeps_forever())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return captured.events

    events = run(main())
    assert calls(events) == [("entry", "sleeps_forever", {}), ("exit", "cancel", None)]
    assert of_kind(events, "error") == []


@ascope.instrument
async def async_fails() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


def test_coroutine_exception_reports_error(run: Run) -> None:
    """An exception escaping a coroutine records error then exit raise."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            with pytest.raises(KeyError):
                await async_fails()
        return captured.events

    events = run(main())
    assert [e.kind for e in events] == ["function_entry", "error", "function_exit"]
    assert events[1].data["type"] == "KeyError"
    assert events[2].data["outcome"] == "raise"


# -- generators --------------------------------------------------------------------------------


@ascope.instrument
def counter(n: int) -> Iterator[int]:
    total = 0
    for i in range(n):
        got = yield i
        total += got or 0
    return total


def test_generator_reports_each_yield_and_resume() -> None:
    """A generator is one operation reported in segments: entry, an exit with outcome
    yield per value, a resume entry (same id) per next/send, and a final return."""
    with capture() as captured:
        gen = counter(2)
        assert next(gen) == 0
        assert gen.send(5) == 1
        with pytest.raises(StopIteration) as stop:
            next(gen)
        assert stop.value.value == 5
    assert calls(captured.events) == [
        ("entry", "counter", {"n": 2}),
        ("exit", "yield", 0),
        ("entry", "counter", {"$resume": 1, "$send": 5}),
        ("exit", "yield", 1),
        ("entry", "counter", {"$resume": 2}),
        ("exit", "return", 5),
    ]
    assert len({e.correlation_id for e in captured.events}) == 1


def test_generator_closed_early_reports_close() -> None:
    """Closing a generator before it ends records a resume with $close and outcome close;
    a thrown exception that escapes records $throw, error and outcome raise."""
    with capture() as captured:
        gen = counter(5)
        next(gen)
        gen.close()
        other = counter(5)
        next(other)
        with pytest.raises(KeyError):
            other.throw(KeyError("stop"))
    kinds = calls(captured.events)
    assert kinds[:4] == [
        ("entry", "counter", {"n": 5}), ("exit", "yield", 0),
        ("entry", "counter", {"$resume": 1, "$close": True}), ("exit", "close", None),
    ]
    assert kinds[4:] == [
        ("entry", "counter", {"n": 5}), ("exit", "yield", 0),
        ("entry", "counter", {"$resume": 1, "$throw": "KeyError"}), ("exit", "raise", None),
    ]
    assert of_kind(captured.events, "error")[0].data["type"] == "KeyError"


@ascope.instrument
def produces(n: int) -> Iterator[int]:
    for i in range(n):
        yield add(i)


def test_generator_segments_belong_to_the_consumer_that_resumed_them() -> None:
    """Calls made inside a generator are children of the generator; each segment's
    parent is whatever operation was current where the generator was resumed, and the
    consumer's own context is unchanged between resumes."""
    @ascope.instrument
    def consume(gen: Iterator[int]) -> int:
        return next(gen)

    with capture() as captured:
        gen = produces(3)
        next(gen)
        assert ascope.current_correlation_id() is None
        consume(gen)
        assert ascope.current_correlation_id() is None
    entries = of_kind(captured.events, "function_entry")
    gen_first, add_first, consumer, gen_resume, add_second = entries
    assert gen_first.parent_id is None
    assert add_first.parent_id == gen_first.correlation_id
    assert gen_resume.correlation_id == gen_first.correlation_id
    assert gen_resume.parent_id == consumer.correlation_id
    assert add_second.parent_id == gen_first.correlation_id


@ascope.instrument
async def ticks(n: int) -> AsyncIterator[int]:
    for i in range(n):
        got = yield await leaf(i)
        if got:
            yield got


def test_async_generator_reports_segments_and_nested_calls(run: Run) -> None:
    """An async generator reports entry, yield exits, resumes with $send, the final
    return; calls awaited inside are its children (asyncio and uvloop)."""
    async def main() -> list[ascope.Event]:
        async with capture() as captured:
            gen = ticks(2)
            assert await gen.__anext__() == 1
            assert await gen.asend(9) == 9
            assert [x async for x in gen] == [2]
        return captured.events

    events = run(main())
    gen_id = events[0].correlation_id
    assert calls([e for e in events if e.correlation_id == gen_id]) == [
        ("entry", "ticks", {"n": 2}), ("exit", "yield", 1),
        ("entry", "ticks", {"$resume": 1, "$send": 9}), ("exit", "yield", 9),
        ("entry", "ticks", {"$resume": 2}), ("exit", "yield", 2),
        ("entry", "ticks", {"$resume": 3}), ("exit", "return", None),
    ]
    leaves = [e for e in of_kind(events, "function_entry") if e.data["function"] == "leaf"]
    assert {e.parent_id for e in leaves} == {events[0].correlation_id}


def test_async_generator_consumed_from_two_tasks(run: Run) -> None:
    """Resumed from two different tasks, each segment's nested calls still descend from
    the generator, and neither task's context keeps the generator's frame."""
    async def main() -> tuple[list[ascope.Event], list[Any]]:
        async with capture() as captured:
            gen = ticks(3)

            async def step() -> tuple[int, Any]:
                value = await gen.__anext__()
                return value, ascope.current_correlation_id()

            first = await asyncio.create_task(step())
            second = await asyncio.create_task(step())
            await gen.aclose()
        return captured.events, [first, second]

    events, results = run(main())
    starts = [e for e in of_kind(events, "function_entry") if e.data["function"] == "ticks"]
    gen_id = starts[0].correlation_id
    assert [r[0] for r in results] == [1, 2]
    assert all(r[1] != gen_id for r in results)
    leaves = [e for e in of_kind(events, "function_entry") if e.data["function"] == "leaf"]
    assert {e.parent_id for e in leaves} == {gen_id}
    closing = [c for c in calls(events) if c[0] == "exit" and c[1] == "close"]
    assert closing == [("exit", "close", None)]


# -- ast=True ----------------------------------------------------------------------------------


def test_ast_without_source_falls_back_with_one_warning() -> None:
    """ast=True on a function without source (exec) warns SourceUnavailableWarning and
    gives call capture instead; the function works."""
    namespace: dict[str, Any] = {}
    exec("def made(x):\n    return x * 2\n", namespace)
    with pytest.warns(SourceUnavailableWarning, match="made"):
        made = ascope.instrument(ast=True)(namespace["made"])
    with capture() as captured:
        assert made(4) == 8
    assert calls(captured.events) == [("entry", "made", {"x": 4}), ("exit", "return", 8)]


@pytest.mark.skipif(not HAS_AST, reason="the AST rewriter (ascope.instrument._ast_rewrite) "
                    "is not in this checkout yet")
def test_ast_true_reports_calls_and_lines_inside() -> None:
    """ast=True records entry/exit around the rewritten body, whose line events belong to
    the call's correlation id; with capture off the plain function runs."""
    @ascope.instrument(ast=True)
    def branchy(x: int) -> str:
        if x > 0:  # noqa: SIM108 - the statement form is what gets rewritten
            label = "positive"
        else:
            label = "other"
        return label

    assert branchy(1) == "positive"
    with capture() as captured:
        assert branchy(-1) == "other"
    entry = captured.events[0]
    assert entry.kind == "function_entry"
    assert captured.events[-1].kind == "function_exit"
    assert captured.events[-1].data["result"] == "other"
    inner = [e for e in captured.events[1:-1]]
    assert inner, "the rewritten body reported nothing"
    assert {e.correlation_id for e in inner} == {entry.correlation_id}
    assert "line_execution" in {e.kind for e in inner}


@pytest.mark.skipif(not HAS_AST, reason="the AST rewriter is not in this checkout yet")
def test_ast_true_on_generators_and_coroutines(run: Run) -> None:
    """ast=True keeps the generator and coroutine wrappers: the rewritten body's events
    fall inside the segments of the call they belong to."""
    @ascope.instrument(ast=True)
    def doubles(n: int) -> Iterator[int]:
        for i in range(n):
            yield i * 2

    @ascope.instrument(ast=True)
    async def squares(n: int) -> list[int]:
        await asyncio.sleep(0)
        return [i * i for i in range(n)]

    async def main() -> tuple[list[int], list[int], list[ascope.Event]]:
        async with capture() as captured:
            got = list(doubles(2))
            squared = await squares(3)
        return got, squared, captured.events

    got, squared, events = run(main())
    assert (got, squared) == ([0, 2], [0, 1, 4])
    generator_id = events[0].correlation_id
    generator_events = [e for e in events if e.correlation_id == generator_id]
    assert [c for c in calls(generator_events)] == [
        ("entry", "test_ast_true_on_generators_and_coroutines.<locals>.doubles", {"n": 2}),
        ("exit", "yield", 0),
        ("entry", "test_ast_true_on_generators_and_coroutines.<locals>.doubles",
         {"$resume": 1}),
        ("exit", "yield", 2),
        ("entry", "test_ast_true_on_generators_and_coroutines.<locals>.doubles",
         {"$resume": 2}),
        ("exit", "return", None),
    ]
    assert "loop_iteration" in {e.kind for e in generator_events}
    squares_entry = next(e for e in events if e.kind == "function_entry"
                         and e.data["function"].endswith("squares"))
    inner = {e.kind for e in events if e.correlation_id == squares_entry.correlation_id}
    assert {"line_execution", "function_exit"} <= inner
