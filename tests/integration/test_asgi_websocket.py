"""Websockets as channels: real uvicorn, real ``websockets`` client.

A connection is a channel operation (``channel_join_start`` ... ``channel_leave``); each
message received is its own operation whose parent is the connection; what the handler
does while handling a message (calls, sends) belongs to that message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ascope.integrations.asgi import AscopeMiddleware
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import ascope
import ascope.testing

from .conftest import by_kind, kinds, one, serve, tree_of


@ascope.instrument
async def shout(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


async def echo(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="chat" if "chat" in websocket.scope["subprotocols"]
                           else None)
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(await shout(text))
    except WebSocketDisconnect:
        pass


async def json_room(websocket: WebSocket) -> None:
    await websocket.accept()
    message = await websocket.receive_json()
    await websocket.send_json({"ok": True, "user": message.get("user")})
    data = await websocket.receive_bytes()
    await websocket.send_bytes(data[::-1])
    await websocket.close(code=4002, reason="done")


async def reject(websocket: WebSocket) -> None:
    await websocket.close(code=4001)


async def explode(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("handler broke")


class Counter(WebSocketEndpoint):
    encoding = "text"

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        await websocket.send_text(str(len(data)))


def make_app() -> Starlette:
    app = Starlette(routes=[
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/rooms/{room}", json_room),
        WebSocketRoute("/ws/reject", reject),
        WebSocketRoute("/ws/explode", explode),
        WebSocketRoute("/ws/counter", Counter),
    ])
    app.add_middleware(AscopeMiddleware, enable=False)
    return app


@pytest.fixture(scope="module")
def server() -> Any:
    with serve(make_app()) as running:
        yield running


def channel_of(events: list[ascope.Event], path: str) -> tuple[ascope.Event, list[ascope.Event]]:
    join = one(events, "channel_join_start", path=path)
    return join, tree_of(events, join.correlation_id)


def test_connection_is_a_channel_with_one_operation_per_message(server: Any) -> None:
    """join start (route, query, subprotocols) > join complete (accepted) > one message
    start/complete pair per message, each its own id with the connection as parent; the
    handler's call and its reply belong to the message; the leave has the close code."""
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/ws/echo?room=7"), subprotocols=["chat"]) as ws:
            for text in ("hi", "there"):
                ws.send(text)
                assert ws.recv(timeout=5) == text.upper()
        server.settle()
    join, tree = channel_of(captured.events, "/ws/echo")
    channel_id = join.correlation_id
    assert join.parent_id is None
    assert join.data["params"] == {"room": "7"}
    socket = join.data["socket"]
    assert socket["route"] == "/ws/echo"
    assert socket["endpoint"].endswith("test_asgi_websocket.echo")
    assert socket["subprotocols"] == ["chat"]
    joined = one(tree, "channel_join_complete")
    assert joined.correlation_id == channel_id
    assert joined.data["result"] == {"accepted": True, "subprotocol": "chat"}
    starts = by_kind(tree, "channel_message_start")
    assert [s.data["payload"]["data"] for s in starts] == ["hi", "there"]
    assert [s.data["payload"]["size"] for s in starts] == [2, 5]
    assert all(s.parent_id == channel_id and s.data["event"] == "text" for s in starts)
    assert len({s.correlation_id for s in starts}) == 2
    for start in starts:
        message_tree = tree_of(tree, start.correlation_id)
        assert kinds(message_tree) == ["channel_message_start", "function_entry",
                                       "function_exit", "message_send",
                                       "channel_message_complete"]
        send = one(message_tree, "message_send")
        assert send.correlation_id == start.correlation_id
        assert send.data["message"]["text"] == start.data["payload"]["data"].upper()
    leave = one(tree, "channel_leave")
    assert leave.correlation_id == channel_id
    assert leave.data["close_code"] == 1000 and leave.data["closed_by"] == "client"
    assert leave.data["messages_received"] == 2 and leave.data["messages_sent"] == 2
    assert kinds(tree)[0] == "channel_join_start" and kinds(tree)[-1] == "channel_leave"
    assert {e.trace_id for e in tree} == {join.trace_id}


