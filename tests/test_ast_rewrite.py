"""AST instrumentation (``ascope.instrument._ast_rewrite.rewrite_function``, docs/ast.md).

The rewritten copies are called directly, inside ``ascope.testing.capture()`` with a
manual ``report_function_entry``/``report_function_exit`` around them (the decorator's
job), except in the end-to-end tests at the bottom, which go through
``ascope.instrument(ast=True)``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import traceback
import types
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from ast_samples import async_constructs as A
from ast_samples import constructs as C
from ast_samples import edge_cases as E
from ast_samples import future_sample, moved_a, moved_b
from hypothesis import given
from hypothesis import strategies as st

import ascope
from ascope import runtime
from ascope.instrument._ast_rewrite import node_map_of, rewrite_function
from ascope.testing import capture

AST_KINDS = {"line_execution", "branch_execution", "loop_iteration", "variable_snapshot",
             "pattern_match", "expression_value"}


def rewrite(function: Callable[..., Any], **options: Any) -> Any:
    rewritten = rewrite_function(function, **options)
    assert rewritten is not None, f"{function.__qualname__} could not be rewritten"
    return rewritten


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "return", call()
    except Exception as error:
        return "raise", (type(error), repr(error.args))


def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
    """Call ``function`` as the decorator would: inside a call operation, capture on."""
    with capture() as captured:
        cid = runtime.report_function_entry("tests", "call", ())
        try:
            value = outcome(lambda: function(*args, **kwargs))
        finally:
            runtime.report_function_exit(cid)
    return value, captured.events


async def run_async(function: Callable[..., Any], *args: Any) -> tuple[Any, list[Any]]:
    async with capture() as captured:
        cid = runtime.report_function_entry("tests", "call", ())
        try:
            value: Any = ("return", await function(*args))
        except Exception as error:
            value = ("raise", (type(error), repr(error.args)))
        finally:
            runtime.report_function_exit(cid)
    return value, captured.events


def of(events: list[Any], *kinds: str) -> list[Any]:
    return [e for e in events if e.kind in kinds]


def ids_suffix(events: list[Any]) -> list[str]:
    """Node ids without their ``module:qualname:`` part, in event order."""
    return [e.data["node_id"].split(":", 2)[2] for e in events]


# -- the copy itself ----------------------------------------------------------------------


@pytest.mark.parametrize("function", [C.simple, C.generator, A.coroutine, A.async_generator,
                                      C.Child.greet, future_sample.annotated])
def test_copy_has_the_same_face(function: Any) -> None:
    """The copy is a new function with the original's names, docs, defaults, annotations,
    globals, signature and kind (coroutine/generator/async generator)."""
    copy = rewrite(function)
    assert copy is not function and copy.__code__ is not function.__code__
    for attribute in ("__name__", "__qualname__", "__module__", "__doc__", "__defaults__",
                      "__kwdefaults__", "__annotations__"):
        assert getattr(copy, attribute) == getattr(function, attribute), attribute
    assert copy.__globals__ is function.__globals__
    assert inspect.signature(copy) == inspect.signature(function)
    for check in (inspect.iscoroutinefunction, inspect.isgeneratorfunction,
                  inspect.isasyncgenfunction):
        assert check(copy) == check(function)
    assert copy.__code__.co_filename == function.__code__.co_filename
    assert copy.__code__.co_qualname == function.__code__.co_qualname


def test_copy_reports_no_entry_or_exit_of_its_own() -> None:
    """The copy reports only point events; the call itself is the decorator's to report."""
    _, events = run(rewrite(C.simple), 1)
    assert [e.kind for e in events].count("function_entry") == 1  # the manual one
    assert [e.kind for e in events].count("function_exit") == 1
    entry = events[0]
    assert all(e.correlation_id == entry.correlation_id for e in of(events, *AST_KINDS))


def test_sources_unavailable_give_none() -> None:
    """Lambdas, exec'd code, builtins, partials, classes and wrappers made by another
    decorator (whose code is not the function's) cannot be rewritten: None, no error."""
    namespace: dict[str, Any] = {}
    exec("def from_exec(x):\n    return x\n", namespace)
    assert rewrite_function(lambda x: x) is None
    assert rewrite_function(namespace["from_exec"]) is None
    assert rewrite_function(len) is None
    assert rewrite_function(functools.partial(C.simple, 1)) is None
    assert rewrite_function(C.Child) is None
    assert rewrite_function(C.decorated_inner) is None


