"""What AST-instrumented code calls at run time (see docs/ast.md).

The rewriter (``_ast_rewrite.py``) injects calls to the functions built here. They reach
the injected code as closure cells (``LOAD_DEREF``, as fast as a local), never through
the user's module globals, which stay untouched.

Plain reports (a line ran, a branch was taken, names were bound, a loop iterated) call
the ``ascope.runtime`` functions directly, behind a ``if _ascope__rec:`` test on a local
of the instrumented function; the helpers here are for what needs a little logic: loop
bounds, values that pass through (``return`` values, walrus, chosen expressions),
conditional-expression arms, ``match`` outcomes and comprehensions. None of them calls
user code (no ``bool()``, ``len()`` of user types, ``repr``... outside ascope's guarded
capture), so an exception can never come out of a helper frame.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable
from types import CellType
from typing import Any

from .. import _context as _c
from .. import runtime as _rt

__all__ = ["make_helpers"]

logger = logging.getLogger("ascope")

_STATE = _c.STATE
_branch = _rt.report_ast_branch_execution
_iteration = _rt.report_ast_loop_iteration
_expression = _rt.report_expression_value
_snapshot = _rt.report_variable_snapshot
_match = _rt.report_ast_pattern_match
_deque = collections.deque

# Built-in containers whose len() is exact, cheap and runs no user code: a loop over one
# knows its last iterations before it starts, so they are recorded in full as they run.
_SIZED = frozenset({list, tuple, range, dict, set, frozenset, str, bytes, bytearray,
                    type({}.keys()), type({}.values()), type({}.items()), collections.deque})

# Node map events carry at most this many nodes each, so the value bounds
# (``ValueLimits.max_length``/``max_items``) never cut one short.
NODES_PER_MAP_EVENT = 16

# The "node map not sent yet" flag of every rewritten function: a forked child is a new
# process whose store may not have the maps, so it sends each one again.
_MAP_FLAGS: list[CellType] = []


def _resend_maps_after_fork() -> None:
    for flag in _MAP_FLAGS:
        flag.cell_contents = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_resend_maps_after_fork)

# Fields of a comprehension clause's run state (a list, mutated in place per iteration).
_N, _REC, _LO, _HI, _TAIL, _PARENT, _NID, _LINE, _TYPE, _NAMES = range(10)


def make_helpers(loop_head: int, loop_tail: int, node_map: list[dict[str, Any]],
                 describe: dict[str, Any]) -> dict[str, Any]:
    """The names injected code reads (without their ``_ascope__`` prefix) -> objects.

    ``node_map`` rows are sent once per process, on the first call with capture on,
    as ``ast_node_map`` events (``describe`` gives the module/qualname/file keys).
    """
    head, tail = loop_head, loop_tail
    need_map = CellType(True)
    _MAP_FLAGS.append(need_map)

    def emit_map() -> None:
        if not _rt.enabled():
            return
        need_map.cell_contents = False
        chunks = [node_map[i:i + NODES_PER_MAP_EVENT]
                  for i in range(0, len(node_map), NODES_PER_MAP_EVENT)] or [[]]
        for index, rows in enumerate(chunks):
            _rt.report_event("ast_node_map", {**describe, "chunk": index,
                                              "chunks": len(chunks), "nodes": rows})

    def bounds(iterable: Any) -> tuple[int, int]:
        """``(lo, hi)``: iterations ``lo < n <= hi`` are the loop's last ones."""
        if type(iterable) in _SIZED:
            total = len(iterable)
            return total - tail, total
        return 0, 0

    def keep(queue: Any, iteration: int, value: Any) -> Any:
        """Remember a skipped iteration's value: the last ``tail`` are reported at the end."""
        if queue is None:
            queue = _deque(maxlen=tail)
        queue.append((iteration, value))
        return queue

    def skipped_count(iterations: int, lo: int, hi: int) -> int:
        recorded = min(iterations, head)
        if hi:
            recorded += max(0, min(iterations, hi) - max(lo, head))
        return iterations - recorded

    def end(node_id: str, line: int, loop_type: str, iterations: int, lo: int, hi: int,
            queue: Any) -> None:
        """A loop run ended: report how many iterations were not recorded (if any)."""
        try:
            skipped = skipped_count(iterations, lo, hi)
            if skipped <= 0:
                return
            value: dict[str, Any] = {"skipped": skipped}
            if queue:
                value["tail"] = [list(item) for item in queue]
                value["skipped"] = skipped - len(queue)
            _iteration(None, loop_type + "_skipped", iterations, value, line, node_id)
        except Exception:  # pragma: no cover - defensive: never raise into user code
            _rt_internal_error()

    def passthrough(rec: Any, node_id: str, line: int, source: str, value: Any) -> Any:
        """A value the user picked (or a ``return`` value): reported, then handed back."""
        if rec and _STATE.on:
            _expression(None, source, value, line, "ast", node_id)
        return value

    def walrus(rec: Any, node_id: str, line: int, name: str, value: Any) -> Any:
        if rec and _STATE.on:
            _snapshot(None, {name: value}, line, "ast", node_id)
        return value

    def arm_true(node_id: str, line: int, condition: str) -> bool:
        _branch(None, "ifexp", condition, True, line, node_id)
        return True

    def arm_false(node_id: str, line: int, condition: str) -> bool:
        _branch(None, "ifexp", condition, False, line, node_id)
        return False

    def cases(table: tuple[tuple[str, int, str, bool], ...], taken: int, guarded: int,
              subject: Any, bindings: Any) -> None:
        """Report the ``case`` clauses a match tried, in order.

        ``table`` rows are (node id, line, pattern source, has guard); clauses before
        ``taken`` failed (a set bit in ``guarded`` says its pattern matched but its guard
        was false); ``taken`` (-1: none) matched with ``bindings``.
        """
        if not _STATE.on:
            return
        last = taken if taken >= 0 else len(table)
        for index in range(last):
            node_id, line, pattern, _ = table[index]
            note = ({"$guard": False} if guarded & (1 << index) else None)
            _match(None, pattern, subject, False, line, node_id, note)
        if taken >= 0:
            node_id, line, pattern, _ = table[taken]
            _match(None, pattern, subject, True, line, node_id, bindings)

    def comp_begin(states: list[Any], slot: int, parent_rec: Any, iterable: Any,
                   node_id: str, line: int, loop_type: str, names: tuple[str, ...]) -> Any:
        """A comprehension clause starts a run over ``iterable`` (returned as it is)."""
        old = states[slot]
        if old is not None:
            comp_finish(old)
        lo, hi = bounds(iterable) if parent_rec else (0, 0)
        states[slot] = [0, bool(parent_rec), lo, hi, None, bool(parent_rec), node_id, line,
                        loop_type, names]
        return iterable

    def comp_tick(state: list[Any], *values: Any) -> bool:
        """One iteration of a comprehension clause; always True (it is an ``if`` clause)."""
        if not state[_PARENT]:
            return True
        n = state[_N] = state[_N] + 1
        if n <= head or state[_LO] < n <= state[_HI]:
            state[_REC] = True
            if _STATE.on:
                _iteration(None, state[_TYPE], n, _loop_value(state[_NAMES], values),
                           state[_LINE], state[_NID])
        else:
            state[_REC] = False
            if tail and not state[_HI]:
                state[_TAIL] = keep(state[_TAIL], n, _loop_value(state[_NAMES], values))
        return True

    def comp_finish(state: list[Any]) -> None:
        if state[_PARENT]:
            state[_PARENT] = False
            end(state[_NID], state[_LINE], state[_TYPE], state[_N], state[_LO], state[_HI],
                state[_TAIL])

    def comp_end(states: list[Any], slots: tuple[int, ...], value: Any) -> Any:
        """A list/set/dict comprehension finished: report its clauses' skipped counts."""
        for slot in slots:
            state = states[slot]
            if state is not None:
                states[slot] = None
                comp_finish(state)
        return value

    return {
        "S": _STATE, "L": _rt.report_line_execution, "B": _branch, "V": _snapshot,
        "E": _expression,
        "I": _iteration, "need_map": need_map, "map": emit_map, "bounds": bounds,
        "keep": keep, "end": end, "X": passthrough, "W": walrus, "T": arm_true,
        "F": arm_false, "M": cases, "cb": comp_begin, "ct": comp_tick, "ce": comp_end,
    }


def _loop_value(names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    if len(names) == 1:
        return values[0]
    return dict(zip(names, values, strict=False))


def _rt_internal_error() -> None:  # pragma: no cover - defensive
    _c.STATE.internal_errors += 1
    logger.debug("ascope: an AST helper failed", exc_info=True)


HelperFactory = Callable[..., dict[str, Any]]
