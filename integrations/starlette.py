"""Starlette / FastAPI route handlers as ``endpoint_entry`` / ``endpoint_exit``.

Every Starlette-based router hands a matched request to ``route.handle(scope, receive,
send)`` after writing ``scope["route"]``, ``scope["endpoint"]`` and ``scope["path_params"]``.
``wrap_routes()`` wraps ``handle`` on the route classes (Starlette's ``Route`` and
``WebSocketRoute``, FastAPI's ``APIRoute`` and ``APIWebSocketRoute``, and any subclass
defining its own ``handle`` that exists when it runs), once per class:

- under ``AscopeMiddleware`` (the scope holds its request state), the handler runs inside
  an endpoint operation named by the endpoint's qualname, with the route template and the
  path parameters; for a websocket the route names the channel instead;
- otherwise the wrapper returns the original coroutine untouched: no extra await, nothing
  recorded, so applications without the middleware see no difference.

Why the route classes rather than each route's ``app``: routes added after the middleware
(decorators, ``include_router``, mounted sub-applications, FastAPI's lazily built
included-router contexts) are covered without walking the routing tree per request.

The endpoint operation spans the route's whole handling: the handler, sending its
response and the background tasks Starlette runs after it. ``endpoint_exit.result`` is the
response status.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ascope import _context as _c

__all__ = ["unwrap_routes", "wrap_routes"]

_STATE = _c.STATE
_SCOPE_KEY = "ascope"

_wrapped: dict[type, Callable[..., Any]] = {}  # class -> its original handle
_names: dict[int, tuple[Any, str, str | None, bool]] = {}  # id(route) -> (route, name, path, cls)


def _route_classes() -> list[type]:
    classes: list[type] = []
    try:
        from starlette import routing

        classes += [routing.Route, routing.WebSocketRoute]
    except ImportError:
        return classes
    try:
        from fastapi import routing as fastapi_routing

        for name in ("APIRoute", "APIWebSocketRoute"):
            cls = getattr(fastapi_routing, name, None)
            if isinstance(cls, type):
                classes.append(cls)
    except ImportError:
        pass
    # Subclasses that override handle themselves (the base wrapper would not see them).
    seen: set[type] = set(classes)
    stack: list[type] = list(classes)
    while stack:
        subclasses: list[type] = stack.pop().__subclasses__()
        for sub in subclasses:
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if "handle" in sub.__dict__:
                    classes.append(sub)
    return classes


def wrap_routes() -> None:
    """Wrap ``handle`` on the route classes (idempotent)."""
    for cls in _route_classes():
        if cls in _wrapped or "handle" not in cls.__dict__:
            continue
        original = cls.__dict__["handle"]
        if getattr(original, "__ascope_original__", None) is not None:
            continue
        _wrapped[cls] = original
        cls.handle = _make_handle(original)  # type: ignore[attr-defined]


def unwrap_routes() -> None:
    """Put the original ``handle`` methods back."""
    for cls, original in list(_wrapped.items()):
        cls.handle = original  # type: ignore[attr-defined]
        del _wrapped[cls]
    _names.clear()


def _make_handle(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def handle(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        # A plain function returning the coroutine: without the middleware, the caller
        # awaits exactly the original coroutine.
        state = scope.get(_SCOPE_KEY) if _STATE.on else None
        if state is None or state.in_endpoint:
            return original(self, scope, receive, send)
        try:
            name, template, action = _describe(self, scope, state)
        except Exception:
            _STATE.internal_errors += 1
            return original(self, scope, receive, send)
        return state.run_endpoint(original, self, scope, receive, send, name, template, action)

    handle.__ascope_original__ = original  # type: ignore[attr-defined]
    return handle


def _describe(route: Any, scope: Any, state: Any) -> tuple[str, str | None, str | None]:
    """(endpoint qualname, full route template, action) of the route handling ``scope``."""
    entry = _names.get(id(route))
    if entry is None or entry[0] is not route:
        entry = _name_route(route)
    _, name, path, is_class = entry
    template = path
    # FastAPI applies include_router prefixes lazily: the effective context has the
    # template as seen from the application.
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:
        context = fastapi_scope.get("effective_route_context")
        if context is not None and getattr(context, "original_route", None) is route:
            effective = getattr(context, "path_format", None)
            if isinstance(effective, str):
                template = effective
    # Mounts move their (matched) prefix into root_path.
    root_path = scope.get("root_path", "")
    base = state.scope_root_path
    if template is not None and root_path != base and root_path.startswith(base):
        template = root_path[len(base):] + template
    action = scope["method"].lower() if is_class and scope.get("method") else None
    return name, template, action


def _name_route(route: Any) -> tuple[Any, str, str | None, bool]:
    endpoint = getattr(route, "endpoint", None)
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    module = getattr(endpoint, "__module__", None)
    qualname = getattr(endpoint, "__qualname__", None) or getattr(endpoint, "__name__", None)
    if isinstance(qualname, str):
        name = f"{module}.{qualname}" if isinstance(module, str) else qualname
    else:
        name = type(endpoint).__qualname__
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    entry = (route, name, path if isinstance(path, str) else None, isinstance(endpoint, type))
    if len(_names) > 10_000:  # routes built per request would otherwise pile up here
        _names.clear()
    _names[id(route)] = entry
    return entry