def test_bad_arguments_are_refused() -> None:
    """Arguments are checked when rewriting, so mistakes show at decoration time."""
    with pytest.raises(TypeError):
        rewrite_function(C.simple, expressions="total")
    with pytest.raises(ValueError, match="does not parse"):
        rewrite_function(C.simple, expressions=["total +"])
    with pytest.raises(ValueError, match="loop_head"):
        rewrite_function(C.simple, loop_head=-1)


def test_decorators_above_the_def_are_not_run_again() -> None:
    """The copy is compiled without the decorators written above the def."""
    before = list(C.DECORATED_CALLS)
    copy = rewrite(C.registered)
    assert before == C.DECORATED_CALLS
    assert copy(1) == 2


def test_module_globals_untouched() -> None:
    """Rewriting adds nothing to the module's globals: helpers live in closure cells."""
    before = set(vars(C))
    copy = rewrite(C.loops)
    assert set(vars(C)) == before
    assert isinstance(copy, types.FunctionType)


# -- semantics ----------------------------------------------------------------------------

SYNC_CASES = [
    (C.simple, (1,), {}), (C.simple, (1, 5, 6), {"c": 0, "z": 1}), (C.simple, ("a",), {}),
    (C.branches, (11,), {}), (C.branches, (7,), {}), (C.branches, (0,), {}),
    (C.branches, (-3,), {}), (C.branches, ("x",), {}),
    (C.loops, ([1, 2, 3, 4],), {}), (C.loops, ([2] * 600,), {}), (C.loops, ([],), {}),
    (C.loops, ([1, None],), {}), (C.counted, (50,), {}), (C.unsized, (30,), {}),
    (C.nested_loops, (12,), {}), (C.comprehensions, ([1, 2, 3, 4, 5],), {}),
    (C.comprehensions, (list(range(40)),), {}), (C.walrus, ([1, 2],), {}),
    (C.walrus, ([1, 2, 3],), {}), (C.exceptions, ("value",), {}),
    (C.exceptions, ("key",), {}), (C.exceptions, ("none",), {}),
    (C.raises, (KeyError("k"),), {}), (C.raises_later, (5,), {}),
    (C.exception_groups, ([ValueError, TypeError, ValueError],), {}),
    (C.exception_groups, ([KeyError],), {}),
    (C.matching, ({"action": "move", "x": 1, "y": 2},), {}), (C.matching, (["say", 1],), {}),
    (C.matching, (["go", 1, 2],), {}), (C.matching, ("hello",), {}), (C.matching, (3,), {}),
    (C.matching_no_default, (1,), {}), (C.matching_no_default, (500,), {}),
    (C.matching_no_default, (7,), {}), (C.uses_global, (), {}),
    (C.with_statement, ("abc",), {}), (C.with_statement, (3,), {}),
    (C.expressions, ([1, 2, 3],), {}), (C.expressions, ([],), {}),
    (C.one_line_twice, (0,), {}), (C.private_names, (), {}), (C.fstrings, ("ab", 6), {}),
    (C.fstrings, ("", 2), {}), (C.lambdas_inside, ([3, 0, -1],), {}),
    (C.del_and_assert, ({"a": 1, "b": 2},), {}), (C.del_and_assert, ([],), {}),
    (C.del_and_assert, ({"b": 1},), {}), (C.class_inside, (), {}),
    (C.many_statements, (1,), {}),
    (E.return_in_finally, (True,), {}), (E.return_in_finally, (False,), {}),
    (E.continue_in_finally, (30,), {}), (E.break_in_except, ([1, 2, 0, 4],), {}),
    (E.break_in_except, ([1, 2],), {}), (E.while_else, (5,), {}), (E.while_else, (99,), {}),
    (E.nested_class_comprehension, (), {}), (E.lambda_defaults, (True,), {}),
    (E.lambda_defaults, (False,), {}), (E.star_targets, ([1, 2, 3],), {}),
    (E.star_targets, ([],), {}), (E.growing_list, (40,), {}), (E.mutated_dict, (), {}),
    (E.deleting_loop_variable, ([1, 2, 3],), {}),
    (E.match_in_loop, ([("add", 1), ("add", -1), "x"] * 10,), {}),
    (E.uses_class_cell, (), {}), (E.recursive, (6,), {}),
    (E.walrus_in_comprehension_condition, ([1, 2, 3],), {}),
    (E.early_return_in_loop, ([1, 2, -3] * 20,), {}), (E.early_return_in_loop, ([1] * 30,), {}),
    (E.nested_generator_closed, (5,), {}),
    (E.SelfReferencing.clone, (E.SelfReferencing(),), {}),
    (E.outer_with_recursive_inner(0), (5,), {}),
]


