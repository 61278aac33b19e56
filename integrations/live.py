"""Live sessions (the LiveView counterpart): pyview-web's mounts and events.

pyview-web (``import pyview``) is the Python LiveView: a Starlette application whose
views keep server-side state (``socket.context``, the assigns) and receive browser
events over a Phoenix-protocol websocket. ``wrap_pyview()`` wraps the two functions
pyview calls for every view lifecycle step, ``pyview.binding.call_mount`` and
``call_handle_event`` (as bound in ``pyview.ws_handler`` and ``pyview.pyview``), so:

- a mount (the first HTTP render and again when the websocket joins) is
  ``live_mount_start`` (view, session) ... ``live_mount_complete`` (assigns after);
- each event handler is ``live_event_start`` (view, event, payload, assigns before) ...
  ``live_assigns`` (before, after) ... ``live_event_complete`` (assigns after);
- an exception is an ``error`` event inside the operation, then re-raised unchanged.

Under ``AscopeMiddleware`` these sit inside the request (the HTTP render) or inside the
websocket channel's message that carried the event, so a live session reads as: channel
> message ``phx_join`` > mount, message ``event`` > live event > the handler's own calls.
``AscopeMiddleware`` calls ``wrap_pyview()`` when pyview has been imported; call it
yourself otherwise. ``unwrap_pyview()`` restores pyview.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ascope import _values, runtime

__all__ = ["unwrap_pyview", "wrap_pyview"]

_MODULES = ("pyview.ws_handler", "pyview.pyview")
_originals: list[tuple[Any, str, Any]] = []  # (module, name, original)


def wrap_pyview() -> bool:
    """Wrap pyview's mount and event calls (idempotent). False if pyview is missing."""
    if _originals:
        return True
    try:
        import pyview.pyview  # type: ignore[import-untyped]
        import pyview.ws_handler  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    for module_name in _MODULES:
        module = sys.modules[module_name]
        for name, wrap in (("call_mount", _wrap_mount), ("call_handle_event", _wrap_event)):
            original = getattr(module, name, None)
            if original is None or getattr(original, "__ascope_original__", None):
                continue
            wrapped = wrap(original)
            wrapped.__ascope_original__ = original  # type: ignore[attr-defined]
            _originals.append((module, name, original))
            setattr(module, name, wrapped)
    return True


def unwrap_pyview() -> None:
    """Put pyview's own functions back."""
    while _originals:
        module, name, original = _originals.pop()
        setattr(module, name, original)


def view_name(view: Any) -> str:
    cls = type(view)
    return f"{cls.__module__}.{cls.__qualname__}"


def assigns_of(socket: Any) -> Any:
    """A bounded, redacted snapshot of a live socket's assigns, taken now."""
    context = getattr(socket, "context", None)
    try:
        if dataclasses.is_dataclass(context) and not isinstance(context, type):
            context = {field.name: getattr(context, field.name)
                       for field in dataclasses.fields(context)}
        elif context is not None and not isinstance(context, (dict, list, tuple, str, int,
                                                              float, bool)):
            attributes = getattr(context, "__dict__", None)
            if isinstance(attributes, dict):
                context = dict(attributes)
    except Exception:
        pass
    return _values.snapshot(context)


def _wrap_mount(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def call_mount(lv: Any, socket: Any, session: Any, *args: Any, **kwargs: Any) -> Any:
        if not runtime.enabled():
            return await original(lv, socket, session, *args, **kwargs)
        name = view_name(lv)
        cid = runtime.report_live_mount_start(
            name, {"connected": type(socket).__name__.startswith("Connected")}, session)
        try:
            result = await original(lv, socket, session, *args, **kwargs)
        except BaseException as error:
            runtime.report_error(error, source="live")
            runtime.report_live_mount_complete(cid, name, _safe_assigns(socket))
            raise
        runtime.report_live_mount_complete(cid, name, _safe_assigns(socket))
        return result

    return call_mount


def _wrap_event(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def call_handle_event(lv: Any, event: Any, payload: Any, socket: Any,
                                *args: Any, **kwargs: Any) -> Any:
        if not runtime.enabled():
            return await original(lv, event, payload, socket, *args, **kwargs)
        name = view_name(lv)
        before = _safe_assigns(socket)
        cid = runtime.report_live_event_start(name, event, payload, before)
        try:
            result = await original(lv, event, payload, socket, *args, **kwargs)
        except BaseException as error:
            runtime.report_error(error, source="live")
            after = _safe_assigns(socket)
            runtime.report_live_assigns(name, before, after)
            runtime.report_live_event_complete(cid, name, event, after,
                                               {"raised": type(error).__qualname__})
            raise
        after = _safe_assigns(socket)
        runtime.report_live_assigns(name, before, after)
        runtime.report_live_event_complete(cid, name, event, after, None)
        return result

    return call_handle_event


def _safe_assigns(socket: Any) -> Any:
    try:
        return assigns_of(socket)
    except Exception:
        return None
