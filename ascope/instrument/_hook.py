"""``ascope.instrument_packages``: instrument whole packages as they are imported.

A finder at the front of ``sys.meta_path`` claims modules whose names match, lets the
other finders locate them, and wraps their loader. For modules loaded from source, the
loader parses the source and adds one decorator, closest to the ``def``, to every
function and method before compiling it (the way a compile-time transformer would), so
decorators above it (``@app.get``, ``@property``, ``@staticmethod``, registries) receive
the instrumented function. Other modules (no source: sourceless, extension) get their
functions replaced in the module namespace after they ran.

What is instrumented: module-level functions and the methods of classes (nested classes
included) defined in a matching module; not functions defined inside functions (they
would be decorated again at every call of their outer function), not dunder methods
other than ``__init__``, ``__call__`` and the context-manager ones, not functions that
already carry an ``instrument`` decorator (the explicit one wins).

Never instrumented unless a pattern names them explicitly (its first component without
wildcards): the standard library and third-party code in site-packages. ascope's own
modules never are (ascope recording itself would recurse), except ``ascope.integrations``.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.abc
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
import threading
import types
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._decorator import (
    INSTRUMENTED_DUNDERS,
    InstrumentOptions,
    instrumentable_members,
    is_instrumented,
    wrap_function,
)

__all__ = [
    "AlreadyImportedWarning",
    "InstrumentedPackages",
    "instrument_from_environment",
    "instrument_packages",
    "uninstall_import_hook",
]

# The name the injected decorator is bound to in an instrumented module's namespace.
DECORATOR_NAME = "__ascope_instrument__"

_WILDCARDS = frozenset("*?[")


class AlreadyImportedWarning(UserWarning):
    """``instrument_packages`` matched modules that were imported before it was called:
    their functions are not instrumented (import them after, or decorate them)."""


class InstrumentedPackages:
    """What one ``instrument_packages`` call installed; ``uninstall()`` takes it back.

    ``already_imported`` lists the matching modules that were imported before the call
    (and are therefore not instrumented); ``instrumented`` grows with each module the
    hook instruments.
    """

    def __init__(self, patterns: tuple[str, ...], options: InstrumentOptions,
                 already_imported: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.options = options
        self.already_imported = already_imported
        self.instrumented: list[str] = []

    def matches(self, module_name: str) -> bool:
        """Whether ``module_name`` is one this call asks to instrument."""
        return _match(self.patterns, module_name) is not None

    def uninstall(self) -> None:
        """Stop instrumenting modules imported from now on (instrumented ones stay so)."""
        with _lock:
            _registrations[:] = [r for r in _registrations if r is not self]
            if not _registrations:
                _remove_finder()

    def __repr__(self) -> str:
        return (f"InstrumentedPackages(patterns={list(self.patterns)!r}, "
                f"instrumented={self.instrumented!r}, "
                f"already_imported={list(self.already_imported)!r})")


_lock = threading.Lock()
_registrations: list[InstrumentedPackages] = []


def instrument_packages(
    patterns: str | Iterable[str],
    *,
    ast: bool = False,
    args: bool = True,
    result: bool = True,
    sample: float = 1.0,
    expressions: Iterable[str] = (),
) -> InstrumentedPackages:
    """Instrument every function and method of the matching modules imported from now on.

    ``patterns``: ``"myapp"`` matches the package and all its submodules;
    ``"myapp.services.*"`` matches by glob. Options are those of ``instrument()``.
    Modules that match but were imported already are listed in the result's
    ``already_imported`` and named in an ``AlreadyImportedWarning``.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    cleaned: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise TypeError(f"instrument_packages expects module names or glob patterns, "
                            f"got {pattern!r}")
        pattern = pattern.strip()
        top = pattern.partition(".")[0]
        if top == "ascope" and not (pattern + ".").startswith("ascope.integrations."):
            raise ValueError(f"instrument_packages({pattern!r}): ascope does not instrument "
                             "its own modules (only ascope.integrations)")
        cleaned.append(pattern)
    options = InstrumentOptions(args=args, result=result, sample=sample, ast=ast,
                                expressions=tuple(expressions))
    already = tuple(sorted(
        name for name, module in list(sys.modules.items())
        if module is not None and _match(cleaned, name) is not None
        and _allowed(name, _match(cleaned, name), getattr(module, "__file__", None))
    ))
    registration = InstrumentedPackages(tuple(cleaned), options, already)
    with _lock:
        _registrations.append(registration)
        _install_finder()
    if already:
        warnings.warn(
            f"ascope.instrument_packages: {len(already)} matching module(s) were imported "
            f"before the import hook was installed and are not instrumented: "
            f"{', '.join(already[:20])}{' ...' if len(already) > 20 else ''}. Call "
            "instrument_packages (or set ASCOPE_INSTRUMENT) before importing them.",
            AlreadyImportedWarning, stacklevel=2)
    return registration


