"""The AST transformation behind ``instrument(ast=True)`` (see docs/ast.md).

``Instrumenter.function`` rewrites one ``def`` node in place: every statement gets a
``line_execution`` report before it, assignments a ``variable_snapshot`` after them,
``if``/``while``/``try`` arms a ``branch_execution``, loops and comprehensions
``loop_iteration``s (bounded: first ``head`` and last ``tail`` iterations of each run),
``match`` statements ``pattern_match``es, and ``return`` values and chosen expressions an
``expression_value``.

Every statement-level report sits behind ``if _ascope__rec:``, a test of a local: the
function sets ``_ascope__rec`` from the global capture switch when it starts, a loop
clears it for the iterations it does not record and sets it back when the run ends.
Injected names start with ``_ascope__`` (one leading underscore: never name-mangled in
a class body); the helpers they call come from closure cells (``_ast_support``).

What is never changed: the order and number of evaluations of user expressions, which
objects are bound, returned or raised, and where: helpers get values that were already
computed and hand them back unchanged; truth values are computed by the instrumented
code itself (an ``if``'s arms report which one runs, they do not re-test).
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from typing import Any

from ._ast_nodes import NodeTable

__all__ = ["PREFIX", "Instrumenter"]

PREFIX = "_ascope__"
REC = PREFIX + "rec"
CS = PREFIX + "cs"

_COMPREHENSION_TYPES = {ast.ListComp: "listcomp", ast.SetComp: "setcomp",
                        ast.DictComp: "dictcomp", ast.GeneratorExp: "genexp"}


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _store(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Store())


def _helper(name: str) -> ast.Name:
    return _load(PREFIX + name)


def _const(value: Any) -> ast.Constant:
    return ast.Constant(value=value)


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_helper(helper), args=list(args), keywords=[])


def _assign(name: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[_store(name)], value=value, lineno=0)


def _expr_stmt(value: ast.expr) -> ast.Expr:
    return ast.Expr(value=value)


def _located(nodes: list[ast.stmt], where: ast.AST) -> list[ast.stmt]:
    for node in nodes:
        ast.copy_location(node, where)
    return nodes


def bound_names(target: ast.AST | None) -> list[str]:
    """Names an assignment target binds, in order (attributes and subscripts bind none)."""
    names: list[str] = []
    stack = [target]
    while stack:
        node = stack.pop(0)
        if isinstance(node, ast.Name):
            if node.id not in names:
                names.append(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            stack[:0] = node.elts
        elif isinstance(node, ast.Starred):
            stack.insert(0, node.value)
    return names


def pattern_names(pattern: ast.pattern) -> list[str]:
    names: list[str] = []
    for node in ast.walk(pattern):
        name = None
        if isinstance(node, (ast.MatchAs, ast.MatchStar)):
            name = node.name
        elif isinstance(node, ast.MatchMapping):
            name = node.rest
        if name is not None and name not in names:
            names.append(name)
    return names


def _irrefutable(pattern: ast.pattern) -> bool:
    if isinstance(pattern, ast.MatchAs):
        return pattern.pattern is None or _irrefutable(pattern.pattern)
    if isinstance(pattern, ast.MatchOr):
        return any(_irrefutable(p) for p in pattern.patterns)
    return False


@dataclass(slots=True)
class _Scope:
    """One function being instrumented (the top one or a nested ``def``)."""

    qualname: str
    def_line: int
    comprehension_slots: int = 0


@dataclass(slots=True)
class _Ctx:
    """Where an expression is evaluated: the function's own frame, or inside the
    comprehension clause ``slot`` (whose own recording flag then applies)."""

    scope: _Scope
    slot: int | None = None

    def rec(self) -> ast.expr:
        if self.slot is None:
            return _load(REC)
        state = ast.Subscript(value=_load(CS), slice=_const(self.slot), ctx=ast.Load())
        return ast.Subscript(value=state, slice=_const(1), ctx=ast.Load())


@dataclass(slots=True)
class Instrumenter:
    table: NodeTable
    expressions: list[ast.expr]  # parsed picks; matched structurally
    loop_head: int
    loop_tail: int
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def _next(self) -> int:
        return next(self._counter)

    # -- functions -----------------------------------------------------------------------

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str,
                 top: bool) -> None:
        """Rewrite ``node``'s body in place (not its decorators, defaults or annotations)."""
        scope = _Scope(qualname, node.lineno)
        ctx = _Ctx(scope)
        body = node.body
        docstring: list[ast.stmt] = []
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            docstring, body = body[:1], body[1:]
        new_body = self.statements(body, ctx)
        # The capture switch is read once per call; loops clear and restore the local.
        prelude: list[ast.stmt] = [_assign(REC, ast.Attribute(
            value=_helper("S"), attr="on", ctx=ast.Load()))]
        if top:
            prelude.append(ast.If(
                test=ast.BoolOp(op=ast.And(), values=[_load(REC), _helper("need_map")]),
                body=[_expr_stmt(_call("map"))], orelse=[]))
        if scope.comprehension_slots:
            prelude.append(_assign(CS, ast.BinOp(
                left=ast.List(elts=[_const(None)], ctx=ast.Load()), op=ast.Mult(),
                right=_const(scope.comprehension_slots))))
        _located(prelude, body[0] if body else node)
        node.body = docstring + prelude + new_body

    # -- statements ----------------------------------------------------------------------

    def statements(self, body: list[ast.stmt], ctx: _Ctx) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for statement in body:
            out.extend(self.statement(statement, ctx))
        return out

    def statement(self, node: ast.stmt, ctx: _Ctx) -> list[ast.stmt]:
        node_id = self._ref(node, ctx)
        report = self._guard(ctx, node, _call("L", _const(None), _const(node.lineno),
                                                _const(None), _const("ast"), node_id))
        handler = getattr(self, "_" + type(node).__name__, None)
        rewritten = handler(node, ctx) if handler is not None else self._simple(node, ctx)
        return [report, *rewritten]

    def _guard(self, ctx: _Ctx, where: ast.AST, *calls: ast.expr) -> ast.stmt:
        statement = ast.If(test=ctx.rec(), body=[_expr_stmt(c) for c in calls], orelse=[])
        return _located([statement], where)[0]

    def _snapshot(self, ctx: _Ctx, node: ast.AST, names: list[str],
                  node_id: ast.expr | None = None) -> list[ast.stmt]:
        if not names:
            return []
        variables = ast.Dict(keys=[_const(n) for n in names], values=[_load(n) for n in names])
        return [self._guard(ctx, node, _call(
            "V", _const(None), variables, _const(node.lineno),  # type: ignore[attr-defined]
            _const("ast"), node_id or self._ref(node, ctx)))]

    def _branch(self, ctx: _Ctx, node: ast.AST, branch_type: str, condition: str,
                taken: Any, node_id: ast.expr | None = None) -> ast.stmt:
        return self._guard(ctx, node, _call(
            "B", _const(None), _const(branch_type), _const(condition), _const(taken),
            _const(node.lineno), node_id or self._ref(node, ctx)))  # type: ignore[attr-defined]

    def _ref(self, node: ast.AST, ctx: _Ctx, node_type: str | None = None,
             position: ast.AST | None = None) -> ast.Constant:
        return self.table.ref(node, ctx.scope.qualname, ctx.scope.def_line,
                              node_type=node_type, position=position)

    def expr(self, node: ast.expr, ctx: _Ctx) -> ast.expr:
        result = _Expressions(self, ctx).visit(node)
        assert isinstance(result, ast.expr)
        return result

    def _opt(self, node: ast.expr | None, ctx: _Ctx) -> ast.expr | None:
        return None if node is None else self.expr(node, ctx)

    def _simple(self, node: ast.stmt, ctx: _Ctx) -> list[ast.stmt]:
        """Statements without a body: rewrite the expressions in them."""
        for name, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(node, name, self.expr(value, ctx))
            elif isinstance(value, list):
                value[:] = [self.expr(v, ctx) if isinstance(v, ast.expr) else v for v in value]
        return [node]

    def _Assign(self, node: ast.Assign, ctx: _Ctx) -> list[ast.stmt]:
        self._simple(node, ctx)
        names: list[str] = []
        for target in node.targets:
            names += [n for n in bound_names(target) if n not in names]
        return [node, *self._snapshot(ctx, node, names)]

    def _AugAssign(self, node: ast.AugAssign, ctx: _Ctx) -> list[ast.stmt]:
        self._simple(node, ctx)
        return [node, *self._snapshot(ctx, node, bound_names(node.target))]

    def _AnnAssign(self, node: ast.AnnAssign, ctx: _Ctx) -> list[ast.stmt]:
        # The annotation is left alone: inside a function it is never evaluated.
        if not isinstance(node.target, ast.Name):
            node.target = self.expr(node.target, ctx)  # type: ignore[assignment]
        if node.value is None:
            return [node]
        node.value = self.expr(node.value, ctx)
        return [node, *self._snapshot(ctx, node, bound_names(node.target))]

    def _Return(self, node: ast.Return, ctx: _Ctx) -> list[ast.stmt]:
        if node.value is None:
            return [node]
        # `return v` -> `tmp = v; if rec: report(tmp); return tmp`: the value is computed
        # once, where it was, and no helper call is paid when nothing is recorded.
        source = self.table.source_of(node.value)
        temporary = f"{PREFIX}ret{self._next()}"
        compute = _assign(temporary, self.expr(node.value, ctx))
        report = self._guard(ctx, node, _call(
            "E", _const(None), _const(source), _load(temporary), _const(node.lineno),
            _const("ast"), self._ref(node, ctx)))
        node.value = _load(temporary)
        return [*_located([compute], node), report, node]

    def _ClassDef(self, node: ast.ClassDef, ctx: _Ctx) -> list[ast.stmt]:
        return [node]  # a nested class body is not instrumented (docs/ast.md, limits)

    def _FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef,
                     ctx: _Ctx) -> list[ast.stmt]:
        node.decorator_list = [self.expr(d, ctx) for d in node.decorator_list]
        args = node.args
        args.defaults = [self.expr(d, ctx) for d in args.defaults]
        args.kw_defaults = [self._opt(d, ctx) for d in args.kw_defaults]
        self.function(node, f"{ctx.scope.qualname}.<locals>.{node.name}", top=False)
        return [node]

    _AsyncFunctionDef = _FunctionDef

    def _If(self, node: ast.If, ctx: _Ctx) -> list[ast.stmt]:
        branch_type = "elif" if self._is_elif(node) else "if"
        condition = self.table.source_of(node.test)
        node.test = self.expr(node.test, ctx)
        node_id = self._ref(node, ctx)
        node.body = [self._branch(ctx, node, branch_type, condition, True, node_id),
                     *self.statements(node.body, ctx)]
        node.orelse = [self._branch(ctx, node, branch_type, condition, False, node_id),
                       *self.statements(node.orelse, ctx)]
        return [node]

    def _is_elif(self, node: ast.If) -> bool:
        text = self.table.source_line(node.lineno)
        return text.encode()[node.col_offset:].startswith(b"elif")

    def _With(self, node: ast.With | ast.AsyncWith, ctx: _Ctx) -> list[ast.stmt]:
        names: list[str] = []
        for item in node.items:
            item.context_expr = self.expr(item.context_expr, ctx)
            if item.optional_vars is not None:
                item.optional_vars = self.expr(item.optional_vars, ctx)
                names += [n for n in bound_names(item.optional_vars) if n not in names]
        node.body = [*self._snapshot(ctx, node, names), *self.statements(node.body, ctx)]
        return [node]

    _AsyncWith = _With

    def _Try(self, node: ast.Try | ast.TryStar, ctx: _Ctx) -> list[ast.stmt]:
        star = isinstance(node, ast.TryStar)
        branch_type, taken = ("try_star", "except*") if star else ("try", "except")
        node_id = self._ref(node, ctx)
        node.body = self.statements(node.body, ctx)
        for handler in node.handlers:
            condition = "" if handler.type is None else self.table.source_of(handler.type)
            handler.type = self._opt(handler.type, ctx)
            handler_id = self._ref(handler, ctx)
            names = [] if handler.name is None else [handler.name]
            handler.body = [self._branch(ctx, handler, branch_type, condition, taken,
                                         handler_id),
                            *self._snapshot(ctx, handler, names, handler_id),
                            *self.statements(handler.body, ctx)]
        if node.handlers:  # `else` needs an `except`; adding one changes nothing else
            node.orelse = [self._branch(ctx, node, branch_type, "", "else", node_id),
                           *self.statements(node.orelse, ctx)]
        if node.finalbody:
            node.finalbody = [self._branch(ctx, node, branch_type, "", "finally", node_id),
                              *self.statements(node.finalbody, ctx)]
        return [node]

    _TryStar = _Try

    # -- loops ---------------------------------------------------------------------------

    def _loop_names(self) -> dict[str, str]:
        k = self._next()
        return {part: f"{PREFIX}{part}{k}" for part in ("it", "r", "n", "lo", "hi", "q", "w")}

    def _iteration_prologue(self, ctx: _Ctx, node: ast.stmt, v: dict[str, str],
                            loop_type: str, value: ast.expr, sized: bool,
                            extra: list[ast.stmt]) -> ast.stmt:
        """``if r: n += 1; record this iteration (rec = True) or skip it (rec = False)``."""
        n = _load(v["n"])
        head = ast.Compare(left=n, ops=[ast.LtE()], comparators=[_const(self.loop_head)])
        test: ast.expr = head
        if sized:
            tail = ast.Compare(left=_load(v["lo"]), ops=[ast.Lt(), ast.LtE()],
                               comparators=[_load(v["n"]), _load(v["hi"])])
            test = ast.BoolOp(op=ast.Or(), values=[head, tail])
        record: list[ast.stmt] = [
            _assign(REC, _const(True)),
            _expr_stmt(_call("I", _const(None), _const(loop_type), _load(v["n"]), value,
                             _const(node.lineno), self._ref(node, ctx))),
            *extra,
        ]
        skip: list[ast.stmt] = [_assign(REC, _const(False))]
        if self.loop_tail:
            keep: ast.stmt = _assign(v["q"], _call("keep", _load(v["q"]), _load(v["n"]),
                                                   _copy(value)))
            if sized:  # a sized loop records its tail as it runs; keep values otherwise
                keep = ast.If(test=ast.UnaryOp(op=ast.Not(), operand=_load(v["hi"])),
                              body=[keep], orelse=[])
            skip.append(keep)
        prologue = ast.If(test=_load(v["r"]), body=[
            ast.AugAssign(target=_store(v["n"]), op=ast.Add(), value=_const(1)),
            ast.If(test=test, body=record, orelse=skip),
        ], orelse=[])
        return _located([prologue], node)[0]

    def _loop_wrap(self, ctx: _Ctx, node: ast.stmt, v: dict[str, str], loop_type: str,
                   loop: ast.stmt, sized: bool) -> ast.stmt:
        """``try: <loop> finally: if r: rec = True; end(...)`` (runs on break, return...)."""
        bounds = [_load(v["lo"]), _load(v["hi"])] if sized else [_const(0), _const(0)]
        final: list[ast.stmt] = [ast.If(test=_load(v["r"]), body=[
            _assign(REC, _const(True)),
            _expr_stmt(_call("end", self._ref(node, ctx), _const(node.lineno),
                             _const(loop_type), _load(v["n"]), *bounds, _load(v["q"]))),
        ], orelse=[])]
        final.insert(0, _assign(v["it"] if sized else v["w"], _const(None)))
        wrapped = ast.Try(body=[loop], handlers=[], orelse=[], finalbody=final)
        return _located([wrapped], node)[0]

    def _For(self, node: ast.For | ast.AsyncFor, ctx: _Ctx) -> list[ast.stmt]:
        if ctx.slot is not None:  # pragma: no cover - statements never sit in a comprehension
            raise AssertionError("statement inside a comprehension")
        loop_type = "async_for" if isinstance(node, ast.AsyncFor) else "for"
        v = self._loop_names()
        names = bound_names(node.target)
        value = _value_of(names)
        node.iter = self.expr(node.iter, ctx)
        node.target = self.expr(node.target, ctx)
        setup: list[ast.stmt] = [
            _assign(v["it"], node.iter),
            _assign(v["r"], _load(REC)),
            ast.If(test=_load(v["r"]), body=[
                _assign(v["n"], _const(0)),
                _assign(v["q"], _const(None)),
                ast.Assign(targets=[ast.Tuple(elts=[_store(v["lo"]), _store(v["hi"])],
                                              ctx=ast.Store())],
                           value=_call("bounds", _load(v["it"])), lineno=0),
            ], orelse=[]),
        ]
        node.iter = _load(v["it"])
        snapshot = self._snapshot(ctx, node, names)
        extra = [s.body[0] for s in snapshot if isinstance(s, ast.If)]
        prologue = self._iteration_prologue(ctx, node, v, loop_type, value, True, extra)
        node.body = [prologue, *self.statements(node.body, ctx)]
        if node.orelse:
            node.orelse = [_assign(REC, _load(v["r"])), *self.statements(node.orelse, ctx)]
        wrapped = self._loop_wrap(ctx, node, v, loop_type, node, True)
        return [*_located(setup, node), wrapped]

    _AsyncFor = _For

    def _While(self, node: ast.While, ctx: _Ctx) -> list[ast.stmt]:
        v = self._loop_names()
        condition = self.table.source_of(node.test)
        node_id = self._ref(node, ctx)
        node.test = ast.NamedExpr(target=_store(v["w"]), value=self.expr(node.test, ctx))
        setup: list[ast.stmt] = [
            _assign(v["r"], _load(REC)),
            ast.If(test=_load(v["r"]), body=[_assign(v["n"], _const(0)),
                                             _assign(v["q"], _const(None))], orelse=[]),
        ]
        taken = _call("B", _const(None), _const("while"), _const(condition), _const(True),
                      _const(node.lineno), node_id)
        prologue = self._iteration_prologue(ctx, node, v, "while", _load(v["w"]), False,
                                            [_expr_stmt(taken)])
        node.body = [prologue, *self.statements(node.body, ctx)]
        node.orelse = [_assign(REC, _load(v["r"])),
                       self._branch(ctx, node, "while", condition, False, node_id),
                       *self.statements(node.orelse, ctx)]
        wrapped = self._loop_wrap(ctx, node, v, "while", node, False)
        return [*_located(setup, node), wrapped]

    # -- match ---------------------------------------------------------------------------

    def _Match(self, node: ast.Match, ctx: _Ctx) -> list[ast.stmt]:
        k = self._next()
        subject, mask = f"{PREFIX}s{k}", f"{PREFIX}m{k}"
        guarded = any(case.guard is not None for case in node.cases)
        node.subject = ast.NamedExpr(target=_store(subject),
                                     value=self.expr(node.subject, ctx))
        rows: list[ast.expr] = []
        for case in node.cases:
            text = self.table.source_of(case.pattern)
            if case.guard is not None:
                text += " if " + self.table.source_of(case.guard)
            rows.append(ast.Tuple(elts=[
                self._ref(case, ctx, "case", case.pattern), _const(case.pattern.lineno),
                _const(text), _const(case.guard is not None)], ctx=ast.Load()))
        table = ast.Tuple(elts=rows, ctx=ast.Load())
        mask_value = _load(mask) if guarded else _const(0)
        for index, case in enumerate(node.cases):
            if case.guard is not None:
                seen = ast.NamedExpr(target=_store(mask), value=ast.BinOp(
                    left=_load(mask), op=ast.BitOr(), right=_const(1 << index)))
                case.guard = ast.BoolOp(op=ast.And(), values=[seen,
                                                              self.expr(case.guard, ctx)])
            names = pattern_names(case.pattern)
            bindings = ast.Dict(keys=[_const(n) for n in names],
                                values=[_load(n) for n in names])
            report = self._guard(ctx, case.pattern, _call(
                "M", _copy(table), _const(index), _copy(mask_value), _load(subject), bindings))
            case.body = [report, *self.statements(case.body, ctx)]
        last = node.cases[-1]
        if last.guard is not None or not _irrefutable(last.pattern):
            fallback = self._guard(ctx, node, _call(
                "M", _copy(table), _const(-1), _copy(mask_value), _load(subject),
                _const(None)))
            node.cases.append(ast.match_case(pattern=ast.MatchAs(pattern=None, name=None),
                                             guard=None, body=[fallback]))
        setup = _located([_assign(mask, _const(0))], node) if guarded else []
        return [*setup, node]