def _case_id(value: Any) -> str:
    return getattr(value, "__name__", "")


@pytest.mark.parametrize(("function", "args", "kwargs"), SYNC_CASES, ids=_case_id)
@pytest.mark.parametrize("capturing", [True, False], ids=["on", "off"])
def test_same_results_and_exceptions(function: Any, args: tuple[Any, ...],
                                     kwargs: dict[str, Any], capturing: bool) -> None:
    """Original and copy return equal values or raise the same exception type with the
    same arguments, whether capture is on or off."""
    C.GLOBAL_COUNTER = 0
    expected = outcome(lambda: function(*args, **kwargs))
    C.GLOBAL_COUNTER = 0
    copy = rewrite(function)
    if capturing:
        got, _ = run(copy, *args, **kwargs)
    else:
        got = outcome(lambda: copy(*args, **kwargs))
    assert got == expected


@functools.cache
def _bounded_copy(function: Any) -> Any:
    return rewrite(function, loop_head=2, loop_tail=1)


@given(st.one_of(st.integers(-20, 20), st.text(max_size=3), st.none(),
                 st.lists(st.integers(-5, 5), max_size=6),
                 st.dictionaries(st.sampled_from(["action", "x", "y"]), st.integers(0, 3))))
def test_same_behaviour_on_arbitrary_inputs(value: Any) -> None:
    """Property: for any input, the copies of branchy sample functions behave exactly like
    the originals (value or exception), with capture on."""
    for function in (C.branches, C.loops, C.matching, C.walrus, C.comprehensions,
                     C.matching_no_default, C.expressions):
        expected = outcome(functools.partial(function, value))
        got, _ = run(_bounded_copy(function), value)
        assert got == expected, function.__name__


def test_same_exception_object_and_traceback() -> None:
    """An exception leaves the copy as the very object raised, and its traceback points
    at the same lines and function names as the original's."""
    error = KeyError("k")
    copy = rewrite(C.raises)
    with pytest.raises(KeyError) as caught, capture():
        copy(error)
    assert caught.value is error

    def frames(function: Any) -> list[tuple[str, int | None, str]]:
        try:
            function(5)
        except ZeroDivisionError as failure:
            summary = traceback.extract_tb(failure.__traceback__)
            return [(f.filename, f.lineno, f.name) for f in summary[1:]]
        raise AssertionError("did not raise")

    with capture():
        assert frames(rewrite(C.raises_later)) == frames(C.raises_later)


def test_escaping_closures_and_generators_still_work() -> None:
    """A generator expression or nested function returned by the copy and used after it
    returned (and after capture ended) behaves like the original's."""
    with capture():
        lazy = rewrite(E.genexp_escapes)([1, 0, 2])
        inner = rewrite(E.nested_with_comprehension)([1, 0, 2])
    assert list(lazy) == list(E.genexp_escapes([1, 0, 2]))
    assert inner(10) == E.nested_with_comprehension([1, 0, 2])(10)
    with capture() as captured:
        assert inner(1) == [2, 3]
    assert of(captured.events, "line_execution")


def test_frame_locals_gain_only_ascope_names() -> None:
    """The copy's frame has extra locals, all named ``_ascope__*`` (documented limit)."""
    with capture():
        assert rewrite(E.frame_locals_names)() == E.frame_locals_names()


@pytest.mark.asyncio
async def test_async_comprehension_in_a_coroutine() -> None:
    """An async comprehension over a nested async generator works and reports."""
    got, events = await run_async(rewrite(E.async_comprehension_in_coroutine), 6)
    assert got == ("return", [0, 4, 8])
    assert [e.data["loop_type"] for e in of(events, "loop_iteration")].count("listcomp") == 6


def test_generator_send_throw_and_close_early() -> None:
    """A rewritten generator yields, receives, returns its value and runs its finally
    block when closed early, like the original."""
    def drive(function: Any) -> list[Any]:
        seen: list[Any] = []
        generator = function(3)
        seen.append(next(generator))
        seen.append(generator.send("hello"))
        seen.append(next(generator))
        with pytest.raises(ValueError):
            generator.throw(ValueError("boom"))
        generator = function(1)
        seen.append(next(generator))
        try:
            next(generator)
        except StopIteration as stop:
            seen.append(stop.value)
        closed = function(10)
        next(closed)
        closed.close()
        return seen

    del C.DECORATED_CALLS[:]
    expected = drive(C.generator)
    closes = list(C.DECORATED_CALLS)
    del C.DECORATED_CALLS[:]
    with capture():
        assert drive(rewrite(C.generator)) == expected
    assert C.DECORATED_CALLS == closes == ["generator closed"] * 3

    early = rewrite(C.closed_early, loop_head=1, loop_tail=1)
    with capture() as captured:
        generator = early(100)
        assert [next(generator) for _ in range(5)] == [0, 1, 2, 3, 4]
        generator.close()
    assert "never reached when closed early" not in C.DECORATED_CALLS
    summary = [e for e in of(captured.events, "loop_iteration")
               if e.data["loop_type"] == "for_skipped"]
    assert summary and summary[0].data["iteration"] == 5  # reported by the finally


