"""The operation tree of captured events, and the names patterns match.

Used by ``ascope._query`` and ``ascope.testing``, and meant for the read side (the store)
too: ``build_tree`` works on plain ``Event`` sequences, whatever sink they came from.

The tree
--------
Every operation has a correlation id. Its *opener* (``function_entry``, ``task_spawn``,
``http_request_start``, ``query_start``...) carries that id and, as ``parent_id``, the id
that was current when it started: the caller, the spawning task, the enclosing request.
A ``TreeNode`` is one operation: its opener, its closer (``function_exit``,
``task_exit``...), the point events that belong to it (``error``, ``branch_execution``...)
and its child operations. Events whose correlation id has no opener among the events
(the test's own frame, an operation opened before capture started) belong to the node of
their ``parent_id`` when that is known, else to the root.

Names and patterns
------------------
A function is named ``"module:qualname"`` (``"app.db:fetch_user"``,
``"app.views:UserView.get"``). A pattern matches it when it is

- ``"module:qualname"`` exactly, or with ``*``/``?`` wildcards on either side
  (``"app.db:*"``, ``"app.*:fetch_user"``);
- a bare qualname (``"fetch_user"``, ``"UserView.get"``), matching any module, also as the
  last dotted part of the qualname (``"get"`` matches ``"UserView.get"``);
- the dotted full name (``"app.db.fetch_user"``).

Endpoints (``endpoint_entry``, named with dots by the ASGI middleware, e.g.
``"app.views.get_user"``) match the same patterns: ``"app.views:get_user"`` names both
the endpoint and the call of ``get_user`` inside it.

Other nodes match by their name (a request's ``"GET /users/1"`` or its path ``"/users/1"``,
a task's coroutine qualname, a query's statement) or by their rendered label
(``"task worker"``, ``"GET /users/1 -> 200"``), with the same wildcards.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from typing import Any

from ._events import Event

__all__ = [
    "CLOSERS",
    "OPENERS",
    "Tree",
    "TreeNode",
    "build_tree",
    "function_name",
    "match_function",
    "point_label",
]

# opener kind -> the kind that closes it
OPENERS: dict[str, str] = {
    "function_entry": "function_exit",
    "task_spawn": "task_exit",
    "http_request_start": "http_request_complete",
    "http_client_start": "http_client_complete",
    "endpoint_entry": "endpoint_exit",
    "action_start": "action_complete",
    "channel_join_start": "channel_join_complete",
    "channel_message_start": "channel_message_complete",
    "live_mount_start": "live_mount_complete",
    "live_event_start": "live_event_complete",
    "query_start": "query_complete",
    "service_callback_start": "service_callback_complete",
}
CLOSERS = frozenset(OPENERS.values())

# Point events left out of a rendered tree unless asked for: one per executed line.
_QUIET_POINTS = frozenset({"line_execution", "correlation_performance"})
_WILDCARDS = re.compile(r"[*?\[]")
_DEFAULT_TASK_NAME = re.compile(r"Task-\d+")


# -- names ------------------------------------------------------------------------------------


def function_name(data: Any) -> str:
    """``"module:qualname"`` of a ``function_entry``'s data."""
    module = str(data.get("module") or "")
    function = str(data.get("function") or "")
    # A callable given to report_function_entry is recorded as "module.qualname".
    if module and function.startswith(module + "."):
        function = function[len(module) + 1:]
    return f"{module}:{function}" if module else function


def match_function(pattern: str, name: str) -> bool:
    """Whether function pattern ``pattern`` matches ``"module:qualname"`` ``name``."""
    module, _, qualname = name.rpartition(":")
    if ":" in pattern:
        want_module, _, want_qualname = pattern.rpartition(":")
        return fnmatchcase(module, want_module) and fnmatchcase(qualname, want_qualname)
    if fnmatchcase(qualname, pattern) or fnmatchcase(qualname.rpartition(".")[2], pattern):
        return True
    return bool(module) and fnmatchcase(f"{module}.{qualname}", pattern)


def _match_dotted(pattern: str, dotted: str) -> bool:
    """A function pattern against a dotted name (``app.views.get_user``: an endpoint)."""
    if ":" in pattern:
        return fnmatchcase(dotted, pattern.replace(":", "."))
    return fnmatchcase(dotted, pattern) or fnmatchcase(dotted.rpartition(".")[2], pattern)


