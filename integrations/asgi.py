"""Pure ASGI middleware: every request becomes a correlated trace, every websocket a channel.

    app.add_middleware(AscopeMiddleware)        # Starlette / FastAPI
    app = AscopeMiddleware(app)                 # any ASGI 3 application

``http`` scopes produce ``http_request_start`` / ``http_request_complete`` around the whole
request (one correlation id per request, the root of everything inside it), with
``endpoint_entry`` / ``endpoint_exit`` around the Starlette/FastAPI route handler
(``integrations/starlette.py``). ``websocket`` scopes become channels: ``channel_join_start``
/ ``channel_join_complete``, one ``channel_message_start`` / ``channel_message_complete``
per message received, ``message_send`` per message sent, and ``channel_leave``. ``lifespan``
and unknown scope types pass through untouched. docs/integrations.md has the event tree.

The middleware builds its own context frames (see ``ascope/_context.py``) instead of going
through the ``report_*`` functions, for two reasons: a request's start event is emitted
once its route is known (stamped with the time the request arrived), and the request's
completion must not pop the context of the code still running (background tasks after
the response stay the request's children). Everything here is guarded: a failure inside
ascope is counted in ``ascope.stats().internal_errors`` and never reaches the application.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ascope import _context as _c
from ascope import _pipeline

from ._asgi_base import (
    _STATE,
    DEFAULT_HEADERS,
    SCOPE_KEY,
    SENSITIVE_HEADERS,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    _capture,
    _child_frame,
    _emit,
    _error_payload,
    _HeaderSelection,
    _incoming_frame,
    _internal_error,
    _now,
    _path_params,
    _query_params,
    _route_of,
    _sampled,
    _unsampled,
    logger,
)
from ._websocket import _Channel

# Assigned, not imported (see ascope/runtime.py): method calls on it skip a bound method.
_current = _c.current

__all__ = ["DEFAULT_HEADERS", "SENSITIVE_HEADERS", "AscopeMiddleware"]


# -- HTTP ------------------------------------------------------------------------------------


class _Request:
    """One HTTP request's state: its frame, what the response said so far, the outcome."""

    __slots__ = ("_receive", "_send", "content_type", "disconnected", "done", "endpoint",
                 "endpoint_action", "endpoint_frame", "frame", "in_endpoint", "middleware",
                 "route", "scope", "scope_root_path", "size",
                 "start_payload", "started", "status", "trailers")

    def __init__(self, middleware: AscopeMiddleware, scope: Scope, parent: _c.Frame,
                 receive: Receive, send: Send, trace_id: str | None = None) -> None:
        # trace_id: the one sampling decided on (the traceparent's, or the new trace's).
        now = _now()
        self.middleware = middleware
        self.scope = scope
        self.scope_root_path = scope.get("root_path", "")
        self._receive = receive
        self._send = send
        self.started = False
        self.done = False
        # True while a route handler runs, and from the start when endpoints are not
        # recorded by this middleware (the route wrappers then pass through).
        self.in_endpoint = not middleware.endpoints
        self.endpoint_frame: _c.Frame | None = None  # the open endpoint operation
        self.endpoint_action: str | None = None
        self.disconnected = False
        self.trailers = False
        self.status: int | None = None
        self.content_type: str | None = None
        self.size = 0
        self.route: str | None = None
        self.endpoint: str | None = None
        self.frame, selected = _incoming_frame(middleware.headers, scope, parent, trace_id,
                                               now)
        query = scope.get("query_string")
        # Captured now (the scope may change as it travels down); emitted in emit_start.
        self.start_payload = (scope.get("method"), _capture(scope.get("path")),
                              _query_params(query) if query else None, scope.get("client"),
                              selected)

    # events ------------------------------------------------------------------------------

    def emit_start(self, route: str | None) -> None:
        """The request's start event: stamped with the arrival time, sent once the route is
        known (or at the first response message, whichever comes first)."""
        self.started = True
        method, path, params, client, headers = self.start_payload
        frame = self.frame
        _emit("http_request_start", frame[7], frame,
              (method, path, params, client, headers, route))

    def close_endpoint(self, outcome: str) -> None:
        """``endpoint_exit``: when the response ends (the handler's part of the request is
        over; background tasks that follow stay its children), or when the route's
        handling returns or raises, whichever comes first."""
        frame = self.endpoint_frame
        if frame is None:
            return
        self.endpoint_frame = None
        now = _now()
        _emit("endpoint_exit", now, frame,
              (self.endpoint, self.endpoint_action, self.status, outcome, now - frame[7]))

    def complete(self, outcome: str) -> None:
        if self.done:
            return
        self.done = True
        if not self.started:
            self.emit_start(self.route)
        if self.endpoint_frame is not None:
            self.close_endpoint("return" if outcome == "complete" else "raise")
        now = _now()
        frame = self.frame
        _emit("http_request_complete", now, frame,
              (self.status, self.content_type, self.size, now - frame[7], outcome))

    def fail(self, error: BaseException) -> None:
        """An exception escaped the application (it is re-raised by the caller)."""
        try:
            if isinstance(error, asyncio.CancelledError):
                self.complete("cancelled")
                return
            if not self.started:
                self.emit_start(self.route)
            _emit("error", _now(), self.frame, _error_payload(error, "asgi"))
            if not self.done:
                if self.status is None:
                    self.status = 500
                self.complete("disconnect" if isinstance(error, OSError) else "error")
        except Exception:
            _internal_error()

    def finish(self) -> None:
        """The application returned: close a request whose response never ended."""
        try:
            if not self.done:
                self.complete("disconnect" if self.disconnected else "incomplete")
        except Exception:
            _internal_error()

    # the wrapped channel -----------------------------------------------------------------

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.done:
            self.disconnected = True
        return message

    def send(self, message: Message) -> Awaitable[None]:
        """The wrapped ``send``: a plain function returning what the server's ``send``
        returns, except for the response's last message, whose coroutine sees how the
        server's ``send`` ended (one awaiting layer fewer per message). A message it
        cannot read (not a mapping, no type, a body without a length) goes to the
        server's ``send`` as it is, which says what is wrong where it would have said
        so without ascope: when awaited."""
        try:
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    self.size += len(body)
                if not message.get("more_body", False) and not self.trailers:
                    return self._send_last(message)
            elif kind == "http.response.start":
                self._response_started(message)
            elif kind == "http.response.pathsend" or (
                    kind == "http.response.trailers"
                    and not message.get("more_trailers", False)):
                return self._send_last(message)
        except Exception:
            pass
        return self._send(message)

    async def _send_last(self, message: Message) -> None:
        try:
            await self._send(message)
        except BaseException as error:
            if not self.done:
                try:
                    self.complete("disconnect" if isinstance(error, OSError) else "error")
                except Exception:
                    _internal_error()
            raise
        if not self.done:
            try:
                self.complete("complete")
            except Exception:
                _internal_error()

    def _response_started(self, message: Message) -> None:
        try:
            self.status = message.get("status")
            self.trailers = bool(message.get("trailers", False))
            for name, value in message.get("headers") or ():
                if name == b"content-type" or name == b"Content-Type":
                    self.content_type = value.decode("latin-1")
                    break
            if not self.started:
                self.emit_start(self.route or _route_of(self.scope)[1])
        except Exception:
            _internal_error()

    # the route handler (called by the wrapped Starlette/FastAPI routes) --------------------

    async def run_endpoint(self, handle: Callable[..., Awaitable[None]], route: Any,
                           scope: Scope, receive: Receive, send: Send, name: str,
                           template: str | None, action: str | None) -> None:
        """Run a route's handler inside ``endpoint_entry`` / ``endpoint_exit``."""
        try:
            self.in_endpoint = True
            self.route = template
            self.endpoint = name
            if not self.started:
                self.emit_start(template)
            parent = _current.get()
            now = _now()
            frame = _child_frame(parent, parent[0], now)
            if frame[_c.RING] is None:
                frame = frame[:_c.RING] + (self.frame[_c.RING],)
            params = scope.get("path_params")
            self.endpoint_action = action
            self.endpoint_frame = frame
            _emit("endpoint_entry", now, frame,
                  (name, action, _path_params(params) if params else None, template))
            token = _current.set(frame)
        except Exception:
            _internal_error()
            await handle(route, scope, receive, send)
            return
        outcome = "return"
        try:
            await handle(route, scope, receive, send)
        except asyncio.CancelledError:
            outcome = "cancel"
            raise
        except BaseException:
            outcome = "raise"
            raise
        finally:
            _current.reset(token)
            try:
                self.close_endpoint(outcome)
            except Exception:
                _internal_error()


