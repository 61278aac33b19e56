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
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ascope import _context as _c
from ascope import _pipeline, _values

from . import _traceparent

__all__ = ["DEFAULT_HEADERS", "SENSITIVE_HEADERS", "AscopeMiddleware"]

logger = logging.getLogger("ascope")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Request headers recorded by default; others are left out (they cost and rarely help).
DEFAULT_HEADERS = ("host", "user-agent", "accept", "content-type", "content-length",
                   "referer", "origin", "x-request-id", "x-forwarded-for", "traceparent",
                   "tracestate", "authorization", "cookie", "proxy-authorization",
                   "x-api-key")
# Recorded as present but with the value replaced (the names also match ascope's redaction
# words, so a header configured by the user is redacted the same way).
SENSITIVE_HEADERS = ("authorization", "cookie", "proxy-authorization", "x-api-key",
                     "set-cookie", "x-auth-token", "x-csrf-token")

SCOPE_KEY = "ascope"  # scope entry holding the request/channel state (inner code reads it)

_now = time.perf_counter_ns
_current = _c.current
_STATE = _c.STATE
_REDACTED = _values.REDACTED
_capture = _values.capture
_snapshot = _values.snapshot


_logged = False


def _internal_error() -> None:
    global _logged
    _STATE.internal_errors += 1
    if not _logged:
        _logged = True
        logger.exception("ascope: the ASGI integration failed internally; the application "
                         "was not affected. Further failures are only counted in stats().")


_emit = _pipeline.emit_event  # (kind, ts_ns, frame, payload): appends to the frame's ring


def _new_ids() -> int:
    # _c.ids is replaced in forked children: read it each time.
    return next(_c.ids)


def _root_frame(parent: _c.Frame, trace_id: str, now: int) -> _c.Frame:
    """A request/connection frame: no parent id (it is the root), the caller's task."""
    ring = parent[_c.RING]
    if ring is None:
        # A task ascope's factory did not create (or the loop's first event): attach the
        # loop now (ring, drainer, task factory) so the rest of the request is fast.
        parent = _pipeline.attach_current_loop()
        ring = parent[_c.RING]
    return (_new_ids(), None, parent, parent[_c.TASK], trace_id, True, parent[_c.SCOPE], now,
            ring)


def _child_frame(parent: _c.Frame, parent_id: Any, now: int) -> _c.Frame:
    return (_new_ids(), parent_id, parent, parent[_c.TASK], parent[_c.TRACE], True,
            parent[_c.SCOPE], now, parent[_c.RING])


def _error_payload(error: BaseException, source: str) -> tuple[Any, ...]:
    """(type, message, traceback, source) of an exception, bounded like runtime's."""
    try:
        message: Any = str(error)
    except Exception:
        message = _values.guarded_repr(error)
    limit = _values.SETTINGS.max_string
    if len(message) > limit:
        message = message[:limit] + "..."
    try:
        frames = [[f.filename, f.lineno, f.name]
                  for f in traceback.extract_tb(error.__traceback__, limit=32)]
    except Exception:
        frames = None
    return (type(error).__qualname__, message, frames, source)


_PLAIN = frozenset({str, int, bool, type(None)})  # floats need normalizing (nan)


def _path_params(params: dict[str, Any]) -> Any:
    """Path parameters: the common case (a few short scalars) copied as they are."""
    if len(params) <= 8:
        limit = _values.SETTINGS.max_string
        for key, value in params.items():
            kind = type(value)
            if (type(key) is not str or kind not in _PLAIN
                    or (kind is str and len(value) > limit) or _values.is_sensitive(key)
                    or (kind is int and not -(2**63) <= value < 2**63)):
                break
        else:
            return dict(params)
    return _snapshot(params)


def _query_params(raw: bytes) -> Any:
    """Query parameters as a bounded, redacted dict (repeated keys become lists)."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if key in params:
            previous = params[key]
            if type(previous) is list:
                previous.append(value)
            else:
                params[key] = [previous, value]
        else:
            params[key] = value
    return _snapshot(params)


class _HeaderSelection:
    """Which request headers to record, as bytes names, and which to redact."""

    __slots__ = ("names", "traceparent")

    def __init__(self, names: Iterable[str], sensitive: Iterable[str]) -> None:
        hidden = {name.lower() for name in sensitive}
        self.names: dict[bytes, tuple[str, bool]] = {}
        for name in names:
            lower = name.lower()
            self.names[lower.encode("latin-1")] = (
                lower, lower in hidden or _values.is_sensitive(lower))
        self.traceparent = b"traceparent"

    def read(self, raw_headers: Iterable[tuple[bytes, bytes]]
             ) -> tuple[dict[str, str], bytes | None]:
        """(selected headers, redacted; the raw traceparent value or None)."""
        names = self.names
        selected: dict[str, str] = {}
        traceparent = None
        limit = _values.SETTINGS.max_string
        for name, value in raw_headers:
            entry = names.get(name)
            if entry is None:
                if name == b"traceparent":
                    traceparent = value
                continue
            if name == b"traceparent":
                traceparent = value
            if entry[1]:
                selected[entry[0]] = _REDACTED
            else:
                text = value.decode("latin-1")
                selected[entry[0]] = text if len(text) <= limit else _capture(text)
        return selected, traceparent


def _route_of(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """(endpoint name, route template, action) from what a router left in the scope.

    Used when no route handler was wrapped (a router ascope does not know): Starlette
    and most routers store the matched route in ``scope["route"]`` and the handler in
    ``scope["endpoint"]``.
    """
    route = scope.get("route")
    endpoint = scope.get("endpoint")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    name = _values.guarded_repr(endpoint) if endpoint is not None else None
    if endpoint is not None:
        module = getattr(endpoint, "__module__", None)
        qualname = getattr(endpoint, "__qualname__", None)
        if isinstance(qualname, str):
            name = f"{module}.{qualname}" if isinstance(module, str) else qualname
    return name, template if isinstance(template, str) else None, None


# -- HTTP ------------------------------------------------------------------------------------


class _Request:
    """One HTTP request's state: its frame, what the response said so far, the outcome."""

    __slots__ = ("_receive", "_send", "content_type", "disconnected", "done", "endpoint",
                 "endpoint_action", "endpoint_frame", "frame", "in_endpoint", "middleware",
                 "route", "scope", "scope_root_path", "size",
                 "start_payload", "started", "status", "trailers")

    def __init__(self, middleware: AscopeMiddleware, scope: Scope, parent: _c.Frame,
                 receive: Receive, send: Send) -> None:
        now = _now()
        self.middleware = middleware
        self.scope = scope
        self.scope_root_path = scope.get("root_path", "")
        self._receive = receive
        self._send = send
        trace_id = None
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
        selected = None
        headers = scope.get("headers")
        if headers:
            selected, traceparent = middleware.headers.read(headers)
            if traceparent is not None:
                parsed = _traceparent.parse(traceparent)
                if parsed is not None:
                    trace_id = parsed.trace_id
        self.frame = _root_frame(parent, trace_id or _traceparent.new_trace_id(), now)
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

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body")
            if body:
                self.size += len(body)
            if not message.get("more_body", False) and not self.trailers:
                await self._send_last(message)
                return
        elif kind == "http.response.start":
            self._response_started(message)
        elif kind == "http.response.pathsend" or (
                kind == "http.response.trailers" and not message.get("more_trailers", False)):
            await self._send_last(message)
            return
        await self._send(message)

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


# -- websockets ------------------------------------------------------------------------------