def _match_text(pattern: str, text: str) -> bool:
    return pattern == text or (_WILDCARDS.search(pattern) is not None
                               and fnmatchcase(text, pattern))


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the tree ---------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class TreeNode:
    """One operation (a call, a task, a request, a query...) and what happened inside it."""

    opener: Event | None  # None for the root
    closer: Event | None = None
    events: list[Event] = dataclasses.field(default_factory=list)  # this operation's own
    children: list[TreeNode] = dataclasses.field(default_factory=list)
    parent: TreeNode | None = dataclasses.field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "root" if self.opener is None else self.opener.kind

    @property
    def correlation_id(self) -> int | None:
        return None if self.opener is None else self.opener.correlation_id

    @property
    def name(self) -> str:
        """What patterns match: ``module:qualname``, ``GET /path``, a task's coroutine..."""
        opener = self.opener
        if opener is None:
            return ""
        data, kind = opener.data, opener.kind
        if kind == "function_entry":
            return function_name(data)
        if kind == "task_spawn":
            return str(data.get("coroutine") or "")
        if kind == "http_request_start":
            return f"{data.get('method')} {data.get('path')}"
        if kind == "http_client_start":
            return f"{data.get('method')} {data.get('url')}"
        if kind == "query_start":
            return _short(data.get("statement"), 10_000)
        if kind == "endpoint_entry":
            action = data.get("action")
            return f"{data.get('endpoint')}" + (f".{action}" if action else "")
        if kind == "service_callback_start":
            return f"{data.get('service')}.{data.get('callback')}"
        if kind == "action_start":
            return f"{data.get('endpoint')}.{data.get('action')}"
        if kind in ("channel_join_start", "channel_message_start"):
            event = data.get("event")
            return f"{data.get('path')}" + (f" {event}" if event is not None else "")
        if kind in ("live_mount_start", "live_event_start"):
            event = data.get("event")
            return f"{data.get('view')}" + (f" {event}" if event is not None else "")
        return kind

    @property
    def label(self) -> str:
        """One readable line: what the operation was and how it ended."""
        kind = self.kind
        if kind == "root":
            return "<root>"
        closer = self.closer.data if self.closer is not None else None
        prefix = _LABEL_PREFIX.get(kind, kind)
        text = f"{prefix} {self.name}" if prefix else self.name
        if kind == "task_spawn" and self.opener is not None:
            # The spawn's name=, else the name the task ended with (before 3.13 a name
            # given to create_task reaches only the exit).
            task_name = self.opener.data.get("name") or (closer or {}).get("name")
            if task_name and not _DEFAULT_TASK_NAME.fullmatch(str(task_name)):
                text += f" [{task_name}]"
        if kind == "query_start":
            text = f"query {_short(self.name)}"
        if closer is None:
            return text + " (not finished)"
        return text + _outcome_suffix(kind, closer)

    @property
    def short(self) -> str:
        """The label without how it ended, and calls as bare ``module:qualname``."""
        kind = self.kind
        if kind == "root":
            return "<root>"
        if kind == "function_entry":
            return self.name
        if kind == "query_start":
            return f"query {_short(self.name)}"
        prefix = _LABEL_PREFIX.get(kind, kind)
        return f"{prefix} {self.name}" if prefix else self.name

    @property
    def outcome(self) -> str | None:
        """How the operation ended (``return``, ``raise``, ``cancelled``, a status...)."""
        if self.closer is None:
            return None
        data = self.closer.data
        for key in ("status", "outcome"):
            if data.get(key) is not None:
                return str(data[key])
        return None

    @property
    def task_id(self) -> int | None:
        return None if self.opener is None else self.opener.task_id

    def matches(self, pattern: str) -> bool:
        """Whether ``pattern`` names this node (see the module docstring)."""
        if self.opener is None:
            return False
        if self.kind == "function_entry" and match_function(pattern, self.name):
            return True
        if self.kind == "http_request_start" and _match_text(
                pattern, str(self.opener.data.get("path"))):
            return True
        if self.kind == "endpoint_entry" and _match_dotted(pattern, self.name):
            return True
        return (_match_text(pattern, self.name) or _match_text(pattern, self.short)
                or _match_text(pattern, self.label))

    def walk(self) -> Iterator[TreeNode]:
        """This node and every node below it, depth first, in order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def all_events(self) -> list[Event]:
        """The events of this node's whole subtree, in time order."""
        found = [event for node in self.walk() for event in node.events]
        found.sort(key=_by_time)
        return found

    def ancestors(self) -> Iterator[TreeNode]:
        """The nodes above this one, nearest first (the root excluded)."""
        node = self.parent
        while node is not None and node.opener is not None:
            yield node
            node = node.parent

    def find(self, pattern: str) -> list[TreeNode]:
        """Nodes below this one (this one included) that ``pattern`` names."""
        return [node for node in self.walk() if node.matches(pattern)]

    def render(self, *, points: bool = True, lines: bool = False, ids: bool = False,
               short: bool = False, indent: str = "  ") -> str:
        """The subtree as indented text, one operation (or point event) per line.

        ``points``: show point events (errors, branches, messages...); ``lines``: also
        ``line_execution``; ``ids``: append ``#correlation_id`` (stable in deterministic
        mode); ``short``: names only, as ``assert_tree`` specs are written.
        """
        out: list[str] = []
        self._render(out, 0, (points, lines, ids, short), indent)
        return "\n".join(out)

    def _render(self, out: list[str], depth: int, options: tuple[bool, bool, bool, bool],
                indent: str) -> None:
        points, lines, ids, short = options
        child_depth = depth
        if self.opener is not None:
            label = (self.short if short else self.label) + (
                f" #{self.correlation_id}" if ids else "")
            out.append(indent * depth + label)
            child_depth = depth + 1
        # Children and point events interleaved in time order.
        items: list[tuple[int, int, Any]] = [(child.opener.ts_ns if child.opener else 0, 1, child)
                                             for child in self.children]
        if points:
            items += [(event.ts_ns, 0, event) for event in self.events
                      if event is not self.opener and event is not self.closer
                      and event.kind not in CLOSERS and event.kind not in OPENERS
                      and (lines or event.kind not in _QUIET_POINTS)]
        items.sort(key=lambda item: (item[0], item[1]))
        for _, is_node, item in items:
            if is_node:
                item._render(out, child_depth, options, indent)
            else:
                out.append(indent * child_depth + "- " + point_label(item))

    def __str__(self) -> str:
        return self.render()