def _value_of(names: list[str]) -> ast.expr:
    """The loop's "current value": its one name, or a dict of the names it binds."""
    if len(names) == 1:
        return _load(names[0])
    if not names:
        return _const(None)
    return ast.Dict(keys=[_const(n) for n in names], values=[_load(n) for n in names])


def _copy(node: ast.expr) -> ast.expr:
    # A node used twice must be two nodes: placeholders inside stay shared (they are
    # the same Constant objects, which the node table patches once for both copies).
    if isinstance(node, ast.Constant):
        return node
    clone = type(node)(**{name: _copy_field(value) for name, value in ast.iter_fields(node)})
    return ast.copy_location(clone, node) if hasattr(node, "lineno") else clone


def _copy_field(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy_field(item) for item in value]
    if isinstance(value, ast.expr):
        return _copy(value)
    return value


class _Expressions(ast.NodeTransformer):
    """Rewrites the expressions of one statement (or one comprehension part)."""

    def __init__(self, owner: Instrumenter, ctx: _Ctx) -> None:
        self.owner = owner
        self.ctx = ctx

    def visit(self, node: ast.AST) -> Any:
        picked = isinstance(node, ast.expr) and self._picked(node)
        source = self.owner.table.source_of(node) if picked else ""
        result = super().visit(node)
        if picked:
            assert isinstance(node, ast.expr)
            return _call("X", self.ctx.rec(), self.owner._ref(node, self.ctx),
                         _const(getattr(node, "lineno", 0)), _const(source), result)
        return result

    def _picked(self, node: ast.expr) -> bool:
        picks = self.owner.expressions
        if not picks or isinstance(node, (ast.Starred, ast.Slice)):
            return False
        context = getattr(node, "ctx", None)
        if context is not None and not isinstance(context, ast.Load):
            return False
        kind = type(node)
        candidates = [p for p in picks if type(p) is kind]
        if not candidates:
            return False
        dumped = ast.dump(node)
        return any(ast.dump(p) == dumped for p in candidates)

    # Never descended into: lambdas (a body of their own, not instrumented), patterns.
    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        # Only the formatted values are expressions that may be replaced.
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                part.value = self.visit(part.value)
                if isinstance(part.format_spec, ast.JoinedStr):
                    self.visit_JoinedStr(part.format_spec)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        owner, ctx = self.owner, self.ctx
        condition = owner.table.source_of(node.test)
        self.generic_visit(node)
        node_id = owner._ref(node, ctx)
        line = _const(node.lineno)
        # The arms report themselves after the user's test chose one; the test's truth
        # value is computed once, by the conditional expression, as before.
        said_true = ast.BoolOp(op=ast.Or(), values=[
            ast.UnaryOp(op=ast.Not(), operand=ctx.rec()),
            _call("T", node_id, line, _const(condition))])
        said_false = ast.BoolOp(op=ast.And(), values=[
            ctx.rec(), _call("F", node_id, line, _const(condition))])
        node.test = ast.IfExp(test=node.test, body=said_true, orelse=said_false)
        return node

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        self.generic_visit(node)
        return _call("W", self.ctx.rec(), self.owner._ref(node, self.ctx),
                     _const(node.lineno), _const(node.target.id), node)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp |
                       ast.GeneratorExp) -> ast.AST:
        owner, ctx = self.owner, self.ctx
        scope = ctx.scope
        loop_type = _COMPREHENSION_TYPES[type(node)]
        slots: list[int] = []
        for index, clause in enumerate(node.generators):
            slot = scope.comprehension_slots
            scope.comprehension_slots += 1
            outer = ctx if index == 0 else _Ctx(scope, slots[-1])
            inner = _Ctx(scope, slot)
            slots.append(slot)
            position = ast.Name(id="_", ctx=ast.Load())
            ast.copy_location(position, clause.target)
            position.end_lineno = clause.iter.end_lineno
            position.end_col_offset = clause.iter.end_col_offset
            node_id = owner._ref(clause, ctx, "comprehension", position)
            names = bound_names(clause.target)
            clause.iter = _call(
                "cb", _load(CS), _const(slot), outer.rec(), _Expressions(owner, outer).visit(
                    clause.iter), node_id, _const(clause.target.lineno), _const(loop_type),
                _const(tuple(names)))
            inner_visitor = _Expressions(owner, inner)
            clause.target = inner_visitor.visit(clause.target)
            state = ast.Subscript(value=_load(CS), slice=_const(slot), ctx=ast.Load())
            tick = _call("ct", state, *[_load(n) for n in names])
            clause.ifs = [tick, *[inner_visitor.visit(test) for test in clause.ifs]]
        last = _Expressions(owner, _Ctx(scope, slots[-1]))
        if isinstance(node, ast.DictComp):
            node.key = last.visit(node.key)
            node.value = last.visit(node.value)
        else:
            node.elt = last.visit(node.elt)
        if isinstance(node, ast.GeneratorExp):
            return node  # its end is not observed (docs/ast.md, limits)
        return _call("ce", _load(CS), _const(tuple(slots)), node)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension
