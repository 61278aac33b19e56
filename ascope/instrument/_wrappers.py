"""The wrappers ``@ascope.instrument`` generates, and the argument binders they use.

Kept apart from the decorator's logic (``_decorator.py``): this is code that writes code.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any, NamedTuple

# -- argument capture ------------------------------------------------------------------------


def make_binder(function: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]],
                                                          dict[str, Any]] | None:
    """A fast ``(args, kwargs) -> {parameter: value}`` for ``function``, built once.

    ``inspect.signature().bind`` costs microseconds per call; this zips names instead.
    Parameters not passed get their default. A leading ``self``/``cls`` of a method is
    left out (its state is what ``state=True`` records). Returns None when the
    signature cannot be read: arguments are then captured as a plain list.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    positional: list[str] = []
    keyword_names: set[str] = set()
    var_positional = var_keyword = None
    defaults: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            positional.append(parameter.name)
        elif parameter.kind is P.VAR_POSITIONAL:
            var_positional = parameter.name
        elif parameter.kind is P.VAR_KEYWORD:
            var_keyword = parameter.name
        if parameter.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            keyword_names.add(parameter.name)
        if parameter.default is not P.empty:
            defaults[parameter.name] = parameter.default
    qualname = getattr(function, "__qualname__", "") or ""
    skip = 1 if (positional and positional[0] in ("self", "cls") and "." in qualname
                 and not qualname.endswith("<locals>." + function.__name__)) else 0
    names = tuple(positional[skip:])
    count = len(positional)
    if skip:
        defaults.pop(positional[0], None)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        captured = dict(zip(names, args[skip:] if skip else args, strict=False))
        if var_positional is not None and len(args) > count:
            captured[var_positional] = args[count:]
        if kwargs:
            if var_keyword is None:
                captured.update(kwargs)
            else:
                extra = {}
                for key, value in kwargs.items():
                    if key in keyword_names:
                        captured[key] = value
                    else:
                        extra[key] = value
                if extra:
                    captured[var_keyword] = extra
        if defaults and len(captured) < len(defaults) + len(names):
            for key, value in defaults.items():
                if key not in captured:
                    captured[key] = value
        return captured

    keyword_only_defaults = any(name not in positional for name in defaults)
    if not names or len(names) > 8 or keyword_only_defaults:
        return bind
    # The common call passes every positional parameter positionally and nothing else: a
    # dict display built for this signature is ~3x cheaper than dict(zip(...)). The names
    # are parameter names (identifiers), so the generated source is plain and safe.
    items = ", ".join(f"{name!r}: args[{index + skip}]" for index, name in enumerate(names))
    source = (f"def bind_positional(args, kwargs):\n"
              f"    if not kwargs and len(args) == {count}:\n"
              f"        return {{{items}}}\n"
              f"    return bind(args, kwargs)\n")
    namespace: dict[str, Any] = {"bind": bind, "len": len}
    exec(source, namespace)
    fast: Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]] = namespace[
        "bind_positional"]
    return fast


def _list_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return [*args, kwargs] if kwargs else args


# -- generated wrappers ------------------------------------------------------------------------
#
# Each wrapper is generated from a template with the wrapped function's own parameter list
# (when it has a plain one), so that
# - a call with arguments the function does not take raises TypeError at the call, also for
#   coroutine and generator functions (a `*args, **kwargs` wrapper would defer it to the
#   first await / next);
# - nothing is packed into a tuple and a dict and unpacked again: a call while capture is
#   off is one flag check and a plain call;
# - the arguments are captured as a dict display of the locals.
# The template's own names start with `@`, replaced by `__ascope_` so no parameter name can
# shadow them; helpers and builtins come in as arguments of the generated factory and are
# read from the wrapper's closure, never from its globals.

_ENV = ("function", "impl", "module", "label", "bind", "keep", "sample", "state", "current",
        "rand", "entry", "exit", "fail", "resume", "BaseException", "StopIteration",
        "StopAsyncIteration", "GeneratorExit")

_OFF = "not @state.on or not @current.get()[5] or (@sample < 1.0 and @rand() >= @sample)"

_TEMPLATES = {
    "function": """
    def $name($params):
        if not @state.on:
            return @function($call)
        if not @current.get()[5] or (@sample < 1.0 and @rand() >= @sample):
            return @function($call)
        @cid = @entry(@module, @label, $args)
        try:
            @value = @impl($call)
        except @BaseException as @error:
            @fail(@cid, @error)
            raise
        @exit(@cid, @value if @keep else None)
        return @value
""",
    "coroutine": """
    async def $name($params):
        if not @state.on:
            return await @function($call)
        if not @current.get()[5] or (@sample < 1.0 and @rand() >= @sample):
            return await @function($call)
        @cid = @entry(@module, @label, $args)
        try:
            @value = await @impl($call)
        except @BaseException as @error:
            @fail(@cid, @error)
            raise
        @exit(@cid, @value if @keep else None)
        return @value
""",
    # Driven by hand rather than with `yield from` so each resume can open a segment in
    # the resumer's context; this follows PEP 380's expansion of `yield from`.
    "generator": """
    def $name($params):
        if $off:
            return (yield from @function($call))
        @cid = @entry(@module, @label, $args)
        try:
            @generator = @impl($call)
            @value = @generator.send(None)
        except @StopIteration as @stop:
            @exit(@cid, @stop.value if @keep else None)
            return @stop.value
        except @BaseException as @error:
            @fail(@cid, @error)
            raise
        @resumes = 0
        while True:
            @exit(@cid, @value if @keep else None, None, "yield")
            try:
                @sent = yield @value
            except @GeneratorExit:
                @resumes += 1
                @entry(@module, @label, @resume(@resumes, "$close", True), @cid)
                try:
                    @generator.close()
                except @BaseException as @error:
                    @fail(@cid, @error)
                    raise
                @exit(@cid, None, None, "close")
                raise
            except @BaseException as @thrown:
                @resumes += 1
                @entry(@module, @label, @resume(@resumes, "$throw", type(@thrown).__qualname__),
                       @cid)
                try:
                    @value = @generator.throw(@thrown)
                except @StopIteration as @stop:
                    @exit(@cid, @stop.value if @keep else None)
                    return @stop.value
                except @BaseException as @error:
                    @fail(@cid, @error)
                    raise
            else:
                @resumes += 1
                @entry(@module, @label, @resume(@resumes) if @sent is None
                       else @resume(@resumes, "$send", @sent), @cid)
                try:
                    @value = @generator.send(@sent)
                except @StopIteration as @stop:
                    @exit(@cid, @stop.value if @keep else None)
                    return @stop.value
                except @BaseException as @error:
                    @fail(@cid, @error)
                    raise
""",
    # Async generators have no `yield from`: both paths drive the inner generator by hand,
    # forwarding asend/athrow/aclose the way `yield from` does for generators.
    "async_generator": """
    async def $name($params):
        if $off:
            @generator = @function($call)
            try:
                @value = await @generator.__anext__()
            except @StopAsyncIteration:
                return
            while True:
                try:
                    @sent = yield @value
                except @GeneratorExit:
                    await @generator.aclose()
                    raise
                except @BaseException as @thrown:
                    try:
                        @value = await @generator.athrow(@thrown)
                    except @StopAsyncIteration:
                        return
                else:
                    try:
                        @value = await (@generator.__anext__() if @sent is None
                                        else @generator.asend(@sent))
                    except @StopAsyncIteration:
                        return
        @cid = @entry(@module, @label, $args)
        try:
            @generator = @impl($call)
            @value = await @generator.__anext__()
        except @StopAsyncIteration:
            @exit(@cid, None)
            return
        except @BaseException as @error:
            @fail(@cid, @error)
            raise
        @resumes = 0
        while True:
            @exit(@cid, @value if @keep else None, None, "yield")
            try:
                @sent = yield @value
            except @GeneratorExit:
                @resumes += 1
                @entry(@module, @label, @resume(@resumes, "$close", True), @cid)
                try:
                    await @generator.aclose()
                except @BaseException as @error:
                    @fail(@cid, @error)
                    raise
                @exit(@cid, None, None, "close")
                raise
            except @BaseException as @thrown:
                @resumes += 1
                @entry(@module, @label, @resume(@resumes, "$throw", type(@thrown).__qualname__),
                       @cid)
                try:
                    @value = await @generator.athrow(@thrown)
                except @StopAsyncIteration:
                    @exit(@cid, None)
                    return
                except @BaseException as @error:
                    @fail(@cid, @error)
                    raise
            else:
                @resumes += 1
                @entry(@module, @label, @resume(@resumes) if @sent is None
                       else @resume(@resumes, "$send", @sent), @cid)
                try:
                    @value = await (@generator.__anext__() if @sent is None
                                    else @generator.asend(@sent))
                except @StopAsyncIteration:
                    @exit(@cid, None)
                    return
                except @BaseException as @error:
                    @fail(@cid, @error)
                    raise
""",
}


