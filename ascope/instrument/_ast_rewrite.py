"""``rewrite_function``: an AST-instrumented copy of a function (see docs/ast.md).

The copy is compiled from the function's own source file, re-parsed whole, so line
numbers and columns in tracebacks stay those of the file. The ``def`` (without the
decorators above it) is compiled inside a factory function whose parameters are the
original's free variables and the helpers the injected code calls, and inside a class of
the same name as the original's innermost enclosing class (so ``__private`` names are
mangled as before and ``super()`` gets a ``__class__`` cell). The factory never runs:
its compiled ``def`` is taken out of the code constants and made into a function over
the *original's* closure cells (so ``nonlocal`` writes are shared with the original's
enclosing function) plus fresh cells for the helpers, with the original's globals,
defaults, keyword defaults, names, docstring, annotations and ``__dict__``.

The copy reports to the operation that is current when it runs; it does not report its
own entry and exit (the decorator around it does).
"""

from __future__ import annotations
import __future__

import ast
import copy
import functools
import inspect
import linecache
import logging
import types
from collections.abc import Callable, Iterable
from typing import Any

from ._ast_nodes import NodeTable
from ._ast_support import make_helpers
from ._ast_transform import PREFIX, Instrumenter

__all__ = ["node_map_of", "rewrite_function"]

logger = logging.getLogger("ascope")

_FACTORY = PREFIX + "factory"
_MAP_ATTRIBUTE = "__ascope_node_map__"

# What a compiled copy must share with the original to be a drop-in replacement.
_KIND_FLAGS = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
               | inspect.CO_ITERABLE_COROUTINE | inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)

_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag


def rewrite_function(function: Callable[..., Any], *, expressions: Iterable[str] = (),
                     loop_head: int = 10, loop_tail: int = 10) -> Any:
    """An instrumented copy of ``function``, or None when its source is not available.

    ``expressions``: source texts of expressions whose values to report wherever they
    occur in the function (matched by structure, so spacing does not matter).
    ``loop_head``/``loop_tail``: how many of the first/last iterations of every loop run
    are recorded (docs/ast.md, "Loop bounding").
    Raises ``ValueError``/``TypeError`` for bad arguments; returns None (and logs why at
    debug level) when the function cannot be rewritten: no source (REPL, ``exec``,
    lambdas, builtins), source that no longer matches the code, or a function that is
    itself a wrapper made by another decorator.
    """
    picks = _parse_expressions(expressions)
    for name, value in (("loop_head", loop_head), ("loop_tail", loop_tail)):
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if not isinstance(function, types.FunctionType):
        return None
    code = function.__code__
    if code.co_name == "<lambda>" or function.__qualname__ != code.co_qualname:
        return None  # a lambda, or a wrapper that copied another function's names
    located = _locate(function)
    if located is None:
        return None
    filename, source, node, class_name, imports = located
    try:
        return _build(function, filename, source, node, class_name, imports, picks,
                      loop_head, loop_tail)
    except Exception:  # a rewriter bug must not break the import of the user's module
        logger.warning("ascope: could not instrument %s.%s with ast=True; it gets call "
                       "capture only", function.__module__, function.__qualname__,
                       exc_info=True)
        return None


def node_map_of(function: Any) -> list[dict[str, Any]] | None:
    """The node map rows of a function ``rewrite_function`` returned (None otherwise)."""
    rows = getattr(function, _MAP_ATTRIBUTE, None)
    return list(rows) if isinstance(rows, list) else None


def _parse_expressions(expressions: Iterable[str]) -> list[ast.expr]:
    if isinstance(expressions, str):
        raise TypeError("expressions must be a list of source strings, not one string")
    picks = []
    for text in expressions:
        if type(text) is not str:
            raise TypeError(f"expressions must be source strings, got {text!r}")
        try:
            picks.append(ast.parse(text.strip(), mode="eval").body)
        except SyntaxError as error:
            raise ValueError(f"expression {text!r} does not parse: {error.msg}") from None
    return picks


# -- finding the def ----------------------------------------------------------------------


