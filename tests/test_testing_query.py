"""The query API of ``ascope.testing.capture()``: filters, ``only``, the rebuilt
call/task/request tree and its rendering, deterministic renumbering.

The scenario functions below report through the public runtime API, as instrumented
code and middleware do; the async ones run on asyncio and uvloop (the ``run`` fixture).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import ascope
from ascope import runtime as rt
from ascope._query import build_tree, deterministic, function_name, match_function
from ascope.testing import Events, capture

Run = Callable[[Coroutine[Any, Any, Any]], Any]


async def fetch_user(user_id: int) -> dict[str, int]:
    cid = rt.report_function_entry("app.db", "fetch_user", {"user_id": user_id})
    query = rt.report_query_start("SELECT * FROM users WHERE id = ?", [user_id])
    await asyncio.sleep(0)
    rt.report_query_complete(query, rows=1)
    rt.report_ast_branch_execution(None, "if", "user_id > 0", True, 3, "app.db:fetch_user:3:if")
    rt.report_function_exit(cid, {"id": user_id})
    return {"id": user_id}


async def audit(user_id: int) -> None:
    cid = rt.report_function_entry("app.audit", "Audit.record", {"user_id": user_id})
    await asyncio.sleep(0)
    rt.report_function_exit(cid)


async def get_user(user_id: int) -> None:
    cid = rt.report_function_entry("app.views", "get_user")
    await fetch_user(user_id)
    await asyncio.create_task(audit(user_id))
    rt.report_function_exit(cid)


async def request(path: str, user_id: int) -> None:
    cid = rt.report_http_request_start("GET", path)
    await get_user(user_id)
    rt.report_http_request_complete(cid, 200)


async def two_requests() -> capture:
    async with capture() as captured:
        await request("/users/1", 1)
        await request("/users/2", 2)
    return captured


def test_capture_keeps_its_list_api(run: Run) -> None:
    """``.events`` is still a list of Events in time order; ``kinds``, ``of_kind``,
    ``len`` and iteration work as before."""
    captured = run(two_requests())
    assert isinstance(captured.events, list)
    assert [e.ts_ns for e in captured.events] == sorted(e.ts_ns for e in captured.events)
    assert len(captured) == len(captured.events) == len(list(captured))
    assert captured.kinds()[0] == "http_request_start"
    assert len(captured.of_kind("http_request_start", "http_request_complete")) == 4


def test_filter_by_kind_and_data(run: Run) -> None:
    """``filter`` takes one kind or several, and data items that must be equal."""
    captured = run(two_requests())
    assert len(captured.filter("query_start")) == 2
    assert len(captured.filter(["query_start", "query_complete"])) == 4
    done = captured.filter("http_request_complete", status=200)
    assert len(done) == 2
    assert captured.filter("http_request_complete", status=404) == []


def test_filter_by_function_is_that_call_only(run: Run) -> None:
    """``function=`` keeps a call's own events (entry, exit, its points), not nested calls."""
    captured = run(two_requests())
    kinds = captured.filter(function="app.db:fetch_user").kinds()
    assert kinds == ["function_entry", "branch_execution", "function_exit"] * 2
    assert captured.filter(function="app.views:get_user").kinds() == [
        "function_entry", "function_exit"] * 2


def test_filter_by_request_takes_the_whole_subtree(run: Run) -> None:
    """``request=`` keeps everything under the matching request, tasks it spawned too."""
    captured = run(two_requests())
    first = captured.filter(request="/users/1")
    assert first[0].kind == "http_request_start"
    assert {e.data.get("path") for e in first.filter("http_request_start")} == {"/users/1"}
    assert len(first.filter("function_entry", function="Audit.record")) == 1
    assert len(captured.filter(request="GET /users/*").filter("query_start")) == 2
    assert captured.filter(request="/nowhere") == []