def uninstall_import_hook() -> None:
    """Remove every ``instrument_packages`` registration and the finder (for tests)."""
    with _lock:
        _registrations.clear()
        _remove_finder()


def instrument_from_environment(environ: Mapping[str, str]) -> InstrumentedPackages | None:
    """Apply ``ASCOPE_INSTRUMENT`` (comma-separated patterns) and ``ASCOPE_INSTRUMENT_AST``."""
    raw = environ.get("ASCOPE_INSTRUMENT", "")
    patterns = [part.strip() for part in raw.split(",") if part.strip()]
    if not patterns:
        return None
    use_ast = environ.get("ASCOPE_INSTRUMENT_AST", "").strip().lower() in {"1", "true", "yes",
                                                                            "on"}
    return instrument_packages(patterns, ast=use_ast)


# -- matching ----------------------------------------------------------------------------------


def _match(patterns: Sequence[str], name: str) -> str | None:
    """The first pattern matching module ``name``, or None."""
    for pattern in patterns:
        if any(char in _WILDCARDS for char in pattern):
            if fnmatch.fnmatchcase(name, pattern):
                return pattern
        elif name == pattern or name.startswith(pattern + "."):
            return pattern
    return None


def _explicit(pattern: str) -> bool:
    """Whether a pattern names its top-level package literally (``json``, ``yaml.*``)."""
    top = pattern.partition(".")[0]
    return not any(char in _WILDCARDS for char in top)


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for getter in (site.getsitepackages, site.getusersitepackages):
        try:
            found = getter()
        except Exception:  # some embedded interpreters lack them
            continue
        roots.update([found] if isinstance(found, str) else found)
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(path)
    return tuple(os.path.normcase(os.path.realpath(root)) + os.sep for root in roots if root)


_LIBRARY_ROOTS = _library_roots()


def _protected(name: str, origin: str | None) -> bool:
    """Standard library or installed third-party code (not the user's own)."""
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    if origin:
        path = os.path.normcase(os.path.realpath(origin))
        if path.startswith(_LIBRARY_ROOTS):
            return True
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return True
    return False


def _allowed(name: str, pattern: str | None, origin: str | None) -> bool:
    if pattern is None:
        return False
    top = name.partition(".")[0]
    if top == "ascope" and not name.startswith("ascope.integrations"):
        return False
    return _explicit(pattern) or not _protected(name, origin)


def _registration_for(name: str) -> InstrumentedPackages | None:
    for registration in reversed(_registrations):  # the latest call wins
        if _match(registration.patterns, name) is not None:
            return registration
    return None


# -- the finder and the loader -------------------------------------------------------------------