class _Channel:
    """One websocket connection: a channel with one operation per message received."""

    __slots__ = ("_receive", "_send", "accepted", "close_code", "closed_by", "endpoint",
                 "frame", "in_endpoint", "joined", "left", "message", "message_event",
                 "middleware", "path", "received", "route", "scope", "scope_root_path", "sent",
                 "settled", "socket_info")

    def __init__(self, middleware: AscopeMiddleware, scope: Scope, parent: _c.Frame,
                 receive: Receive, send: Send) -> None:
        now = _now()
        self.middleware = middleware
        self.scope = scope
        self.scope_root_path = scope.get("root_path", "")
        self._receive = receive
        self._send = send
        self.path = _capture(scope.get("path"))
        self.joined = False
        self.accepted = False
        self.settled = False  # the join was accepted or rejected
        self.left = False
        self.in_endpoint = False
        self.close_code: int | None = None
        self.closed_by: str | None = None
        self.message: _c.Frame | None = None  # the open message operation
        self.message_event = "text"
        self.received = 0
        self.sent = 0
        self.route: str | None = None
        self.endpoint: str | None = None
        trace_id = None
        selected = None
        headers = scope.get("headers")
        if headers:
            selected, traceparent = middleware.headers.read(headers)
            if traceparent is not None:
                parsed = _traceparent.parse(traceparent)
                if parsed is not None:
                    trace_id = parsed.trace_id
        self.frame = _root_frame(parent, trace_id or _traceparent.new_trace_id(), now)
        self.socket_info = (selected, scope.get("client"),
                            _snapshot(list(scope.get("subprotocols") or ())))

    def join(self) -> None:
        """``channel_join_start``, stamped with the connection time; sent once the route is
        known (or at the first message exchanged)."""
        if self.joined:
            return
        self.joined = True
        headers, client, subprotocols = self.socket_info
        query = self.scope.get("query_string")
        frame = self.frame
        socket = {"route": self.route, "endpoint": self.endpoint,
                  "subprotocols": subprotocols, "client": _snapshot(client),
                  "headers": headers}
        _emit("channel_join_start", frame[7], frame,
              (self.path, _query_params(query) if query else None, socket))

    def _close_message(self) -> None:
        """Close the open message's operation (its handling ends at the next receive)."""
        message = self.message
        if message is None:
            return
        self.message = None
        now = _now()
        _emit("channel_message_complete", now, message,
              (self.path, self.message_event, None, now - message[7]))
        if _current.get() is message:
            _current.set(message[2])

    async def receive(self) -> Message:
        try:
            if not self.joined:
                self.join()
            if self.message is not None:
                self._close_message()
        except Exception:
            _internal_error()
        message = await self._receive()
        try:
            kind = message.get("type")
            if kind == "websocket.receive":
                self._open_message(message)
            elif kind == "websocket.disconnect" and self.close_code is None:
                self.close_code = message.get("code", 1005)
                self.closed_by = "client"
        except Exception:
            _internal_error()
        return message

    def _open_message(self, message: Message) -> None:
        text = message.get("text")
        if text is not None:
            event, size, data = "text", len(text), _message_data(text)
        else:
            raw = message.get("bytes") or b""
            event, size, data = "bytes", len(raw), _capture(raw)
        self.received += 1
        parent = _current.get()
        now = _now()
        # The message's parent is the connection, whatever else is current in the handler.
        frame = (_new_ids(), self.frame[0], parent, parent[_c.TASK] or self.frame[_c.TASK],
                 self.frame[_c.TRACE], True, parent[_c.SCOPE], now,
                 parent[_c.RING] or self.frame[_c.RING])
        self.message = frame
        self.message_event = event
        _current.set(frame)
        _emit("channel_message_start", now, frame,
              (self.path, event, {"size": size, "data": data, "index": self.received}))

    async def send(self, message: Message) -> None:
        try:
            self._sending(message)
        except Exception:
            _internal_error()
        await self._send(message)

    def _sending(self, message: Message) -> None:
        kind = message.get("type")
        if not self.joined:
            self.join()
        if kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                data: Any = {"size": len(text), "text": _message_data(text)}
            else:
                raw = message.get("bytes") or b""
                data = {"size": len(raw), "bytes": _capture(raw)}
            self.sent += 1
            frame = _current.get()
            if not frame[5]:
                return
            if frame[_c.RING] is None:
                frame = self.frame
            _emit("message_send", _now(), frame, (f"websocket:{self.path}", data))
        elif kind == "websocket.accept":
            self.accepted = self.settled = True
            _emit("channel_join_complete", _now(), self.frame,
                  (self.path, {"accepted": True, "subprotocol": message.get("subprotocol")},
                   None))
        elif kind == "websocket.close":
            code = message.get("code", 1000)
            if self.close_code is None:
                self.close_code = code
                self.closed_by = "server"
            if not self.settled:
                self.settled = True
                _emit("channel_join_complete", _now(), self.frame,
                      (self.path, {"accepted": False, "reason": message.get("reason")}, code))
        elif kind == "websocket.http.response.start" and not self.settled:
            # The denial-response extension: the handshake is answered with plain HTTP.
            self.close_code = self.close_code or 1008
            self.closed_by = "server"
            self.settled = True
            _emit("channel_join_complete", _now(), self.frame,
                  (self.path, {"accepted": False, "status": message.get("status")}, None))

    def leave(self, error: BaseException | None) -> None:
        """``channel_leave`` (with the close code) when the application returns or raises."""
        if self.left:
            return
        self.left = True
        try:
            if not self.joined:
                self.join()
            if self.message is not None:
                self._close_message()
            now = _now()
            frame = self.frame
            if not self.settled:  # the app ended without accepting or closing: rejected
                self.settled = True
                _emit("channel_join_complete", now, frame,
                      (self.path, {"accepted": False, "reason": "not accepted"},
                       self.close_code))
            if error is not None and not isinstance(error, asyncio.CancelledError):
                _emit("error", now, frame, _error_payload(error, "asgi"))
            if error is None:
                outcome = "closed"
            elif isinstance(error, asyncio.CancelledError):
                outcome = "cancelled"
            else:
                outcome = "error"
            code = self.close_code
            if code is None and error is not None and not isinstance(error,
                                                                     asyncio.CancelledError):
                code = 1011  # the server closes with "internal error"
            _emit("channel_leave", now, frame,
                  {"path": self.path, "close_code": code, "closed_by": self.closed_by,
                   "outcome": outcome, "accepted": self.accepted,
                   "messages_received": self.received, "messages_sent": self.sent,
                   "duration_ns": now - frame[7]})
        except Exception:
            _internal_error()

    async def run_endpoint(self, handle: Callable[..., Awaitable[None]], route: Any,
                           scope: Scope, receive: Receive, send: Send, name: str,
                           template: str | None, action: str | None) -> None:
        """A routed websocket: the route names the channel; the join is sent now."""
        try:
            self.in_endpoint = True
            self.route = template
            self.endpoint = name
            self.join()
        except Exception:
            _internal_error()
        await handle(route, scope, receive, send)


def _message_data(text: str) -> Any:
    """A text message, bounded; JSON objects are parsed so sensitive keys get redacted."""
    if text[:1] in ("{", "[") and len(text) <= 65_536:
        try:
            return _snapshot(orjson.loads(text))
        except orjson.JSONDecodeError:
            pass
    return _capture(text)


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
        if kind == "http" and _STATE.on and SCOPE_KEY not in scope:
            parent = _current.get()
            if parent[5]:
                try:
                    request = _Request(self, scope, parent, receive, send)
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
                return
        elif kind == "websocket" and _STATE.on and self.websockets and SCOPE_KEY not in scope:
            parent = _current.get()
            if parent[5]:
                await self._websocket(scope, receive, send, parent)
                return
        elif kind == "lifespan" and _STATE.on:
            # The server's loop: set it up (ring, drainer, task factory) before any request.
            try:
                _pipeline.attach_current_loop()
            except Exception:
                _internal_error()
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send,
                         parent: _c.Frame) -> None:
        try:
            channel = _Channel(self, scope, parent, receive, send)
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
