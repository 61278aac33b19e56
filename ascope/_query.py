"""Reading captured events: filters, ``only``, deterministic renumbering.

Used by ``ascope.testing`` (``capture()`` and the pytest plugin's ``ascope_events``) and
meant for the read side (the store) too: everything here works on plain ``Event``
sequences, whatever sink they came from. The tree and the naming rules are in
``ascope._tree``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

from ._events import Event, Node
from ._tree import (
    CLOSERS,
    OPENERS,
    Tree,
    TreeNode,
    build_tree,
    function_name,
    match_function,
    point_label,
)

__all__ = [
    "CLOSERS",
    "OPENERS",
    "EventQuery",
    "Events",
    "Tree",
    "TreeNode",
    "build_tree",
    "describe",
    "deterministic",
    "function_name",
    "is_failure",
    "match_function",
]


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- queries ----------------------------------------------------------------------------------

Within = int | Event | TreeNode | str


class EventQuery:
    """Query methods over a sequence of events; subclasses say where the events are."""

    def _all(self) -> Sequence[Event]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> Events: ...
    def __getitem__(self, index: int | slice) -> Event | Events:
        if isinstance(index, slice):
            return Events(self._all()[index])
        return self._all()[index]

    def kinds(self) -> list[str]:
        return [event.kind for event in self._all()]

    def of_kind(self, *kinds: str) -> list[Event]:
        return [event for event in self._all() if event.kind in kinds]

    def tree(self) -> Tree:
        """The call/task/request tree of these events."""
        return build_tree(self._all())

    def render(self, **options: Any) -> str:
        """``tree().render(...)``: the tree as text (see ``TreeNode.render``)."""
        return self.tree().render(**options)

    def filter(self, kind: str | Iterable[str] | None = None, *, function: str | None = None,
               request: str | None = None, within: Within | None = None,
               task: int | None = None, where: Callable[[Event], bool] | None = None,
               **data: Any) -> Events:
        """The events that pass every filter given.

        - ``kind``: an event kind or several;
        - ``function``: events of calls to a matching function (its entry, exit and the
          point events inside it; not nested calls — use ``within`` for those);
        - ``request``: events of the subtree of matching HTTP requests (``"/users/1"``,
          ``"GET /users/*"``);
        - ``within``: the correlation subtree of a node, a correlation id, an event (its
          operation) or a node pattern (every matching node's subtree);
        - ``task``: events of one task id; ``where``: any predicate;
        - other keywords: ``data`` items that must be equal (``status=200``).
        """
        events: Sequence[Event] = self._all()
        if function is not None or request is not None or within is not None:
            tree = build_tree(events)
            if function is not None:
                ids = {node.correlation_id for node in tree.walk()
                       if node.kind == "function_entry" and node.matches(function)}
                events = [e for e in events if e.correlation_id in ids]
            if request is not None:
                roots = [node for node in tree.walk()
                         if node.kind == "http_request_start" and node.matches(request)]
                events = _in_subtrees(events, roots)
            if within is not None:
                events = _in_subtrees(events, _nodes_for(tree, within))
        if kind is not None:
            kinds = {kind} if isinstance(kind, str) else set(kind)
            events = [e for e in events if e.kind in kinds]
        if task is not None:
            events = [e for e in events if e.task_id == task]
        if data:
            events = [e for e in events
                      if all(key in e.data and e.data[key] == value
                             for key, value in data.items())]
        if where is not None:
            events = [e for e in events if where(e)]
        return Events(events)

    def only(self, kind: str | Iterable[str] | None = None, **filters: Any) -> Event:
        """The one event that passes the filters; AssertionError naming what was found
        when there is not exactly one."""
        __tracebackhide__ = True  # pytest shows the caller's line, not ours
        found = self.filter(kind, **filters)
        if len(found) == 1:
            return found[0]
        described = ", ".join(
            [repr(kind)] * (kind is not None) + [f"{k}={v!r}" for k, v in filters.items()])
        lines = [f"expected exactly one event matching {described or 'anything'}, "
                 f"found {len(found)}"]
        shown = found if found else Events(self._all())
        if not found:
            lines.append(f"the {len(shown)} captured events, by kind: {_kind_counts(shown)}")
        for event in list(shown)[:20]:
            lines.append("  " + describe(event))
        if len(shown) > 20:
            lines.append(f"  ... and {len(shown) - 20} more")
        raise AssertionError("\n".join(lines))

    def first(self, kind: str | Iterable[str] | None = None, **filters: Any) -> Event | None:
        found = self.filter(kind, **filters)
        return found[0] if len(found) else None

    def calls(self, function: str | None = None) -> list[TreeNode]:
        """Call nodes (``function_entry``) of matching functions, in call order."""
        return [node for node in self.tree().walk() if node.kind == "function_entry"
                and (function is None or node.matches(function))]

    def requests(self, path: str | None = None) -> list[TreeNode]:
        """HTTP request nodes, matching ``path`` (``"/users/1"``, ``"GET /users/*"``)."""
        return [node for node in self.tree().walk() if node.kind == "http_request_start"
                and (path is None or node.matches(path))]

    def queries(self, request: str | None = None) -> Events:
        """``query_start`` events, of the matching requests' subtrees if ``request`` is given."""
        return self.filter("query_start", request=request)

    def errors(self) -> Events:
        """Events that record a failure (see ``is_failure``)."""
        return Events([event for event in self._all() if is_failure(event)])

    def deterministic(self) -> Events:
        """These events with ids, task ids and timestamps renumbered (see ``deterministic``)."""
        return Events(deterministic(self._all()))


class Events(EventQuery):
    """An immutable, queryable sequence of events (what filters return)."""

    __slots__ = ("_events",)

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events = tuple(events)

    def _all(self) -> Sequence[Event]:
        return self._events

    @property
    def events(self) -> list[Event]:
        return list(self._events)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventQuery):
            return list(self._events) == list(other._all())
        if isinstance(other, (list, tuple)):
            return list(self._events) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Events({len(self._events)} events: {_kind_counts(self._events)})"


