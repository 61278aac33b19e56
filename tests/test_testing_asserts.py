"""The assertion helpers of ``ascope.testing``: what they accept, and what their failure
messages show (the expected shape next to the actual tree)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ascope import runtime as rt
from ascope.testing import (
    Events,
    assert_called,
    assert_no_errors,
    assert_queries,
    assert_tree,
    capture,
    render_spec,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]


async def fetch_user(user_id: int) -> None:
    cid = rt.report_function_entry("app.db", "fetch_user", {"user_id": user_id})
    query = rt.report_query_start("SELECT * FROM users WHERE id = ?", [user_id])
    await asyncio.sleep(0)
    rt.report_query_complete(query, rows=1)
    rt.report_function_exit(cid)


async def list_users(count: int) -> None:
    """The N+1 shape: one query per user, one of them from a task."""
    cid = rt.report_function_entry("app.views", "list_users")
    for user_id in range(count - 1):
        await fetch_user(user_id)
    await asyncio.create_task(fetch_user(count - 1))
    rt.report_function_exit(cid)


async def serve(path: str, handler: Coroutine[Any, Any, None], status: int = 200) -> None:
    cid = rt.report_http_request_start("GET", path)
    await handler
    rt.report_http_request_complete(cid, status)


async def scenario() -> capture:
    async with capture() as captured:
        await serve("/users", list_users(3))
        await serve("/users/7", fetch_user(7))
    return captured


def failure(check: Callable[[], Any]) -> str:
    with pytest.raises(AssertionError) as raised:
        check()
    return str(raised.value)


# -- assert_called ----------------------------------------------------------------------------


def test_assert_called_counts_calls(run: Run) -> None:
    """``times`` counts calls exactly; without it, one call is enough. Returns the nodes."""
    captured = run(scenario())
    assert len(assert_called(captured, "app.db:fetch_user", times=4)) == 4
    assert_called(captured, "app.views:list_users")
    assert_called(captured, "app.db:delete_user", times=0)


def test_assert_called_parent_looks_through_tasks_not_past_calls(run: Run) -> None:
    """``parent`` counts calls made by that function directly or from tasks it spawned,
    and stops at the nearest enclosing call."""
    captured = run(scenario())
    assert_called(captured, "fetch_user", times=3, parent="app.views:list_users")
    assert_called(captured, "fetch_user", times=0, parent="GET /users")
    assert_called(captured, "fetch_user", times=1, parent="/users/7")
    with capture() as nested:
        outer = rt.report_function_entry("app", "outer")
        inner = rt.report_function_entry("app", "inner")
        rt.report_function_entry("app", "leaf")
    assert_called(nested, "app:leaf", times=0, parent="app:outer")
    assert_called(nested, "app:leaf", times=1, parent="app:inner")
    assert outer is not None and inner is not None


def test_assert_called_within_a_subtree(run: Run) -> None:
    """``within`` counts calls anywhere below the matching nodes."""
    captured = run(scenario())
    assert_called(captured, "fetch_user", times=3, within="GET /users")
    assert_called(captured, "fetch_user", times=4, within="GET /users*")
    assert_called(captured, "fetch_user", times=1, within="task fetch_user")
    text = failure(lambda: assert_called(captured, "fetch_user", times=1, within="GET /users"))
    assert "to be called once within 'GET /users'; it was called 3 times within" in text


def test_assert_called_failure_lists_each_call_and_the_tree(run: Run) -> None:
    """The failure says what was expected and found, where each call ran, and the tree."""
    captured = run(scenario())
    text = failure(lambda: assert_called(captured, "app.db:fetch_user", times=1,
                                         parent="app.views:list_users"))
    assert text.startswith("expected 'app.db:fetch_user' to be called once under "
                           "'app.views:list_users'; it was called 3 times under")
    assert "  app.db:fetch_user < task fetch_user < app.views:list_users < GET /users" in text
    assert "  app.db:fetch_user < GET /users/7" in text
    assert "actual tree:\n  GET /users -> 200\n    call app.views:list_users" in text
    missing = failure(lambda: assert_called(captured, "app.db:delete_user"))
    assert "functions that were called: app.db:fetch_user, app.views:list_users" in missing


# -- assert_tree ------------------------------------------------------------------------------


def test_assert_tree_matches_in_order_at_any_depth(run: Run) -> None:
    """By default a pattern may match any node below its parent, in order; a list asks
    for that many matches."""
    captured = run(scenario())
    assert_tree(captured, {
        "GET /users": {"app.views:list_users": {"app.db:fetch_user": [{}, {}, {}]}},
        "GET /users/7": {"query SELECT *": ...},
    })
    assert_tree(captured, {"GET /users": {"task fetch_user": {"fetch_user": {}}}})
    with pytest.raises(AssertionError):
        assert_tree(captured, {"GET /users/7": {}, "GET /users": {}})  # wrong order


def test_assert_tree_exact(run: Run) -> None:
    """``exact=True`` wants the direct children, all of them, in order; ``...`` still
    means anything below."""
    captured = run(scenario())
    assert_tree(captured, {
        "GET /users": {"app.views:list_users": {
            "app.db:fetch_user": [{"query *": {}}, {"query *": {}}],
            "task fetch_user": ...,
        }},
        "GET /users/7": ...,
    }, exact=True)
    text = failure(lambda: assert_tree(captured, {"GET /users": ..., }, exact=True))
    assert "the top level has 2 children, expected 1: ['GET /users', 'GET /users/7']" in text


def test_assert_tree_failure_shows_a_diff(run: Run) -> None:
    """The failure names the first pattern not found and diffs expected and actual."""
    captured = run(scenario())
    text = failure(lambda: assert_tree(captured, {"GET /users/7": {"app.cache:lookup": {}}}))
    lines = text.splitlines()
    assert lines[0] == ("tree does not match: nothing under 'GET /users/7' matches "
                        "'app.cache:lookup' (in this order)")
    assert "  -  app.cache:lookup" in lines
    assert "expected:" in lines and "actual:" in lines and "diff:" in lines


def test_render_spec() -> None:
    """A spec renders in the layout of ``render(short=True)``."""
    assert render_spec({"GET /a": {"f": [{}, {"g": ...}]}}) == (
        "GET /a\n  f\n  f\n    g\n      ...")


# -- assert_no_errors -------------------------------------------------------------------------


def test_assert_no_errors_passes_on_a_clean_run(run: Run) -> None:
    """A run without failures passes."""
    assert_no_errors(run(scenario()))


async def broken() -> capture:
    async def crash() -> None:
        raise KeyError("gone")

    async with capture() as captured:
        request = rt.report_http_request_start("GET", "/broken")
        cid = rt.report_function_entry("app.views", "broken")
        try:
            raise ValueError("bad input")
        except ValueError as error:
            rt.report_error(error)
            rt.report_function_exit(cid, outcome="raise")
        task = asyncio.create_task(crash())
        await asyncio.gather(task, return_exceptions=True)
        query = rt.report_query_start("SELECT 1")
        rt.report_query_complete(query, error=RuntimeError("db down"))
        rt.report_http_request_complete(request, 500)
    return captured


def test_assert_no_errors_lists_every_failure(run: Run) -> None:
    """Errors, raising calls, crashed tasks, failed queries and 5xx responses are listed,
    each with where it happened."""
    text = failure(lambda: assert_no_errors(run(broken())))
    assert text.startswith("expected no errors, found 5:")
    assert "error error ValueError: bad input" in text
    assert "in app.views:broken < GET /broken" in text
    assert "ValueError: bad input (at " in text and "in broken)" in text
    assert "task raised KeyError" in text
    assert "query failed with RuntimeError" in text
    assert "status 500" in text


# -- assert_queries ---------------------------------------------------------------------------


def test_assert_queries_per_request(run: Run) -> None:
    """Counts the queries under each matching request, tasks included."""
    captured = run(scenario())
    assert assert_queries(captured, request="/users", count=3) == 3
    assert_queries(captured, request="GET /users/7", count=1)
    assert_queries(captured, request="/users/*", at_most=1)
    assert_queries(captured, count=4)


def test_assert_queries_failure_points_at_n_plus_one(run: Run) -> None:
    """The failure counts the statements, flags repeats and shows the request's tree."""
    captured = run(scenario())
    text = failure(lambda: assert_queries(captured, request="/users", count=1))
    assert text.splitlines()[:3] == [
        "request 'GET /users' issued 3 queries, expected 1",
        "  3 x SELECT * FROM users WHERE id = ?",
        "    (the same statement repeated: an N+1 query?)",
    ]
    assert "tree:\n  GET /users -> 200" in text
    at_most = failure(lambda: assert_queries(captured, request="/users", at_most=2))
    assert "issued 3 queries, expected at most 2" in at_most


def test_assert_queries_unknown_request(run: Run) -> None:
    """A request that was not captured fails, listing those that were."""
    captured = run(scenario())
    text = failure(lambda: assert_queries(captured, request="/orders", count=0))
    assert text == ("no request matching '/orders' was captured; requests: GET /users, "
                    "GET /users/7")
    with pytest.raises(TypeError):
        assert_queries(captured, request="/users")


def test_helpers_take_any_iterable_of_events(run: Run) -> None:
    """A capture, an ``Events`` and a plain list all work."""
    captured = run(scenario())
    for events in (captured, Events(captured.events), list(captured.events)):
        assert_called(events, "app.db:fetch_user", times=4)
        assert_queries(events, request="/users/7", count=1)