def test_filter_within_a_subtree(run: Run) -> None:
    """``within=`` takes a node, a correlation id, an event or a node pattern."""
    captured = run(two_requests())
    views = captured.calls("app.views:get_user")
    assert len(views) == 2
    by_node = captured.filter(within=views[0])
    by_id = captured.filter(within=views[0].correlation_id)
    by_event = captured.filter(within=views[0].opener)
    assert by_node == by_id == by_event
    assert "task_spawn" in by_node.kinds()
    assert len(captured.filter("function_entry", within="task audit")) == 2


def test_only_returns_the_one_match() -> None:
    """``only`` returns the single matching event."""
    with capture() as captured:
        rt.report_function_entry("m", "f")
    event = captured.only("function_entry", function="m:f")
    assert event.data["function"] == "f"


def test_only_fails_naming_what_it_found(run: Run) -> None:
    """With several matches, or none, ``only`` raises AssertionError listing them (or the
    kinds that were captured)."""
    captured = run(two_requests())
    with pytest.raises(AssertionError) as many:
        captured.only("function_entry", function="fetch_user")
    text = str(many.value)
    assert "expected exactly one event matching 'function_entry', function='fetch_user'" in text
    assert "found 2" in text
    assert text.count("function_entry app.db:fetch_user") == 2
    with pytest.raises(AssertionError) as none:
        captured.only("error")
    assert "found 0" in str(none.value)
    assert "http_request_start x2" in str(none.value)


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("app.db:fetch_user", "app.db:fetch_user", True),
    ("app.db:fetch_user", "app.cache:fetch_user", False),
    ("fetch_user", "app.db:fetch_user", True),
    ("Repo.get", "app.db:Repo.get", True),
    ("get", "app.db:Repo.get", True),
    ("Repo", "app.db:Repo.get", False),
    ("app.db.Repo.get", "app.db:Repo.get", True),
    ("app.db:*", "app.db:Repo.get", True),
    ("app.*:fetch_*", "app.db:fetch_user", True),
    ("app:fetch_user", "app.db:fetch_user", False),
])
def test_function_patterns(pattern: str, name: str, matches: bool) -> None:
    """Function patterns: ``module:qualname`` (globs allowed on each side), a bare
    qualname or its last part, or the dotted full name."""
    assert match_function(pattern, name) is matches


def test_function_name_of_a_callable_given_to_the_report_api() -> None:
    """A function object passed to ``report_function_entry`` is recorded as
    ``module.qualname``; it is named ``module:qualname`` like the others."""
    with capture() as captured:
        rt.report_function_entry(fetch_user.__module__, fetch_user)
    assert function_name(captured.events[0].data) == f"{__name__}:fetch_user"


def test_tree_structure(run: Run) -> None:
    """The tree nests calls, tasks and queries under the request they ran for, with each
    operation's closer and point events attached to its node."""
    captured = run(two_requests())
    tree = captured.tree()
    assert [node.short for node in tree.children] == ["GET /users/1", "GET /users/2"]
    first = tree.children[0]
    assert first.closer is not None and first.outcome == "200"
    (view,) = first.children
    assert [child.short for child in view.children] == ["app.db:fetch_user", "task audit"]
    fetch, task = view.children
    assert [e.kind for e in fetch.events] == [
        "function_entry", "branch_execution", "function_exit"]
    assert fetch.children[0].kind == "query_start"
    assert [n.short for n in task.children] == ["app.audit:Audit.record"]
    assert [a.short for a in task.children[0].ancestors()] == [
        "task audit", "app.views:get_user", "GET /users/1"]
    assert tree.node(view.correlation_id or 0) is view