def _by_time(event: Event) -> int:
    return event.ts_ns


def _kind_counts(events: Iterable[Event]) -> str:
    counts: dict[str, int] = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    return ", ".join(f"{kind} x{n}" for kind, n in counts.items()) or "none"


def _nodes_for(tree: Tree, within: Within) -> list[TreeNode]:
    if isinstance(within, TreeNode):
        node = tree.node(within.correlation_id) if within.correlation_id is not None else None
        return [node or within]
    if isinstance(within, Event):
        return [tree.node_of(within)]
    if isinstance(within, str):
        return tree.find(within)
    node = tree.node(within)
    return [node] if node is not None else []


def _in_subtrees(events: Sequence[Event], roots: Iterable[TreeNode]) -> list[Event]:
    keep = {id(event) for root in roots for event in root.all_events()}
    return [event for event in events if id(event) in keep]


def is_failure(event: Event) -> bool:
    """Whether an event records a failure: an error, a raising call, a crashed task, a 5xx..."""
    kind, data = event.kind, event.data
    if kind in ("error", "action_error", "service_callback_error", "live_callback_error"):
        return True
    if kind in ("function_exit", "endpoint_exit"):
        return data.get("outcome") == "raise"
    if kind == "task_exit":
        return data.get("outcome") == "exception"
    if kind == "query_complete":
        return data.get("error") is not None
    if kind == "http_request_complete":
        status = data.get("status")
        return (isinstance(status, int) and status >= 500) or data.get("outcome") == "error"
    return False


def describe(event: Event) -> str:
    """One line naming an event for failure messages."""
    if event.kind == "function_entry":
        what = function_name(event.data)
    elif event.kind in OPENERS:
        what = TreeNode(event).name
    else:
        what = point_label(event) if event.kind not in CLOSERS else _short(dict(event.data), 60)
    return f"{event.kind} {what} (correlation_id={event.correlation_id})"


# -- deterministic mode -----------------------------------------------------------------------

DETERMINISTIC_NODE = Node("test", 0, 0)


def deterministic(events: Iterable[Event]) -> list[Event]:
    """Renumber what changes from run to run, so a rendering can be stored and compared.

    Correlation ids (also as parent ids), task ids (also ``task_spawn``'s
    ``child_task_id``) and trace ids are renumbered 1, 2, 3... by first appearance in time
    order; ``ts_ns`` and ``wall_ns`` become the event's position (0, 1, 2...); durations
    (``*duration_ns`` data keys) become 0; the node becomes ``Node("test", 0, 0)``.
    """
    ordered = sorted(events, key=_by_time)
    ids: dict[int, int] = {}
    tasks: dict[Any, int] = {}
    traces: dict[str, str] = {}

    def renumber(table: dict[Any, Any], value: Any, make: Callable[[int], Any]) -> Any:
        if value is None:
            return None
        if value not in table:
            table[value] = make(len(table) + 1)
        return table[value]

    out: list[Event] = []
    for position, event in enumerate(ordered):
        data = dict(event.data)
        for key in data:
            if key.endswith("duration_ns") and data[key] is not None:
                data[key] = 0
        if event.kind == "task_spawn" and data.get("child_task_id") is not None:
            data["child_task_id"] = renumber(tasks, data["child_task_id"], int)
        out.append(Event(
            event.kind, position, position,
            renumber(ids, event.correlation_id, int),
            renumber(ids, event.parent_id, int),
            renumber(tasks, event.task_id, int),
            renumber(traces, event.trace_id, lambda n: f"trace-{n}"),
            DETERMINISTIC_NODE,
            data,
        ))
    return out