class _Finder(importlib.abc.MetaPathFinder):
    """Claims matching modules: finds them with the other finders, wraps the loader."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        registration = _registration_for(fullname)
        if registration is None:
            return None
        spec: importlib.machinery.ModuleSpec | None = None
        for finder in list(sys.meta_path):
            if finder is self or isinstance(finder, _Finder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        pattern = _match(registration.patterns, fullname)
        if not _allowed(fullname, pattern, spec.origin) or isinstance(spec.loader,
                                                                      _InstrumentingLoader):
            return spec
        spec.loader = _InstrumentingLoader(spec.loader, registration)
        return spec


class _InstrumentingLoader(importlib.abc.Loader):
    """Wraps a module's loader: same module, functions instrumented as it is executed."""

    def __init__(self, loader: Any, registration: InstrumentedPackages) -> None:
        self._loader = loader
        self._registration = registration

    def __getattr__(self, name: str) -> Any:
        # get_source, is_package, get_filename, get_resource_reader...: the real loader's.
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: types.ModuleType) -> None:
        options = self._registration.options
        code = self._instrumented_code(module)
        if code is None:
            self._loader.exec_module(module)
            _instrument_namespace(module, options)
        else:
            module.__dict__[DECORATOR_NAME] = _decorator_for(options)
            exec(code, module.__dict__)
        self._registration.instrumented.append(module.__name__)

    def _instrumented_code(self, module: types.ModuleType) -> types.CodeType | None:
        """The module's code with the decorator added, or None if it has no source file."""
        loader = self._loader
        if not isinstance(loader, importlib.machinery.SourceFileLoader):
            return None
        path = loader.get_filename(module.__name__)
        # Compiled from source every time and never written to __pycache__: a cached
        # .pyc would hold either the plain code (skipping instrumentation) or ours.
        source = importlib.util.decode_source(loader.get_data(path))
        tree = ast.parse(source, path)
        _Injector().visit(tree)
        return compile(tree, path, "exec", dont_inherit=True)


def _decorator_for(options: InstrumentOptions) -> Any:
    def instrument_at_import(function: Any) -> Any:
        # The observer never breaks the observed: a function ascope cannot wrap stays as is.
        try:
            if isinstance(function, types.FunctionType) and function.__name__ != "<lambda>":
                return wrap_function(function, options)
        except Exception:
            from .. import _context

            _context.STATE.internal_errors += 1
        return function

    return instrument_at_import


def _instrument_namespace(module: types.ModuleType, options: InstrumentOptions) -> None:
    """Instrument a module after it ran (no source to transform): its namespace only."""
    name = module.__name__
    for attr, value in list(vars(module).items()):
        if getattr(value, "__module__", None) != name:
            continue
        if isinstance(value, types.FunctionType) and not is_instrumented(value):
            if not _is_skipped_dunder(attr):
                setattr(module, attr, wrap_function(value, options))
        elif isinstance(value, type):
            for member, method in instrumentable_members(value):
                function = method.__func__ if isinstance(method, (classmethod, staticmethod)) \
                    else method
                wrapped = wrap_function(function, options)
                if isinstance(method, classmethod):
                    wrapped = classmethod(wrapped)
                elif isinstance(method, staticmethod):
                    wrapped = staticmethod(wrapped)
                setattr(value, member, wrapped)


def _is_skipped_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name not in INSTRUMENTED_DUNDERS


def _names_instrument(decorator: ast.expr) -> bool:
    """Whether a decorator is some spelling of ``instrument`` / ``instrument(...)``."""
    if isinstance(decorator, ast.Call):
        decorator = decorator.func
    if isinstance(decorator, ast.Name):
        return decorator.id == "instrument"
    return isinstance(decorator, ast.Attribute) and decorator.attr == "instrument"


class _Injector(ast.NodeVisitor):
    """Adds ``@__ascope_instrument__`` closest to each module-level and method ``def``."""

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for child in node.body:
            self.visit(child)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # No generic_visit: functions nested in functions are left alone.
        if _is_skipped_dunder(node.name):
            return
        if any(_names_instrument(decorator) for decorator in node.decorator_list):
            return
        # Located on the def line: the function's first line (its first decorator's, or
        # the def's) stays what it was, so inspect.getsource and node ids do not move.
        node.decorator_list.append(ast.Name(
            DECORATOR_NAME, ast.Load(), lineno=node.lineno, col_offset=node.col_offset,
            end_lineno=node.lineno, end_col_offset=node.col_offset))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        # `if TYPE_CHECKING:` / platform branches at module level hold defs too.
        for child in (*node.body, *node.orelse):
            self.visit(child)

    def visit_Try(self, node: ast.Try) -> None:
        for child in (*node.body, *node.orelse, *node.finalbody):
            self.visit(child)
        for handler in node.handlers:
            for child in handler.body:
                self.visit(child)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Module):
            for child in node.body:
                self.visit(child)


# -- installing the finder ---------------------------------------------------------------------


def _install_finder() -> None:
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    importlib.invalidate_caches()


def _remove_finder() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _Finder)]