@pytest.mark.asyncio
async def test_async_semantics() -> None:
    """Coroutines, async with, async for, async comprehensions, async generators
    (asend/athrow/aclose) and cancellation behave as in the originals."""
    for function, args in ((A.coroutine, (2,)), (A.coroutine, (-1,)),
                           (A.async_with_for, (3,)), (A.gathers, (4,))):
        del A.EVENTS[:]
        expected, _ = await run_async(function, *args)
        events_original = list(A.EVENTS)
        del A.EVENTS[:]
        got, events = await run_async(rewrite(function), *args)
        assert got == expected
        assert events_original == A.EVENTS
        assert of(events, "line_execution")

    async def drive(function: Any) -> list[Any]:
        seen: list[Any] = []
        agen = function(5)
        seen.append(await agen.__anext__())
        seen.append(await agen.asend("x"))
        with pytest.raises(KeyError):
            await agen.athrow(KeyError("k"))
        agen = function(5)
        seen.append(await agen.__anext__())
        await agen.aclose()
        seen.append([item async for item in function(3)])
        return seen

    del A.EVENTS[:]
    expected_seen = await drive(A.async_generator)
    expected_events = list(A.EVENTS)
    del A.EVENTS[:]
    async with capture():
        assert await drive(rewrite(A.async_generator)) == expected_seen
    assert expected_events == A.EVENTS

    async with capture():
        event = asyncio.Event()
        task = asyncio.ensure_future(rewrite(A.cancellable)(event))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert A.EVENTS[-1] == "cancelled"


def test_closure_cells_are_shared_with_the_original() -> None:
    """A copy of a closure reads and writes the original's cells (``nonlocal``)."""
    counter = C.make_counter()
    copy = rewrite(counter)
    with capture():
        assert [counter(), copy(), counter(), copy()] == [1, 2, 3, 4]
        count, bump = rewrite(C.closures)(10)
        assert count == 16 and bump() == 17
    assert counter.__closure__ is not None
    assert any(cell is counter.__closure__[0] for cell in copy.__closure__)


def test_global_statement_writes_the_module_global() -> None:
    """``global`` in the copy rebinds the module's global, not a copy's."""
    C.GLOBAL_COUNTER = 0
    with capture():
        assert rewrite(C.uses_global)() == 1
    assert C.GLOBAL_COUNTER == 1


def test_super_without_arguments_and_private_names() -> None:
    """Methods keep their ``__class__`` cell (``super()``) and name mangling."""
    child = C.Child()
    with capture():
        assert rewrite(C.Child.greet)(child) == "child+base+s"
        fresh = C.Child.__new__(C.Child)
        rewrite(C.Child.__init__)(fresh)
        assert fresh._Child__secret == "s"  # type: ignore[attr-defined]
        assert rewrite(C.Child.build.__func__)(C.Child).greet() == "child+base+s"
        assert rewrite(C.Child.__dict__["static"].__func__)(1) == 2
        assert rewrite(C.private_names)() == 5


def test_future_annotations_flag_is_kept() -> None:
    """A module's ``from __future__ import annotations`` still applies in the copy
    (nested annotations stay strings, undefined names are not evaluated)."""
    with capture():
        result = rewrite(future_sample.annotated)(1)
    assert result == {"value": 2, "inner": {"y": "UndefinedName", "return": "AlsoUndefined"}}


# -- what gets reported -------------------------------------------------------------------


def test_line_events_for_every_statement() -> None:
    """Each statement that runs reports its absolute line and its node id (line relative
    to the def line), in execution order."""
    _, events = run(rewrite(C.simple), 1)
    lines = of(events, "line_execution")
    def_line = C.simple.__code__.co_firstlineno
    assert [e.data["line"] - def_line for e in lines] == [2, 3, 4, 5]
    assert ids_suffix(lines) == ["2:assign", "3:augassign", "4:annassign", "5:return"]
    assert all(e.data["source"] == "ast" for e in lines)


