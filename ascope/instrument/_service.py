"""Stateful services: ``@ascope.instrument(state=True)`` on a class (the GenServer counterpart).

Each call of a public method (sync or async) of an instance is one operation:

    service_callback_start   (service, callback, args)
    ... whatever the method does (nested calls and events are its children) ...
    service_callback_success (result)   or   service_callback_error (type, message)
    state_change             (before, after, diff) -- only when the attributes changed
    service_callback_complete (duration)

``service`` names the instance, ``"Counter#3"`` (class qualname and a number given to
each instance the first time it is seen), so a viewer can rebuild one object's state at
any point in time from its ``state_change`` events. ``__init__`` is reported the same
way, its state change starting from ``{}``: the initial state is on record too.

The state is the instance's attributes (``__dict__`` and ``__slots__``), captured with
the usual bounded, redacted value capture when the call starts and when it ends; with
``state=["a", "b"]`` only those attributes. Private methods are not reported (they run
inside a public one); public generator methods get plain call capture; class and static
methods have no instance state and get plain call capture too.
"""

from __future__ import annotations

import inspect
import itertools
import types
import weakref
from typing import Any

from .. import _context as _c
from .. import _values
from .. import runtime as _rt
from ._decorator import (
    InstrumentOptions,
    callable_kind,
    finish_wrapper,
    is_instrumented,
    mark_instrumented,
    rewritten,
    wrap_function,
)
from ._wrappers import PACKED, _list_args, generate_wrapper, make_binder, parameters_of

__all__ = ["instrument_service", "service_name"]

_serials = itertools.count(1)
_names: dict[int, str] = {}  # id(instance) -> name; entries leave with the instance


def service_name(instance: Any) -> str:
    """The name events give one service instance: ``"Counter#3"``."""
    key = id(instance)
    name = _names.get(key)
    if name is not None:
        return name
    qualname = type(instance).__qualname__
    try:
        weakref.finalize(instance, _names.pop, key, None)
    except TypeError:  # no __weakref__ slot: the address is the best identity left
        return f"{qualname}@{key:x}"
    name = _names[key] = f"{qualname}#{next(_serials)}"
    return name


def _slot_names(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return tuple(n for n in names if n not in ("__dict__", "__weakref__"))


_MISSING = {"$missing": True}


def snapshot(instance: Any, watched: tuple[str, ...] | None) -> Any:
    """The instance's attributes, captured now (bounded copies; never raises)."""
    try:
        if watched is not None:
            state = {name: getattr(instance, name, _MISSING) for name in watched}
        else:
            state = dict(getattr(instance, "__dict__", None) or {})
            for name in _slot_names(type(instance)):
                if name not in state and hasattr(instance, name):
                    state[name] = getattr(instance, name)
        return _values.capture(state)
    except Exception:
        _c.STATE.internal_errors += 1
        return None


def instrument_service(cls: type, options: InstrumentOptions) -> type:
    """Report public method calls of ``cls``'s instances as service callbacks."""
    watched = None if options.state is True else tuple(options.state)  # type: ignore[arg-type]
    plain = InstrumentOptions(options.args, options.result, options.name, options.sample,
                              options.ast, options.expressions, False, options.loop_head,
                              options.loop_tail)
    label = options.name
    for attr, value in list(vars(cls).items()):
        if attr.startswith("_") and attr != "__init__":
            continue
        if isinstance(value, (classmethod, staticmethod)):
            wrapped = wrap_function(value.__func__, plain)
            setattr(cls, attr, type(value)(wrapped))
            continue
        if not callable(value) or isinstance(value, type) or is_instrumented(value):
            continue
        kind = callable_kind(value)
        if kind in ("generator", "async_generator") or not _takes_receiver(value):
            setattr(cls, attr, wrap_function(value, plain))
        else:
            setattr(cls, attr, _callback_wrapper(value, attr, kind, options, watched, label))
    return cls


def _takes_receiver(function: Any) -> bool:
    """Whether ``function`` can be a method: a function with a first parameter."""
    if not isinstance(function, types.FunctionType):
        return False
    try:
        first = next(iter(inspect.signature(function, follow_wrapped=False).parameters.values()))
    except (StopIteration, TypeError, ValueError):
        return False
    return first.kind is not inspect.Parameter.KEYWORD_ONLY and first.kind is not (
        inspect.Parameter.VAR_KEYWORD)


def _receiver(function: Any) -> str:
    """The expression naming the instance in a wrapper with ``function``'s parameters."""
    first = next(iter(inspect.signature(function, follow_wrapped=False).parameters.values()))
    return f"{first.name}[0]" if first.kind is inspect.Parameter.VAR_POSITIONAL else first.name


_CALLBACK = """
    $async def $name($params):
        if not @state.on or not @current.get()[5]:
            return $await @function($call)
        @service, @cid, @before = @opened($self, $args)
        try:
            @value = $await @impl($call)
        except @BaseException as @error:
            @failed(@cid, @service, @callback, @error)
            @closed($self, @service, @cid, @before)
            raise
        @succeeded(@cid, @service, @callback, @value if @keep else None)
        @closed($self, @service, @cid, @before)
        return @value
"""


def _callback_wrapper(function: Any, callback: str, kind: str, options: InstrumentOptions,
                      watched: tuple[str, ...] | None, label: str | None) -> Any:
    start, complete = _rt.report_service_callback_start, _rt.report_service_callback_complete
    state_change, take = _rt.report_state_change, snapshot
    initial = callback == "__init__"

    def name_of(instance: Any) -> str:
        name = service_name(instance)
        return name if label is None else label + name[name.find("#"):]

    def opened(instance: Any, args: Any) -> tuple[str, int | None, Any]:
        service = name_of(instance)
        cid = start(service, callback, args)
        return service, cid, ({} if initial else take(instance, watched))

    def closed(instance: Any, service: str, cid: int | None, before: Any) -> None:
        after = take(instance, watched)
        if after != before:
            state_change(service, before, after)
        complete(cid, service, callback)

    parameters = parameters_of(function, options.args)
    packed = parameters.params == PACKED.params
    receiver = "@args[0]" if packed else _receiver(function)
    template = (_CALLBACK.replace("$self", receiver)
                .replace("$async ", "async " if kind == "coroutine" else "")
                .replace("$await ", "await " if kind == "coroutine" else ""))
    environment = {
        "function": function,
        "impl": rewritten(function, options) if options.ast else function,
        "bind": (make_binder(function) or _list_args) if packed and options.args else None,
        "state": _c.STATE, "current": _c.current, "opened": opened, "closed": closed,
        "failed": _rt.report_service_callback_error,
        "succeeded": _rt.report_service_callback_success,
        "callback": callback, "keep": options.result, "BaseException": BaseException,
    }
    wrapper = generate_wrapper(template, function, environment, parameters)
    return mark_instrumented(finish_wrapper(wrapper, function))
