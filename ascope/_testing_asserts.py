"""Assertion helpers over captured events, failing with the actual tree beside the expected.

They take any iterable of events: a ``capture()``, the ``ascope_events`` fixture, an
``Events`` or a plain list. Functions are named ``"module:qualname"`` (see
``ascope._query`` for the matching rules).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ._events import Event
from ._query import (
    EventQuery,
    Events,
    Tree,
    TreeNode,
    describe,
    is_failure,
)

__all__ = ["assert_called", "assert_no_errors", "assert_queries", "assert_tree", "render_spec"]

# A tree spec: pattern -> what must be below it. ``...``/None: anything; a dict: these
# (in order); a list of those: that many consecutive matches of the same pattern.
Spec = Mapping[str, Any]


def _query(events: Iterable[Event]) -> EventQuery:
    return events if isinstance(events, EventQuery) else Events(events)


def _where(node: TreeNode) -> str:
    """``call app.db:fetch_user < call app.views:get_user < GET /users/1``."""
    return " < ".join([node.short, *(a.short for a in node.ancestors())]) or "<top level>"


# -- assert_called ----------------------------------------------------------------------------


def assert_called(events: Iterable[Event], function: str, times: int | None = None, *,
                  parent: str | None = None, within: str | None = None) -> list[TreeNode]:
    """Assert ``function`` was called (``times`` times exactly, if given).

    ``parent``: only count calls made under a node ``parent`` names, looking up through
    tasks, requests and queries but not past the nearest enclosing function call — so
    ``parent="app.views:get_user"`` counts calls made by ``get_user`` itself or by tasks it
    spawned. ``within``: only count calls anywhere below a node ``within`` names
    (``within="GET /users/1"``). Returns the counted call nodes.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    tree = _query(events).tree()
    calls = [node for node in tree.walk()
             if node.kind == "function_entry" and node.matches(function)]
    counted = [node for node in calls if (parent is None or _under(node, parent))
               and (within is None or any(a.matches(within) for a in node.ancestors()))]
    if (times is None and counted) or (times is not None and len(counted) == times):
        return counted
    wanted = "at least once" if times is None else _times(times)
    under = (f" under {parent!r}" if parent is not None else "") + (
        f" within {within!r}" if within is not None else "")
    lines = [f"expected {function!r} to be called {wanted}{under}; "
             f"it was called {_times(len(counted))}{under}"]
    if calls:
        lines.append(f"all {len(calls)} calls of {function!r}, with what they ran under:")
        lines += [f"  {_where(node)}" for node in calls]
    else:
        names = sorted({node.name for node in tree.walk() if node.kind == "function_entry"})
        lines.append("functions that were called: " + (", ".join(names) or "none"))
    lines += ["actual tree:", _indent(tree.render(points=False))]
    raise AssertionError("\n".join(lines))


def _under(node: TreeNode, parent: str) -> bool:
    for ancestor in node.ancestors():
        if ancestor.matches(parent):
            return True
        if ancestor.kind == "function_entry":
            return False
    return False


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


# -- assert_tree ------------------------------------------------------------------------------


def assert_tree(events: Iterable[Event], expected: Spec, *, exact: bool = False) -> Tree:
    """Assert the operation tree has the shape ``expected`` describes.

    ``expected`` maps node patterns to what must be below them: a dict of the same kind,
    ``{}`` or ``...`` for anything (with ``exact``, ``{}`` means no children), or a list of
    such for that many matches in a row, e.g.::

        assert_tree(events, {
            "GET /users/1": {
                "app.views:get_user": {
                    "app.db:fetch_user": [{}, {}],   # called twice
                },
            },
        })

    By default a pattern may match any node below its parent, in order, with other nodes
    around it; ``exact=True`` wants the direct children, all of them, in order.
    The failure shows why, and a diff of the expected and actual trees.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    tree = _query(events).tree()
    problem = _match(tree, expected, exact, "the top level")
    if problem is None:
        return tree
    expected_text = render_spec(expected)
    actual_text = tree.render(points=False, short=True)
    diff = difflib.unified_diff(expected_text.splitlines(), actual_text.splitlines(),
                                "expected", "actual", lineterm="", n=50)
    raise AssertionError("\n".join(
        [f"tree does not match: {problem}", "expected:", _indent(expected_text),
         "actual:", _indent(actual_text), "diff:", *(_indent(line) for line in diff)]))


def _expand(spec: Spec) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for pattern, below in spec.items():
        if isinstance(below, list):
            items += [(pattern, each) for each in below]
        else:
            items.append((pattern, below))
    return items


def _match(node: TreeNode, spec: Any, exact: bool, where: str) -> str | None:
    """None when ``node``'s subtree satisfies ``spec``, else why not."""
    if spec is None or spec is Ellipsis:
        return None
    if not isinstance(spec, Mapping):
        raise TypeError(f"a tree spec is a dict, a list of dicts or ..., not {spec!r}")
    items = _expand(spec)
    if exact:
        children = node.children
        if len(children) != len(items):
            return (f"{where} has {len(children)} children, expected {len(items)}: "
                    f"{[child.short for child in children]}")
        for child, (pattern, below) in zip(children, items, strict=True):
            if not child.matches(pattern):
                return f"{child.short!r} under {where} does not match {pattern!r}"
            problem = _match(child, below, exact, repr(child.short))
            if problem is not None:
                return problem
        return None
    candidates = [n for child in node.children for n in child.walk()]
    position = 0
    for pattern, below in items:
        reasons: list[str] = []
        for index in range(position, len(candidates)):
            candidate = candidates[index]
            if not candidate.matches(pattern):
                continue
            problem = _match(candidate, below, exact, repr(candidate.short))
            if problem is None:
                position = index + 1
                break
            reasons.append(problem)
        else:
            if reasons:
                return reasons[0]
            return f"nothing under {where} matches {pattern!r} (in this order)"
    return None