def _locate(function: types.FunctionType) -> tuple[
        str, str, ast.FunctionDef | ast.AsyncFunctionDef, str | None, list[ast.stmt]] | None:
    """(file, source, a fresh copy of the def node, innermost enclosing class, the module's
    import statements) or None."""
    try:
        filename = inspect.getsourcefile(function)
    except TypeError:
        return None
    if not filename:
        return None
    lines = linecache.getlines(filename, function.__globals__)
    if not lines:
        return None
    source = "".join(lines)
    tree = _parse(filename, source)
    if tree is None:
        return None
    found = _find_def(tree, function.__code__)
    if found is None:
        return None
    node, class_name = found
    return filename, source, copy.deepcopy(node), class_name, _module_imports(tree)


@functools.lru_cache(maxsize=16)
def _parse(filename: str, source: str) -> ast.Module | None:
    # Cached: the import hook rewrites many functions of one file, one after the other.
    # Callers deep-copy the node they take, so the cached tree is never changed.
    try:
        return ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None


def _module_imports(tree: ast.Module) -> list[ast.stmt]:
    """The import statements of the module's own scope (not inside defs or classes).

    CPython 3.11 compiles ``name.attr(...)`` as LOAD_ATTR rather than LOAD_METHOD when
    ``name`` is bound by an import at module level: compiling the def next to these
    (never executed) imports gives it the bytecode it had in its module.
    """
    found: list[ast.stmt] = []
    stack: list[ast.AST] = [tree]
    while stack:
        for child in ast.iter_child_nodes(stack.pop()):
            if isinstance(child, ast.Import) or (
                    isinstance(child, ast.ImportFrom) and child.module != "__future__"):
                found.append(child)
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)) and not \
                    isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stack.append(child)
    return found


def _find_def(tree: ast.Module, code: types.CodeType) -> tuple[
        ast.FunctionDef | ast.AsyncFunctionDef, str | None] | None:
    """The def whose name, first line and qualname are the code object's."""
    stack: list[tuple[ast.AST, str, str | None]] = [(tree, "", None)]
    while stack:
        parent, prefix, class_name = stack.pop()
        for child in ast.iter_child_nodes(parent):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                if (child.name == code.co_name and first == code.co_firstlineno
                        and qualname == code.co_qualname):
                    return child, class_name
                stack.append((child, qualname + ".<locals>.", class_name))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, prefix + child.name + ".", child.name))
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                stack.append((child, prefix, class_name))
    return None


# -- compiling the copy -------------------------------------------------------------------


def _build(function: types.FunctionType, filename: str, source: str,
           node: ast.FunctionDef | ast.AsyncFunctionDef, class_name: str | None,
           imports: list[ast.stmt], picks: list[ast.expr], loop_head: int,
           loop_tail: int) -> Any:
    code = function.__code__
    module = function.__module__ if isinstance(function.__module__, str) else "__main__"
    node.decorator_list = []
    flags = code.co_flags & _FUTURE_FLAGS
    # The file may have changed since the function was compiled from it: the def must
    # compile, untouched, to the very bytecode the function runs, or it is not its source.
    plain = _compile_def(copy.deepcopy(node), class_name, list(code.co_freevars), imports,
                         filename, flags)
    if plain is None or not _same_code(plain, code):
        return None
    table = NodeTable(module, filename, source)
    Instrumenter(table, picks, loop_head, loop_tail).function(node, code.co_qualname,
                                                              top=True)
    rows = table.finish()
    describe = {"module": module, "qualname": code.co_qualname, "file": filename,
                "def_line": node.lineno}
    helpers = make_helpers(loop_head, loop_tail, rows, describe)
    parameters = [*code.co_freevars, *(PREFIX + name for name in helpers)]
    new_code = _compile_def(node, class_name, parameters, imports, filename, flags)
    if new_code is None or not _same_signature(code, new_code):
        return None
    new_code = _renamed(new_code, new_code.co_qualname, code.co_qualname)

    cells = dict(zip(code.co_freevars, function.__closure__ or (), strict=True))
    closure = []
    for name in new_code.co_freevars:
        if name in cells:
            closure.append(cells[name])
        elif name.startswith(PREFIX) and name[len(PREFIX):] in helpers:
            value = helpers[name[len(PREFIX):]]
            closure.append(value if isinstance(value, types.CellType)
                           else types.CellType(value))
        else:
            return None
    copy_ = types.FunctionType(new_code, function.__globals__, function.__name__,
                               function.__defaults__, tuple(closure) or None)
    copy_.__kwdefaults__ = (None if function.__kwdefaults__ is None
                            else dict(function.__kwdefaults__))
    copy_.__qualname__ = function.__qualname__
    copy_.__module__ = function.__module__
    copy_.__doc__ = function.__doc__
    copy_.__annotations__ = function.__annotations__
    copy_.__dict__.update(function.__dict__)
    setattr(copy_, _MAP_ATTRIBUTE, rows)
    return copy_