# -- the middleware --------------------------------------------------------------------------


class AscopeMiddleware:
    """Capture every HTTP request and websocket connection an ASGI application serves.

    Options:

    - ``enable`` (default True): switch capture on into the configured sinks
      (``ascope.enable()``) when the middleware is built. With False, capture follows
      whatever switched it on elsewhere (``ascope.testing.capture()``, the environment).
    - ``integrations`` (default True): switch on the library integrations
      (``ascope.integrations.enable()``: database drivers, httpx) whose library is
      installed; a list of names enables only those; False enables none.
    - ``endpoints`` (default True): wrap Starlette/FastAPI route handlers so each request
      records ``endpoint_entry`` / ``endpoint_exit``.
    - ``headers``: request header names to record (default ``DEFAULT_HEADERS``);
      ``sensitive_headers``: names recorded as ``[redacted]`` (default
      ``SENSITIVE_HEADERS``; names matching ``configure(redact=...)`` are redacted too).
    - ``websockets`` (default True): record websocket connections as channels.
    - ``live`` (default True): when pyview-web has been imported, record its live views'
      mounts and events (``ascope.integrations.live``).

    How many requests and connections are recorded is ``ascope.configure(sample_rate=...)``
    (default: all); one left out runs with capture off for its whole task.
    """

    def __init__(self, app: ASGIApp, *, enable: bool = True,
                 integrations: bool | Iterable[str] = True, endpoints: bool = True,
                 headers: Iterable[str] = DEFAULT_HEADERS,
                 sensitive_headers: Iterable[str] = SENSITIVE_HEADERS,
                 websockets: bool = True, live: bool = True) -> None:
        self.app = app
        self.headers = _HeaderSelection(headers, sensitive_headers)
        self.websockets = websockets
        self.endpoints = endpoints
        if endpoints:
            _wrap_route_handlers()
        if live and "pyview" in sys.modules:
            _wrap_live_views()
        if integrations:
            _enable_integrations(integrations)
        if enable:
            import ascope

            ascope.enable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if ((kind == "http" or (kind == "websocket" and self.websockets)) and _STATE.on
                and SCOPE_KEY not in scope):
            parent = _current.get()
            if parent[5]:
                trace_id = None
                if _STATE.sample_rate < 1.0:
                    recorded, trace_id = _sampled_safely(scope)
                    if not recorded:
                        # Left out: capture off for the request's task (inline, not a
                        # helper coroutine: one awaiting layer fewer per resumption).
                        token = _current.set(_unsampled(parent, trace_id))
                        try:
                            await self.app(scope, receive, send)
                        finally:
                            _current.reset(token)
                        return
                if kind == "websocket":
                    await self._websocket(scope, receive, send, parent, trace_id)
                    return
                try:
                    request = _Request(self, scope, parent, receive, send, trace_id)
                    scope[SCOPE_KEY] = request
                    token = _current.set(request.frame)
                except Exception:
                    _internal_error()
                    await self.app(scope, receive, send)
                    return
                try:
                    await self.app(scope, request.receive, request.send)
                except BaseException as error:
                    request.fail(error)
                    raise
                finally:
                    _current.reset(token)
                    if not request.done:
                        request.finish()
                    # The request state and the scope refer to each other: unlinking them
                    # lets reference counting free both (with whatever the scope holds) now,
                    # instead of leaving a cycle per request to the garbage collector.
                    if scope.get(SCOPE_KEY) is request:
                        del scope[SCOPE_KEY]
                return
        elif kind == "lifespan" and _STATE.on:
            # The server's loop: set it up (ring, drainer, task factory) before any request.
            try:
                _pipeline.attach_current_loop()
            except Exception:
                _internal_error()
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send,
                         parent: _c.Frame, trace_id: str | None) -> None:
        try:
            channel = _Channel(self, scope, parent, receive, send, trace_id)
            scope[SCOPE_KEY] = channel
            token = _current.set(channel.frame)
        except Exception:
            _internal_error()
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, channel.receive, channel.send)
        except BaseException as error:
            channel.leave(error)
            raise
        finally:
            _current.reset(token)
            channel.leave(None)
            if scope.get(SCOPE_KEY) is channel:  # no cycle left to the collector (see http)
                del scope[SCOPE_KEY]


def _sampled_safely(scope: Scope) -> tuple[bool, str | None]:
    try:
        return _sampled(scope)
    except Exception:
        _internal_error()
        return True, None


def _wrap_route_handlers() -> None:
    try:
        from . import starlette

        starlette.wrap_routes()
    except ImportError:
        pass
    except Exception:
        _internal_error()


def _wrap_live_views() -> None:
    try:
        from . import live

        live.wrap_pyview()
    except Exception:
        _internal_error()


def _enable_integrations(which: bool | Iterable[str]) -> None:
    """Switch library integrations on; tolerate their registry not existing yet."""
    try:
        import ascope.integrations as registry

        enable = getattr(registry, "enable", None)
        if enable is None:
            return
        if which is True:
            enable()
        else:
            enable(*which)  # type: ignore[misc]
    except Exception:
        logger.exception("ascope: enabling library integrations failed; requests are still "
                         "captured")