def render_spec(spec: Spec, indent: str = "  ") -> str:
    """A tree spec as indented text, in the layout of ``tree().render(short=True)``."""
    out: list[str] = []

    def walk(part: Any, depth: int) -> None:
        if part is None or part is Ellipsis:
            if depth:
                out.append(indent * depth + "...")
            return
        for pattern, below in _expand(part):
            out.append(indent * depth + pattern)
            walk(below, depth + 1)

    walk(spec, 0)
    return "\n".join(out)


# -- assert_no_errors -------------------------------------------------------------------------


def assert_no_errors(events: Iterable[Event]) -> None:
    """Assert nothing failed: no ``error`` event, no call that raised, no task that crashed,
    no query error, no 5xx response, no action/callback error."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    query = _query(events)
    tree = query.tree()
    failures = [event for event in query if is_failure(event)]
    if not failures:
        return
    lines = [f"expected no errors, found {len(failures)}:"]
    for event in failures:
        lines.append(f"  {describe(event)}")
        node = tree.node_of(event)
        if node.opener is not None:
            lines.append(f"    in {_where(node)}")
        detail = _error_detail(event)
        if detail:
            lines.append(f"    {detail}")
    raise AssertionError("\n".join(lines))


def _error_detail(event: Event) -> str:
    data = event.data
    if event.kind == "error":
        traceback = data.get("traceback")
        at = ""
        if isinstance(traceback, list) and traceback and isinstance(traceback[-1], list):
            filename, line, name = (traceback[-1] + [None, None, None])[:3]
            at = f" (at {filename}:{line} in {name})"
        return f"{data.get('type')}: {data.get('message')}{at}"
    if event.kind == "http_request_complete":
        return f"status {data.get('status')}, outcome {data.get('outcome')}"
    if event.kind == "task_exit":
        return f"task raised {data.get('error')}"
    if event.kind == "query_complete":
        return f"query failed with {data.get('error')}"
    return ""


# -- assert_queries ---------------------------------------------------------------------------


def assert_queries(events: Iterable[Event], request: str | None = None,
                   count: int | None = None, *, at_most: int | None = None) -> int:
    """Assert how many database queries ran (the N+1 check).

    With ``request`` (a path like ``"/users/1"``, ``"GET /users/1"`` or a glob), counts the
    ``query_start`` events in the subtree of each matching HTTP request — the request's
    handler, the tasks it spawned — and checks each request: ``count`` exactly, or
    ``at_most``. Fails when no request matches. Without ``request``, counts all queries.
    Returns the count (the largest one, with several requests).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    if count is None and at_most is None:
        raise TypeError("assert_queries needs count= or at_most=")
    tree = _query(events).tree()
    if request is None:
        scopes: list[TreeNode] = [tree]
    else:
        scopes = [node for node in tree.walk()
                  if node.kind == "http_request_start" and node.matches(request)]
        if not scopes:
            seen = [node.short for node in tree.walk() if node.kind == "http_request_start"]
            raise AssertionError(f"no request matching {request!r} was captured; requests: "
                                 + (", ".join(seen) or "none"))
    largest = 0
    for scope in scopes:
        queries = [node for node in scope.walk() if node.kind == "query_start"]
        queries_n = len(queries)
        largest = max(largest, queries_n)
        if (count is None or queries_n == count) and (at_most is None or queries_n <= at_most):
            continue
        wanted = f"{count}" if count is not None else f"at most {at_most}"
        what = "the captured code" if scope is tree else f"request {scope.short!r}"
        lines = [f"{what} issued {queries_n} queries, expected {wanted}"]
        statements: dict[str, int] = {}
        for node in queries:
            statements[node.name] = statements.get(node.name, 0) + 1
        for statement, n in statements.items():
            lines.append(f"  {n} x {statement}")
            if n > 1:
                lines.append("    (the same statement repeated: an N+1 query?)")
        lines += ["tree:", _indent(scope.render(points=False))]
        raise AssertionError("\n".join(lines))
    return largest


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
