"""Websockets as channels: one connection, one operation per message received.

See ``asgi.py`` for the middleware that creates a ``_Channel`` per websocket scope and
docs/integrations.md for the event tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from ascope import _context as _c

from ._asgi_base import (
    Message,
    Receive,
    Scope,
    Send,
    _capture,
    _emit,
    _error_payload,
    _incoming_frame,
    _internal_error,
    _new_ids,
    _now,
    _query_params,
    _snapshot,
)

# Assigned, not imported (see ascope/runtime.py): method calls on it skip a bound method.
_current = _c.current

if TYPE_CHECKING:
    from .asgi import AscopeMiddleware

class _Channel:
    """One websocket connection: a channel with one operation per message received."""

    __slots__ = ("_receive", "_send", "accepted", "close_code", "closed_by", "endpoint",
                 "frame", "in_endpoint", "joined", "left", "message", "message_event",
                 "middleware", "path", "received", "route", "scope", "scope_root_path", "sent",
                 "settled", "socket_info")

    def __init__(self, middleware: AscopeMiddleware, scope: Scope, parent: _c.Frame,
                 receive: Receive, send: Send, trace_id: str | None = None) -> None:
        # trace_id: the one sampling decided on (the traceparent's, or the new trace's).
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
        self.frame, selected = _incoming_frame(middleware.headers, scope, parent, trace_id,
                                               now)
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

    def send(self, message: Message) -> Awaitable[None]:
        """The wrapped ``send``: a plain function returning the server's awaitable (no
        coroutine of its own per message sent)."""
        try:
            self._sending(message)
        except Exception:
            _internal_error()
        return self._send(message)

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