_LABEL_PREFIX = {
    "function_entry": "call",
    "task_spawn": "task",
    "http_request_start": "",
    "http_client_start": "http",
    "endpoint_entry": "endpoint",
    "action_start": "action",
    "channel_join_start": "join",
    "channel_message_start": "message",
    "live_mount_start": "mount",
    "live_event_start": "live",
    "query_start": "query",
    "service_callback_start": "service",
}


def _outcome_suffix(kind: str, closer: Any) -> str:
    if kind == "http_request_start":
        return f" -> {closer.get('status')}"
    if kind == "http_client_start":
        error = closer.get("error")
        return f" -> error {error}" if error else f" -> {closer.get('status')}"
    if kind == "task_spawn":
        outcome = closer.get("outcome")
        if outcome == "exception":
            return f" -> exception {closer.get('error')}"
        return "" if outcome == "result" else f" -> {outcome}"
    if kind == "query_start":
        if closer.get("error"):
            return f" -> error {closer.get('error')}"
        rows = closer.get("rows")
        return f" -> {rows} rows" if isinstance(rows, int) else ""
    outcome = closer.get("outcome")
    return "" if outcome in (None, "return", "complete") else f" -> {outcome}"


def point_label(event: Event) -> str:
    """One short line for a point event (an error, a branch, a message...)."""
    data, kind = event.data, event.kind
    if kind == "error":
        return f"error {data.get('type')}: {_short(data.get('message'))}"
    if kind == "branch_execution":
        return (f"branch {data.get('branch_type')} {_short(data.get('condition'), 40)} "
                f"-> {data.get('branch_taken')}")
    if kind == "pattern_match":
        return f"match {_short(data.get('pattern'), 40)} -> {data.get('matched')}"
    if kind == "message_send":
        return f"send -> {data.get('target')}"
    if kind == "state_change":
        return f"state {data.get('target')}"
    if kind == "variable_snapshot":
        names = data.get("variables")
        return "vars " + (", ".join(sorted(map(str, names))) if isinstance(names, dict)
                          else _short(names, 40))
    if kind == "expression_value":
        return f"expr {_short(data.get('expression'), 40)} = {_short(data.get('value'), 40)}"
    if kind == "loop_iteration":
        return f"loop {data.get('loop_type')} #{data.get('iteration')}"
    if kind == "line_execution":
        return f"line {data.get('line')}"
    return kind


@dataclasses.dataclass(eq=False)
class Tree(TreeNode):
    """The root of a rebuilt tree: its children are the top-level operations."""

    by_id: dict[int, TreeNode] = dataclasses.field(default_factory=dict, repr=False)

    def node(self, correlation_id: int) -> TreeNode | None:
        return self.by_id.get(correlation_id)

    def node_of(self, event: Event) -> TreeNode:
        """The node an event belongs to (the root when it belongs to none)."""
        if event.correlation_id is not None and event.correlation_id in self.by_id:
            return self.by_id[event.correlation_id]
        if event.parent_id is not None and event.parent_id in self.by_id:
            return self.by_id[event.parent_id]
        return self


def build_tree(events: Iterable[Event]) -> Tree:
    """Rebuild the operation tree of ``events`` (see the module docstring)."""
    ordered = sorted(events, key=_by_time)
    root = Tree(None)
    by_id = root.by_id
    for event in ordered:  # openers first: a child may be seen before its parent's events
        cid = event.correlation_id
        if event.kind in OPENERS and cid is not None and cid not in by_id:
            by_id[cid] = TreeNode(event)
    for node in by_id.values():
        assert node.opener is not None
        parent = by_id.get(node.opener.parent_id) if node.opener.parent_id is not None else None
        if parent is None or parent is node:
            parent = root
        node.parent = parent
        parent.children.append(node)
    for event in ordered:
        owner = root.node_of(event)
        owner.events.append(event)
        # The last closer: a generator's life is one operation in segments, each yield
        # closing one (outcome "yield") until the final return/raise/close.
        if owner.opener is not None and event.kind == OPENERS.get(owner.opener.kind):
            owner.closer = event
    return root


def _by_time(event: Event) -> int:
    return event.ts_ns