def test_branch_events() -> None:
    """if/elif/else arms, conditional expressions and an if without else report the
    condition's source and the arm taken."""
    _, events = run(rewrite(C.branches), 7)
    branches = [(e.data["branch_type"], e.data["condition"], e.data["branch_taken"])
                for e in of(events, "branch_execution")]
    assert branches == [("if", "x > 10", False), ("elif", "x > 5", True),
                        ("ifexp", "x < 0", False), ("if", "x == 0", False)]
    assert ids_suffix(of(events, "branch_execution")) == ["1:if", "3:if", "7:ifexp", "8:if"]


def test_try_arms_are_branches() -> None:
    """except (with its type's source), else and finally arms report as branches; the
    ``except ... as`` name is snapshotted; except* arms report as try_star."""
    _, events = run(rewrite(C.exceptions), "value")
    arms = [(e.data["branch_type"], e.data["condition"], e.data["branch_taken"])
            for e in of(events, "branch_execution") if e.data["branch_type"] == "try"]
    assert arms == [("try", "ValueError", "except"), ("try", "", "finally")]
    snapshot = [e.data["variables"] for e in of(events, "variable_snapshot")
                if "error" in e.data["variables"]]
    assert snapshot[0]["error"]["$type"] == "ValueError"

    _, events = run(rewrite(C.exceptions), "none")
    arms = [e.data["branch_taken"] for e in of(events, "branch_execution")
            if e.data["branch_type"] == "try"]
    assert arms == ["else", "finally"]

    _, events = run(rewrite(C.exception_groups), [ValueError, TypeError])
    arms = [(e.data["branch_type"], e.data["condition"], e.data["branch_taken"])
            for e in of(events, "branch_execution")]
    assert arms == [("try_star", "ValueError", "except*"),
                    ("try_star", "TypeError", "except*")]


def test_loop_events() -> None:
    """for loops report each iteration's count and target values; while loops report
    their test as a branch each time it is evaluated."""
    _, events = run(rewrite(C.loops), [1, 2, 3])
    iterations = [(e.data["loop_type"], e.data["iteration"], e.data["value"])
                  for e in of(events, "loop_iteration")]
    assert iterations == [
        ("for", 1, {"index": 0, "row": 1}), ("for", 2, {"index": 1, "row": 2}),
        ("for", 3, {"index": 2, "row": 3}), ("while", 1, True), ("while", 2, True),
        ("while", 3, True)]
    tests = [e.data["branch_taken"] for e in of(events, "branch_execution")
             if e.data["branch_type"] == "while"]
    assert tests == [True, True, True, False]


def test_variable_snapshots_after_assignments() -> None:
    """=, +=, annotated, walrus, for targets, with-as and except-as bindings are
    snapshotted with the names they bind."""
    _, events = run(rewrite(C.simple), 1)
    assert [e.data["variables"] for e in of(events, "variable_snapshot")] == [
        {"total": 3}, {"total": 6}, {"label": "sum"}]
    _, events = run(rewrite(C.walrus), [1, 2, 3])
    assert of(events, "variable_snapshot")[0].data["variables"] == {"count": 3}
    assert ids_suffix(of(events, "variable_snapshot")) == ["1:namedexpr"]
    _, events = run(rewrite(C.with_statement), "abcd")
    assert [e.data["variables"] for e in of(events, "variable_snapshot")] == [
        {"value": "abcd"}, {"length": 4}]
    _, events = run(rewrite(C.counted), 2)
    assert {"i": 1} in [e.data["variables"] for e in of(events, "variable_snapshot")]


def test_pattern_match_events() -> None:
    """Each case tried reports its pattern source, whether it matched, and the matched
    case's bindings; a guarded case whose pattern matched but guard failed says so."""
    _, events = run(rewrite(C.matching), ["go", 1, 2])
    matches = [(e.data["pattern"], e.data["matched"], e.data["bindings"])
               for e in of(events, "pattern_match")]
    assert matches == [
        ('{"action": "move", "x": x, "y": y}', False, None),
        ('[first, *rest] if first == "say"', False, {"$guard": False}),
        ("[first, *rest]", True, {"first": "go", "rest": [1, 2]}),
    ]
    assert all(e.data["value"] == ["go", 1, 2] for e in of(events, "pattern_match"))
    _, events = run(rewrite(C.matching_no_default), 7)
    assert [e.data["matched"] for e in of(events, "pattern_match")] == [False, False]