class _Parameters(NamedTuple):
    params: str  # the parameter list of the wrapper's def
    call: str  # the arguments that pass them on to the wrapped function
    args: str  # the expression the captured arguments are (a dict display, or a bind call)


PACKED = _Parameters("*@args, **@kwargs", "*@args, **@kwargs", "@bind(@args, @kwargs)")


def parameters_of(function: Any, capture_args: bool) -> _Parameters:
    """The wrapper's parameter list: the function's own when it has a plain one."""
    if (type(function) is not types.FunctionType or "__wrapped__" in vars(function)
            or "__signature__" in vars(function)):
        return PACKED if capture_args else PACKED._replace(args="None")
    try:
        signature = inspect.signature(function, follow_wrapped=False)
    except (TypeError, ValueError):
        return PACKED if capture_args else PACKED._replace(args="None")
    P = inspect.Parameter
    params: list[str] = []
    call: list[str] = []
    names: list[str] = []
    previous = None
    for parameter in signature.parameters.values():
        name, kind = parameter.name, parameter.kind
        if not name.isidentifier() or name.startswith("__ascope_"):
            return PACKED if capture_args else PACKED._replace(args="None")
        if previous is P.POSITIONAL_ONLY and kind is not P.POSITIONAL_ONLY:
            params.append("/")
        if kind is P.KEYWORD_ONLY and previous not in (P.KEYWORD_ONLY, P.VAR_POSITIONAL):
            params.append("*")
        # Placeholder defaults: the wrapper gets the function's own __defaults__ and
        # __kwdefaults__ objects once it is built.
        default = "=None" if parameter.default is not P.empty else ""
        if kind is P.VAR_POSITIONAL:
            params.append(f"*{name}")
            call.append(f"*{name}")
        elif kind is P.VAR_KEYWORD:
            params.append(f"**{name}")
            call.append(f"**{name}")
        elif kind is P.KEYWORD_ONLY:
            params.append(name + default)
            call.append(f"{name}={name}")
        else:
            params.append(name + default)
            call.append(name)
        names.append(name)
        previous = kind
    if previous is P.POSITIONAL_ONLY:
        params.append("/")
    if names and _skips_receiver(function, names[0], signature):
        names = names[1:]
    args = ("{" + ", ".join(f"{n!r}: {n}" for n in names) + "}") if capture_args else "None"
    return _Parameters(", ".join(params), ", ".join(call), args)


def _skips_receiver(function: Any, first: str, signature: inspect.Signature) -> bool:
    """Whether the first parameter is a method's self/cls (left out of captured args)."""
    qualname = getattr(function, "__qualname__", "") or ""
    parameter = next(iter(signature.parameters.values()))
    return (first in ("self", "cls") and "." in qualname
            and not qualname.endswith("<locals>." + function.__name__)
            and parameter.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                   inspect.Parameter.POSITIONAL_OR_KEYWORD))


def generate_wrapper(template: str, function: Any, environment: dict[str, Any],
                     parameters: _Parameters) -> Any:
    """Compile ``template`` (a def, indented 4, using ``$name $params $call $args $off``
    and ``@name`` for each key of ``environment``) into a wrapper of ``function``."""
    name = getattr(function, "__name__", "")
    if not (isinstance(name, str) and name.isidentifier()) or name.startswith("__ascope_"):
        name = "instrumented"
    body = (template
            .replace("$name", name).replace("$params", parameters.params)
            .replace("$call", parameters.call).replace("$args", parameters.args)
            .replace("$off", _OFF).replace("@", "__ascope_"))
    factory = "".join(["def __ascope_make(", ", ".join("__ascope_" + n for n in environment),
                       "):", body, f"    return {name}\n"])
    namespace: dict[str, Any] = {}
    exec(compile(factory, "<ascope.instrument wrapper>", "exec"), namespace)
    wrapper = namespace["__ascope_make"](*environment.values())
    if parameters.params != PACKED.params:
        wrapper.__defaults__ = function.__defaults__
        wrapper.__kwdefaults__ = function.__kwdefaults__
    return wrapper