def _compile_def(node: ast.FunctionDef | ast.AsyncFunctionDef, class_name: str | None,
                 parameters: list[str], imports: list[ast.stmt], filename: str,
                 flags: int) -> types.CodeType | None:
    """Compile ``node`` inside the factory (and class); return the def's code object."""
    inner: ast.stmt = node
    if class_name is not None:
        inner = ast.ClassDef(name=class_name, bases=[], keywords=[], body=[node],
                             decorator_list=[])
    # The def (or the class around it) binds its name in the factory: declared global,
    # so the body still reads that name as the original did (a global), not as a cell.
    bound = [n for n in {node.name, class_name} if n is not None and n not in parameters]
    body: list[ast.stmt] = [ast.Global(names=sorted(bound))] if bound else []
    factory = ast.FunctionDef(
        name=_FACTORY, args=ast.arguments(
            posonlyargs=[], args=[ast.arg(arg=name) for name in parameters], vararg=None,
            kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=[*body, inner], decorator_list=[], returns=None)
    ast.copy_location(factory, node)
    ast.copy_location(inner, node)
    module_ast = ast.Module(body=[*imports, factory], type_ignores=[])
    ast.fix_missing_locations(module_ast)
    compiled = compile(module_ast, filename, "exec", dont_inherit=True, flags=flags)
    return _find_code(compiled, node.name, node.lineno, class_name)


def _find_code(code: types.CodeType, name: str, line: int,
               class_name: str | None) -> types.CodeType | None:
    """The compiled def: a constant of the factory's code (or of the class body's)."""
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            if constant.co_name == name and constant.co_firstlineno == line:
                return constant
            if constant.co_name in (_FACTORY, class_name):
                found = _find_code(constant, name, line, class_name)
                if found is not None:
                    return found
    return None


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Same bytecode, names and constants (nested code compared the same way)."""
    if (a.co_code != b.co_code or a.co_names != b.co_names or a.co_varnames != b.co_varnames
            or a.co_freevars != b.co_freevars or a.co_cellvars != b.co_cellvars
            or len(a.co_consts) != len(b.co_consts)):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or not (x is y or x == y):
            return False
    return True


def _same_signature(old: types.CodeType, new: types.CodeType) -> bool:
    count = old.co_argcount + old.co_kwonlyargcount + bool(
        old.co_flags & inspect.CO_VARARGS) + bool(old.co_flags & inspect.CO_VARKEYWORDS)
    return (old.co_argcount == new.co_argcount
            and old.co_posonlyargcount == new.co_posonlyargcount
            and old.co_kwonlyargcount == new.co_kwonlyargcount
            and old.co_varnames[:count] == new.co_varnames[:count]
            and old.co_flags & _KIND_FLAGS == new.co_flags & _KIND_FLAGS)


def _renamed(code: types.CodeType, old: str, new: str) -> types.CodeType:
    """``code`` (and the code nested in it) with qualname prefix ``old`` made ``new``."""
    consts = tuple(_renamed(c, old, new) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    qualname = code.co_qualname
    if qualname == old or qualname.startswith(old + "."):
        qualname = new + qualname[len(old):]
    return code.replace(co_consts=consts, co_qualname=qualname)