def test_comprehension_iterations() -> None:
    """Each clause of list/set/dict comprehensions and generator expressions reports its
    iterations; conditional expressions inside the element report as branches."""
    _, events = run(rewrite(C.comprehensions), [1, 2])
    kinds = [(e.data["loop_type"], e.data["iteration"], e.data["value"])
             for e in of(events, "loop_iteration")]
    assert kinds == [
        ("listcomp", 1, 1), ("listcomp", 2, 2),
        ("dictcomp", 1, 1), ("dictcomp", 2, 2),
        ("setcomp", 1, 1), ("setcomp", 2, 2),
        # [(a, b) for a in range(3) for b in range(a)]: a = 0, 1 (b = 0), 2 (b = 0, 1)
        ("listcomp", 1, 0), ("listcomp", 2, 1), ("listcomp", 1, 0), ("listcomp", 3, 2),
        ("listcomp", 1, 0), ("listcomp", 2, 1),
        ("genexp", 1, 1), ("genexp", 2, 2),
    ]
    assert [e.data["branch_taken"] for e in of(events, "branch_execution")] == [True, False]


def test_chosen_expressions_and_return_values() -> None:
    """Chosen expressions (matched by structure, so spacing is free) and every return
    value are reported as expression values, with their source text."""
    copy = rewrite(C.expressions, expressions=["len( rows )", "sum(rows)"])
    _, events = run(copy, [1, 2, 3])
    values = [(e.data["expression"], e.data["value"]) for e in of(events, "expression_value")]
    assert values == [("sum(rows)", 6), ("len(rows)", 3),
                      ("total / size if size else 0.0", 2.0)]
    assert ids_suffix(of(events, "expression_value")) == ["1:call", "2:call", "3:return"]


# -- node ids and the node map -------------------------------------------------------------

ALL_SAMPLES = sorted({f for f, _, _ in SYNC_CASES} | {
    A.coroutine, A.async_with_for, A.gathers, A.async_generator, C.Child.greet,
    C.closures, C.generator}, key=lambda f: f.__qualname__)


@pytest.mark.parametrize("function", ALL_SAMPLES, ids=lambda f: f.__qualname__)
def test_node_ids_are_canonical_unique_and_mapped(function: Any) -> None:
    """Every node id validates, is unique in the node map, has the function's module and
    qualname (or a nested one), and a map row pointing at its absolute position."""
    rows = node_map_of(rewrite(function, expressions=["total", "rows"]))
    assert rows
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    def_line = function.__code__.co_firstlineno
    module = inspect.getmodule(function)
    assert module is not None
    source_lines = inspect.getsource(module).splitlines()
    for row in rows:
        parsed = runtime.validate_ast_node_id(row["id"])
        assert parsed.module == function.__module__
        assert parsed.qualname.startswith(function.__qualname__)
        assert row["file"] == function.__code__.co_filename
        if parsed.qualname == function.__qualname__:
            assert row["line"] - def_line == parsed.line
        if parsed.column is not None:
            assert row["column"] == parsed.column
        assert row["end_line"] >= row["line"]
        text = source_lines[row["line"] - 1].encode()[row["column"]:].decode()
        assert text.startswith(row["source"].split("\n")[0][:10])


def test_nested_function_ids_are_relative_to_their_own_def() -> None:
    """Statements of a nested def get ids under ``outer.<locals>.inner``, with lines
    relative to the nested def line."""
    ids = {row["id"].split(":", 1)[1] for row in node_map_of(rewrite(C.make_counter)) or []}
    assert {"make_counter.<locals>.counter:2:augassign",
            "make_counter.<locals>.counter:3:return", "make_counter:3:functiondef"} <= ids


def test_columns_only_where_two_nodes_of_a_type_share_a_line() -> None:
    """Two assignments and two conditional expressions on one line get ``.column``
    suffixes; the lone return on its line does not."""
    ids = [row["id"].split(":", 2)[2] for row in node_map_of(rewrite(C.one_line_twice)) or []]
    assert sorted(ids) == ["1.23:assign", "1.27:ifexp", "1.4:assign", "1.8:ifexp", "2:return"]


def test_node_ids_stable_when_unrelated_code_moves() -> None:
    """The same function placed lower in another file, after unrelated code, gets the
    same ids (relative lines): only the module part differs."""
    def suffixes(function: Any) -> list[str]:
        return [row["id"].split(":", 1)[1] for row in node_map_of(rewrite(function)) or []]

    assert suffixes(moved_a.stable) == suffixes(moved_b.stable)
    assert moved_a.stable.__code__.co_firstlineno != moved_b.stable.__code__.co_firstlineno


def test_node_map_event_once_per_function_on_first_captured_call() -> None:
    """The node map is sent as ``ast_node_map`` events (chunked) on the first call with
    capture on, and not again; every injected event's id is in it."""
    copy = rewrite(C.many_statements)
    assert copy(1) == 19  # capture off: nothing sent, nothing marked as sent
    _, first = run(copy, 1)
    _, second = run(copy, 1)
    maps = of(first, "ast_node_map")
    assert len(maps) == maps[0].data["chunks"] >= 2
    assert [m.data["chunk"] for m in maps] == list(range(len(maps)))
    rows = [row for m in maps for row in m.data["nodes"]]
    assert rows == node_map_of(copy)
    assert maps[0].data["qualname"] == "many_statements"
    assert not of(second, "ast_node_map")
    mapped = {row["id"] for row in rows}
    assert {e.data["node_id"] for e in of(first, *AST_KINDS)} <= mapped


# -- loop bounding ------------------------------------------------------------------------


def test_sized_loop_records_first_and_last_iterations_in_full() -> None:
    """A loop over a list/range records its first N and last M iterations with everything
    inside them, nothing for the ones between, and one summary with the skipped count."""
    _, events = run(rewrite(C.counted, loop_head=3, loop_tail=2), 100)
    loop = of(events, "loop_iteration")
    recorded = [e.data for e in loop if e.data["loop_type"] == "for"]
    assert [d["iteration"] for d in recorded] == [1, 2, 3, 99, 100]
    assert [d["value"] for d in recorded] == [0, 1, 2, 98, 99]
    summary = [e.data for e in loop if e.data["loop_type"] == "for_skipped"]
    assert summary == [{"loop_type": "for_skipped", "iteration": 100, "value": {"skipped": 95},
                        "line": C.counted.__code__.co_firstlineno + 2,
                        "node_id": "ast_samples.constructs:counted:2:for"}]
    lines = ids_suffix(of(events, "line_execution"))
    assert lines.count("3:augassign") == 5
    assert lines.count("4:return") == 1
    assert len(of(events, "variable_snapshot")) == 1 + 5 + 5  # seen = 0, i, seen += i


def test_unsized_loop_reports_last_values_at_the_end() -> None:
    """A loop over an iterator records its first N iterations; the last M iterations'
    values come in the summary at the end (their inner events are not recorded)."""
    _, events = run(rewrite(C.unsized, loop_head=2, loop_tail=3), 50)
    loop = of(events, "loop_iteration")
    assert [e.data["iteration"] for e in loop if e.data["loop_type"] == "for"] == [1, 2]
    summary = [e.data for e in loop if e.data["loop_type"] == "for_skipped"]
    assert summary[0]["iteration"] == 50
    assert summary[0]["value"] == {"skipped": 45, "tail": [[48, 470], [49, 480], [50, 490]]}
    assert ids_suffix(of(events, "line_execution")).count("3:expr") == 2


def test_nested_loops_inside_skipped_iterations_record_nothing() -> None:
    """An inner loop running in a skipped outer iteration records no events at all."""
    _, events = run(rewrite(C.nested_loops, loop_head=2, loop_tail=1), 20)
    tests = ids_suffix(of(events, "branch_execution"))
    assert tests.count("4:if") == 3 * 3  # outer iterations 1, 2, 20 x inner 1, 2, 20
    inner = [e for e in of(events, "loop_iteration") if e.data["node_id"].endswith(":3:for")
             and e.data["loop_type"] == "for_skipped"]
    assert len(inner) == 3


def test_break_in_a_skipped_iteration_restores_recording() -> None:
    """Leaving a loop by ``break`` during a skipped iteration records what follows."""
    _, events = run(rewrite(C.loops, loop_head=2, loop_tail=2), [2] * 600)
    lines = ids_suffix(of(events, "line_execution"))
    # The while loop after it runs 3 times: the third iteration is past its head of 2.
    assert lines[-5:] == ["10:assign", "11:while", "12:augassign", "12:augassign",
                          "13:return"]
    summaries = [(e.data["loop_type"], e.data["iteration"], e.data["value"])
                 for e in of(events, "loop_iteration") if "_skipped" in e.data["loop_type"]]
    tail = [[500, {"index": 499, "row": 2}], [501, {"index": 500, "row": 2}]]  # enumerate()
    assert summaries == [("for_skipped", 501, {"skipped": 497, "tail": tail}),
                         ("while_skipped", 3, {"skipped": 0, "tail": [[3, True]]})]


def test_comprehension_bounding() -> None:
    """Comprehensions over sized iterables record their first and last iterations and
    report the skipped count when they finish; branches inside skipped elements are not
    recorded."""
    _, events = run(rewrite(C.comprehensions, loop_head=2, loop_tail=1), list(range(40)))
    dictcomp = [e.data for e in of(events, "loop_iteration")
                if e.data["loop_type"].startswith("dictcomp")]
    assert [(d["loop_type"], d["iteration"]) for d in dictcomp] == [
        ("dictcomp", 1), ("dictcomp", 2), ("dictcomp", 40), ("dictcomp_skipped", 40)]
    assert dictcomp[-1]["value"] == {"skipped": 37}
    assert len(of(events, "branch_execution")) == 3


def test_capture_off_records_nothing_and_behaves_the_same() -> None:
    """With capture off (globally or for the task) the copy runs with every report
    skipped."""
    copy = rewrite(C.loops)
    assert copy([1, 2, 3, 4]) == C.loops([1, 2, 3, 4])
    with capture() as captured, ascope.disabled():
        assert copy([1, 2, 3, 4]) == C.loops([1, 2, 3, 4])
    assert not captured.events


# -- through the decorator ----------------------------------------------------------------


def test_instrument_ast_end_to_end() -> None:
    """``ascope.instrument(ast=True)`` reports the call and, inside it, the AST events of
    the rewritten body, all under the call's correlation id."""
    instrumented = ascope.instrument(ast=True, expressions=["total"])(C.loops)
    assert instrumented([1, 2]) == C.loops([1, 2])
    with capture() as captured:
        assert instrumented([1, 2]) == C.loops([1, 2])
    entry = of(captured.events, "function_entry")[0]
    assert entry.data["function"] == "loops"
    inner = of(captured.events, *AST_KINDS)
    assert inner and all(e.correlation_id == entry.correlation_id for e in inner)
    assert of(captured.events, "ast_node_map")
    assert captured.events[-1].kind == "function_exit"


@pytest.mark.asyncio
async def test_instrument_ast_end_to_end_async() -> None:
    """The decorator with ``ast=True`` on a coroutine function reports its lines."""
    instrumented = ascope.instrument(ast=True)(A.async_with_for)
    async with capture() as captured:
        assert await instrumented(2) == await A.async_with_for(2)
    calls = of(captured.events, "function_entry")
    lines = of(captured.events, "line_execution")
    assert lines and lines[0].correlation_id == calls[0].correlation_id


def test_instrument_ast_without_source_warns_and_falls_back() -> None:
    """Without source (a lambda), the decorator warns and still captures calls."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        instrumented = ascope.instrument(ast=True)(lambda x: x + 1)
    assert len(caught) == 1 and "call capture only" in str(caught[0].message)
    with capture() as captured:
        assert instrumented(1) == 2
    assert [e.kind for e in captured.events] == ["function_entry", "function_exit"]


def test_source_changed_since_import_gives_none(tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """If the file on disk no longer holds the code the function runs (edited after
    import), the copy would run other code: None instead."""
    import importlib
    import linecache

    path = tmp_path / "edited_module.py"
    path.write_text("def f(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("edited_module")
    try:
        assert rewrite_function(module.f) is not None
        path.write_text("def f(x):\n    return x + 2  # edited\n")
        linecache.checkcache(str(path))
        assert rewrite_function(module.f) is None
    finally:
        monkeypatch.delitem(__import__("sys").modules, "edited_module")


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_node_map_marked_unsent_in_a_forked_child() -> None:
    """A forked child is another process: its copies will send their maps again."""
    import os

    copy = rewrite(C.counted)
    _, events = run(copy, 1)
    assert of(events, "ast_node_map")
    flag = copy.__closure__[copy.__code__.co_freevars.index("_ascope__need_map")]
    assert flag.cell_contents is False
    read, write = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns about forking a threaded process; the child only reads a cell.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write, b"1" if flag.cell_contents is True else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    assert flag.cell_contents is False  # the parent already sent it


@pytest.mark.asyncio
async def test_async_for_is_bounded_like_an_iterator() -> None:
    """An ``async for`` (length unknown) records its first iterations and reports the
    last ones' values in its summary."""
    expected, _ = await run_async(A.async_with_for, 30)
    got, events = await run_async(rewrite(A.async_with_for, loop_head=2, loop_tail=2), 30)
    assert got == expected
    loop = [e.data for e in of(events, "loop_iteration")
            if e.data["node_id"].endswith(":3:asyncfor")]
    assert [(d["loop_type"], d["iteration"]) for d in loop] == [
        ("async_for", 1), ("async_for", 2), ("async_for_skipped", 30)]
    assert loop[-1]["value"] == {"skipped": 26, "tail": [[29, 29], [30, 30]]}