def test_render_text(run: Run) -> None:
    """``render`` writes one line per operation and point event, indented by nesting."""
    captured = run(two_requests())
    text = captured.filter(request="/users/1").render()
    assert text == (
        "GET /users/1 -> 200\n"
        "  call app.views:get_user\n"
        "    call app.db:fetch_user\n"
        "      query SELECT * FROM users WHERE id = ? -> 1 rows\n"
        "      - branch if user_id > 0 -> True\n"
        "    task audit\n"
        "      call app.audit:Audit.record"
    )
    assert "branch" not in captured.render(points=False)
    assert captured.tree().render(short=True).splitlines()[1] == "  app.views:get_user"


def test_render_labels_of_other_operations() -> None:
    """Each opener kind and point kind has a readable label; unfinished operations say so."""
    with capture() as captured:
        rt.report_endpoint_entry("app.views", "show")
        rt.report_service_callback_start("Counter", "increment")
        rt.report_channel_join_start("/ws", {"room": 1})
        rt.report_error(ValueError("bad value"))
        rt.report_message_send("worker", {"job": 1})
        rt.report_state_change("Counter", {"n": 1}, {"n": 2})
        rt.report_line_execution(None, 7)
    text = captured.render()
    assert text.splitlines() == [
        "endpoint app.views.show (not finished)",
        "  service Counter.increment (not finished)",
        "    join /ws (not finished)",
        "      - error ValueError: bad value",
        "      - send -> worker",
        "      - state Counter",
    ]
    assert "- line 7" in captured.render(lines=True)


def test_events_outside_any_operation_go_to_the_root() -> None:
    """Events whose operation was opened before capture started belong to the root."""
    with capture() as captured:
        rt.report_error(KeyError("k"))
        cid = rt.report_function_entry("m", "f")
        rt.report_function_exit(cid)
    tree = captured.tree()
    assert [e.kind for e in tree.events] == ["error"]
    assert captured.render() == "- error KeyError: 'k'\ncall m:f"


def test_deterministic_renumbers_ids_tasks_and_time(run: Run) -> None:
    """Deterministic events number correlation ids and task ids by first appearance and
    timestamps by position; durations become 0; two runs render the same with ids."""
    first = run(two_requests()).deterministic()
    second = run(two_requests()).deterministic()
    assert first.render(ids=True) == second.render(ids=True)
    assert [e.ts_ns for e in first] == list(range(len(first)))
    assert first[0].correlation_id == 1 and first[0].parent_id is None
    spawn = first.filter("task_spawn")[0]
    assert spawn.data["child_task_id"] == spawn.task_id
    assert all(e.data.get("duration_ns") in (None, 0) for e in first)
    assert {e.node for e in first} == {ascope.Node("test", 0, 0)}
    assert first.tree().render() == run(two_requests()).render()


def test_tree_from_stored_events(run: Run) -> None:
    """The tree is rebuilt from plain events, e.g. read back from a store as dicts."""
    captured = run(two_requests())
    restored = [ascope.Event.from_dict(e.to_dict()) for e in reversed(captured.events)]
    assert build_tree(restored).render() == captured.render()
    assert Events(deterministic(restored)).render(ids=True) == captured.deterministic().render(
        ids=True)


def test_unscoped_events_from_before_the_capture_are_left_out() -> None:
    """An event emitted before a capture opened, by code belonging to no capture, is not
    in it even when the writer delivers it after the capture opened."""
    async def main() -> tuple[list[str], list[str]]:
        ascope.configure(drain_interval=30.0)  # nothing is delivered until we flush
        try:
            async with capture() as outer:
                # Code that belongs to no capture (a server's task, say) emits here.
                contextvars.Context().run(rt.report_function_entry, "app.server", "early")
                async with capture() as inner:
                    rt.report_function_entry("app.test", "late")
                    contextvars.Context().run(rt.report_function_entry, "app.server", "later")
            return ([n.name for n in outer.calls()], [n.name for n in inner.calls()])
        finally:
            ascope.configure(drain_interval=0.05)

    outer, inner = asyncio.run(main())
    assert outer == ["app.server:early", "app.test:late", "app.server:later"]
    assert inner == ["app.test:late", "app.server:later"]