def test_json_and_bytes_messages_are_bounded_and_redacted(server: Any) -> None:
    """A JSON text message is recorded parsed, with sensitive keys redacted; a binary one
    by size and a bounded repr; the server's close code ends the channel."""
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/ws/rooms/blue")) as ws:
            ws.send('{"user": "ada", "password": "hunter2"}')
            assert ws.recv(timeout=5) == '{"ok":true,"user":"ada"}'
            ws.send(b"\x00\x01\x02" * 1000)
            assert ws.recv(timeout=5) == (b"\x00\x01\x02" * 1000)[::-1]
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        server.settle()
    join, tree = channel_of(captured.events, "/ws/rooms/blue")
    assert join.data["socket"]["route"] == "/ws/rooms/{room}"
    text, binary = by_kind(tree, "channel_message_start")
    assert text.data["payload"]["data"] == {"user": "ada", "password": "[redacted]"}
    assert binary.data["event"] == "bytes"
    assert binary.data["payload"]["size"] == 3000
    assert len(repr(binary.data["payload"]["data"])) < 3000
    assert "hunter2" not in repr([e.data for e in captured.events])
    leave = one(tree, "channel_leave")
    assert leave.data["close_code"] == 4002 and leave.data["closed_by"] == "server"


def test_close_before_accept_is_a_rejected_join(server: Any) -> None:
    """A handler that closes before accepting: the join completes as rejected with the
    close code, and the channel leaves with it."""
    with ascope.testing.capture() as captured:
        with pytest.raises(InvalidStatus):
            connect(server.ws_url("/ws/reject"))
        server.settle()
    _join, tree = channel_of(captured.events, "/ws/reject")
    joined = one(tree, "channel_join_complete")
    assert joined.data["result"]["accepted"] is False
    assert joined.data["close_code"] == 4001
    assert "channel_message_start" not in kinds(tree)
    assert one(tree, "channel_leave").data["accepted"] is False


def test_handler_error_is_recorded_and_the_channel_left(server: Any) -> None:
    """An exception escaping a websocket handler: an error on the channel and a leave
    with outcome "error" (the server closes with 1011)."""
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/ws/explode")) as ws:
            ws.send("go")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        server.settle()
    join, tree = channel_of(captured.events, "/ws/explode")
    error = one(tree, "error")
    assert error.data["message"] == "handler broke"
    assert error.correlation_id == join.correlation_id
    leave = one(tree, "channel_leave")
    assert leave.data["outcome"] == "error" and leave.data["close_code"] == 1011


def test_websocket_endpoint_class(server: Any) -> None:
    """Starlette's WebSocketEndpoint: one message operation per on_receive."""
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/ws/counter")) as ws:
            ws.send("abc")
            assert ws.recv(timeout=5) == "3"
            ws.send("abcdef")
            assert ws.recv(timeout=5) == "6"
        server.settle()
    join, tree = channel_of(captured.events, "/ws/counter")
    assert join.data["socket"]["endpoint"].endswith("Counter")
    assert len(by_kind(tree, "channel_message_start")) == 2
    assert len(by_kind(tree, "channel_message_complete")) == 2
    sends = by_kind(tree, "message_send")
    starts = by_kind(tree, "channel_message_start")
    assert [s.correlation_id for s in sends] == [s.correlation_id for s in starts]


def test_unrouted_websocket_app_is_a_channel_too() -> None:
    """A bare ASGI websocket app wrapped by AscopeMiddleware(app): the join is sent when
    the app receives the connect message; route unknown."""
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"] + "!"})
        await receive()  # the disconnect

    with (serve(AscopeMiddleware(bare, enable=False)) as running,
          ascope.testing.capture() as captured):
        with connect(running.ws_url("/bare")) as ws:
            ws.send("hey")
            assert ws.recv(timeout=5) == "hey!"
        running.settle()
    join, tree = channel_of(captured.events, "/bare")
    assert join.data["socket"]["route"] is None
    assert kinds(tree) == ["channel_join_start", "channel_join_complete",
                           "channel_message_start", "message_send",
                           "channel_message_complete", "channel_leave"]
