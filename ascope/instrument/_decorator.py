"""``@ascope.instrument``: call capture for every kind of callable.

The decorator branches on the kind of callable once, at decoration time, and builds a
wrapper of the same kind (plain function, coroutine function, generator function, async
generator function), so ``inspect`` answers, ``functools.wraps`` attributes, signatures,
pickling by qualified name and the generator/coroutine protocols stay what they were.

Every wrapper starts with one check of the global switch and calls straight through
when capture is off. When it is on, a call is one operation:

- ``function_entry`` (module, qualname, arguments by parameter name) opens it and makes
  its correlation id current, so nested calls, tasks and AST events get it as parent;
- ``function_exit`` closes it with the result and an outcome: ``return``, ``raise``
  (after an ``error`` event with type, message and traceback), ``cancel``
  (``asyncio.CancelledError``) or ``close`` (``GeneratorExit``: closed early).

Generators and async generators are one operation across their whole life, reported
in segments: each ``yield`` closes the segment (``function_exit``, outcome ``yield``,
result = the yielded value) and each resume opens the next one with a
``function_entry`` of the same correlation id whose ``args`` are
``{"$resume": n}`` plus ``"$send"`` (the value sent) or ``"$throw"`` (the exception
type thrown in) or ``"$close": True``. The frame is pushed and popped inside each
segment, in the context of whoever resumed the generator, so no ContextVar token
lives across a ``yield`` and nested calls get the right parent in every consumer.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import random
import types
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from .. import _context as _c
from .. import runtime as _rt
from ._wrappers import (
    _ENV,
    _TEMPLATES,
    _list_args,
    _Parameters,
    generate_wrapper,
    make_binder,
    parameters_of,
)

__all__ = ["InstrumentOptions", "SourceUnavailableWarning", "instrument"]

T = TypeVar("T")

_STATE = _c.STATE
_current = _c.current
_random = random.random
_entry = _rt.report_function_entry
_exit = _rt.report_function_exit
_error = _rt.report_error
_CancelledError = asyncio.CancelledError

# Dunder methods instrumented when a whole class (or module, by the import hook) is:
# the others (__repr__, __eq__, __hash__, __getattr__...) run inside value capture and
# attribute lookups, where recording them is noise at best and recursion at worst.
INSTRUMENTED_DUNDERS = frozenset({
    "__init__", "__call__", "__enter__", "__exit__", "__aenter__", "__aexit__",
})

# Wrappers ascope made, so instrumenting twice (a class decorated whose methods already
# are, the import hook meeting an explicit decorator) does not wrap twice.
_instrumented: weakref.WeakSet[Any] = weakref.WeakSet()


class SourceUnavailableWarning(UserWarning):
    """``ast=True`` was asked for a function whose source cannot be read (REPL, ``exec``,
    lambdas): it gets call capture instead."""


@dataclass(frozen=True, slots=True)
class InstrumentOptions:
    """What one ``@instrument(...)`` asks for (checked when it is built)."""

    args: bool = True
    result: bool = True
    name: str | None = None
    sample: float = 1.0
    ast: bool = False
    expressions: tuple[str, ...] = ()
    state: bool | tuple[str, ...] = False
    loop_head: int = 10
    loop_tail: int = 10

    def __post_init__(self) -> None:
        for flag in ("args", "result", "ast"):
            if type(getattr(self, flag)) is not bool:
                raise TypeError(f"instrument({flag}=...) expects True or False, "
                                f"got {getattr(self, flag)!r}")
        if self.name is not None and (type(self.name) is not str or not self.name):
            raise TypeError(f"instrument(name=...) expects a non-empty str, got {self.name!r}")
        sample = self.sample
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not (
                0.0 <= sample <= 1.0):
            raise ValueError(f"instrument(sample=...) expects a rate between 0 and 1, "
                             f"got {sample!r}")
        if not all(type(e) is str for e in self.expressions):
            raise TypeError("instrument(expressions=...) expects a list of source strings, "
                            f"got {self.expressions!r}")
        if not (type(self.state) is bool or all(type(s) is str for s in self.state)):
            raise TypeError("instrument(state=...) expects True, False or a list of "
                            f"attribute names, got {self.state!r}")
        for bound in ("loop_head", "loop_tail"):
            value = getattr(self, bound)
            if type(value) is not int or value < 0:
                raise ValueError(f"instrument({bound}=...) expects an int >= 0, got {value!r}")


@overload
def instrument(target: T, /) -> T: ...


@overload
def instrument(
    *,
    args: bool = True,
    result: bool = True,
    name: str | None = None,
    sample: float = 1.0,
    ast: bool = False,
    expressions: Iterable[str] = (),
    state: bool | Iterable[str] = False,
    loop_head: int = 10,
    loop_tail: int = 10,
) -> Callable[[T], T]: ...


def instrument(
    target: Any = None,
    /,
    *,
    args: bool = True,
    result: bool = True,
    name: str | None = None,
    sample: float = 1.0,
    ast: bool = False,
    expressions: Iterable[str] = (),
    state: bool | Iterable[str] = False,
    loop_head: int = 10,
    loop_tail: int = 10,
) -> Any:
    """Record calls of a function, or of every method of a class.

    Use bare (``@ascope.instrument``) or with options (``@ascope.instrument(...)``):

    - ``args`` / ``result``: capture the arguments (by parameter name; ``self``/``cls``
      left out) and the result, or record ``None`` in their place;
    - ``name``: the name to report instead of the qualname;
    - ``sample``: the fraction of calls recorded (0..1), drawn per call;
    - ``ast``: also record lines, branches, loops, variables and matches inside
      (see docs/ast.md); ``expressions``: source of expressions to record there;
      ``loop_head`` / ``loop_tail``: iterations kept at each end of a loop run;
    - ``state`` (classes): report public method calls as service callbacks with a
      ``state_change`` event when the instance's attributes change; ``True`` watches
      every attribute, a list of names only those.

    The decorated callable keeps its kind, signature and behaviour exactly; while
    capture is off a call costs one flag check more than the plain function.
    """
    options = InstrumentOptions(
        args=args, result=result, name=name, sample=sample, ast=ast,
        expressions=_strings("expressions", expressions),
        state=state if type(state) is bool else _strings("state", state),
        loop_head=loop_head, loop_tail=loop_tail,
    )
    if target is None:
        return functools.partial(apply, options=options)
    return apply(target, options=options)


def _strings(option: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise TypeError(f"instrument({option}=...) expects a list of strings, got {values!r}")
    return tuple(values)


def apply(target: Any, *, options: InstrumentOptions) -> Any:
    """Instrument ``target`` (function, method descriptor, property or class)."""
    if isinstance(target, type):
        if options.state is not False:
            from ._service import instrument_service

            return instrument_service(target, options)
        return instrument_class(target, options)
    if options.state is not False:
        raise TypeError("instrument(state=...) applies to classes (stateful services), "
                        f"not to {target!r}")
    if isinstance(target, classmethod):
        return classmethod(wrap_function(target.__func__, options))
    if isinstance(target, staticmethod):
        return staticmethod(wrap_function(target.__func__, options))
    if isinstance(target, property):
        fget, fset, fdel = (None if f is None else wrap_function(f, options)
                            for f in (target.fget, target.fset, target.fdel))
        return property(fget, fset, fdel, target.__doc__)
    if not callable(target):
        raise TypeError(f"ascope.instrument expects a function, method or class, "
                        f"got {target!r}")
    return wrap_function(target, options)


def is_instrumented(function: Any) -> bool:
    try:
        return function in _instrumented
    except TypeError:
        return False


def instrumentable_members(cls: type) -> list[tuple[str, Any]]:
    """The methods of ``cls`` (its own, not inherited) that instrumenting the class wraps."""
    members = []
    for attr, value in vars(cls).items():
        if attr.startswith("__") and attr.endswith("__") and attr not in INSTRUMENTED_DUNDERS:
            continue
        function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if isinstance(function, types.FunctionType) and not is_instrumented(function):
            members.append((attr, value))
    return members


def instrument_class(cls: type, options: InstrumentOptions) -> type:
    """Instrument the methods ``cls`` defines (classmethods and staticmethods included)."""
    for attr, value in instrumentable_members(cls):
        function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        name = f"{options.name}.{function.__name__}" if options.name else None
        wrapped = wrap_function(function, _with_name(options, name))
        if isinstance(value, classmethod):
            wrapped = classmethod(wrapped)
        elif isinstance(value, staticmethod):
            wrapped = staticmethod(wrapped)
        setattr(cls, attr, wrapped)
    return cls


def _with_name(options: InstrumentOptions, name: str | None) -> InstrumentOptions:
    if name == options.name:
        return options
    return InstrumentOptions(options.args, options.result, name, options.sample, options.ast,
                             options.expressions, options.state, options.loop_head,
                             options.loop_tail)


# -- wrappers --------------------------------------------------------------------------------


def wrap_function(function: Callable[..., Any], options: InstrumentOptions) -> Any:
    """The instrumented replacement of one function, of the same kind."""
    if is_instrumented(function):
        return function
    module = getattr(function, "__module__", None) or "?"
    name = options.name or getattr(function, "__qualname__", None) or getattr(
        function, "__name__", None) or type(function).__qualname__
    impl = function
    if options.ast:
        impl = rewritten(function, options)
    parameters = parameters_of(function, options.args)
    bind: Any = None
    if options.args and parameters.args.startswith("@bind"):
        bind = make_binder(function) or _list_args
    wrapper = _build(callable_kind(function), function, impl, module, name, bind,
                     options.result, options.sample, parameters)
    return mark_instrumented(finish_wrapper(wrapper, function))


def mark_instrumented(wrapper: T) -> T:
    _instrumented.add(wrapper)
    return wrapper


def callable_kind(function: Any) -> str:
    if inspect.isasyncgenfunction(function):
        return "async_generator"
    if inspect.iscoroutinefunction(function):
        return "coroutine"
    if inspect.isgeneratorfunction(function):
        return "generator"
    return "function"


def rewritten(function: Any, options: InstrumentOptions) -> Any:
    """The AST-instrumented copy of ``function``, or ``function`` itself (with a warning)."""
    reason = ("its source is not available (REPL, exec, lambda, builtin) or is not the "
              "function's own (a wrapper made by another decorator)")
    try:
        # Imported by name on first use: the rewriter is heavy and most programs never ask.
        rewrite_function = importlib.import_module(
            "ascope.instrument._ast_rewrite").rewrite_function
        copy = rewrite_function(function, expressions=options.expressions,
                                loop_head=options.loop_head, loop_tail=options.loop_tail)
    except ImportError:
        copy, reason = None, "the AST rewriter is not available"
    except SyntaxError as error:
        copy, reason = None, f"its source does not parse ({error.msg})"
    if copy is None:
        warnings.warn(
            f"ascope.instrument(ast=True): {_describe(function)} gets call capture only: "
            f"{reason}.", SourceUnavailableWarning, stacklevel=4)
        return function
    return copy


def _describe(function: Any) -> str:
    module = getattr(function, "__module__", "?")
    return f"{module}.{getattr(function, '__qualname__', function)!s}"


def _fail(cid: int | None, error: BaseException) -> None:
    """Close call ``cid`` for an exception escaping it."""
    if isinstance(error, _CancelledError):
        _exit(cid, None, None, "cancel")
    elif isinstance(error, GeneratorExit):
        _exit(cid, None, None, "close")
    else:
        _error(error)
        _exit(cid, None, None, "raise")


def _resume_args(resumes: int, key: str | None = None, value: Any = None) -> dict[str, Any]:
    if key is None:
        return {"$resume": resumes}
    return {"$resume": resumes, key: value}


def finish_wrapper(instrumented: Any, function: Any) -> Any:
    """Give the wrapper the wrapped function's globals, then its ``functools.wraps`` face.

    Frameworks resolve string annotations (``from __future__ import annotations``) in
    ``callable.__globals__`` (FastAPI does): a wrapper living in this module's globals
    would break them. The wrappers read nothing from their globals (helpers and
    builtins they use come through their closure), so re-creating one over the original
    module's globals changes nothing else.
    """
    home = getattr(inspect.unwrap(function), "__globals__", None)
    if isinstance(home, dict) and isinstance(home.get("__builtins__"), (dict, types.ModuleType)):
        moved = types.FunctionType(instrumented.__code__, home, instrumented.__name__,
                                   instrumented.__defaults__, instrumented.__closure__)
        moved.__kwdefaults__ = instrumented.__kwdefaults__
        instrumented = moved
    return functools.update_wrapper(instrumented, function)


def _build(kind: str, function: Any, impl: Any, module: str, label: str, bind: Any,
           keep: bool, sample: float, parameters: _Parameters) -> Any:
    """Generate, compile and build the wrapper of ``kind`` for ``function``."""
    environment = dict(zip(_ENV, (
        function, impl, module, label, bind, keep, sample, _STATE, _current, _random,
        _entry, _exit, _fail, _resume_args, BaseException, StopIteration,
        StopAsyncIteration, GeneratorExit), strict=True))
    return generate_wrapper(_TEMPLATES[kind], function, environment, parameters)
