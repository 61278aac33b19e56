"""AscopeMiddleware on a FastAPI app under real uvicorn: HTTP, included routers, sync
handlers in the thread pool, HTTP errors, background tasks and websockets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

import ascope
import ascope.testing

from .conftest import by_kind, kinds, one, serve, tree_of


@ascope.instrument
async def fetch(item_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"item_id": item_id}


@ascope.instrument
def compute(user_id: int) -> int:
    return user_id * 2


@ascope.instrument
async def notify(item_id: int) -> None:
    await asyncio.sleep(0.05)


def make_app() -> FastAPI:
    app = FastAPI()
    users = APIRouter(prefix="/users")

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        if item_id == 404:
            raise HTTPException(status_code=404, detail="no such item")
        return {**await fetch(item_id), "q": q}

    @app.post("/items/{item_id}/notify", status_code=202)
    async def notify_later(item_id: int, background: BackgroundTasks) -> dict[str, bool]:
        background.add_task(notify, item_id)
        return {"queued": True}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines() -> Any:
            for index in range(3):
                await asyncio.sleep(0.02)
                yield f"{index}\n"

        return StreamingResponse(lines(), media_type="text/plain")

    @users.get("/{user_id}")
    def read_user(user_id: int) -> dict[str, int]:  # sync: runs in the thread pool
        return {"double": compute(user_id)}

    @app.websocket("/ws/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(f"{room}:{text}")
        except WebSocketDisconnect:
            pass

    app.include_router(users)
    ascope.install(app, enable=False)
    return app


@pytest.fixture(scope="module")
def server() -> Any:
    with serve(make_app(), loop="uvloop") as running:
        yield running


def request_tree(events: list[ascope.Event], path: str) -> tuple[ascope.Event, list[ascope.Event]]:
    start = one(events, "http_request_start", path=path)
    return start, tree_of(events, start.correlation_id)


def test_fastapi_request_endpoint_and_call(server: Any) -> None:
    """FastAPI path operation: the endpoint is the user's function with its route template
    and path parameters; the query parameter is recorded on the request."""
    with ascope.testing.capture() as captured:
        response = httpx.get(server.url("/items/5?q=blue"))
        server.settle()
    assert response.json() == {"item_id": 5, "q": "blue"}
    start, tree = request_tree(captured.events, "/items/5")
    assert start.data["route"] == "/items/{item_id}"
    assert start.data["params"] == {"q": "blue"}
    entry = one(tree, "endpoint_entry")
    assert entry.parent_id == start.correlation_id
    assert entry.data["endpoint"].endswith("make_app.<locals>.read_item")
    assert entry.data["params"] == {"item_id": "5"} or entry.data["params"] == {"item_id": 5}
    call = one(tree, "function_entry")
    assert call.parent_id == entry.correlation_id and call.data["args"] == {"item_id": 5}
    assert kinds(tree) == ["http_request_start", "endpoint_entry", "function_entry",
                           "function_exit", "endpoint_exit", "http_request_complete"]
    assert one(tree, "http_request_complete").data["status"] == 200


def test_included_router_template_has_its_prefix_and_sync_handler_is_traced(
        server: Any) -> None:
    """A route of an included router is named with the router's prefix; a sync handler
    run in the thread pool still belongs to the request (its instrumented call too)."""
    with ascope.testing.capture() as captured:
        assert httpx.get(server.url("/users/21")).json() == {"double": 42}
        server.settle()
    start, tree = request_tree(captured.events, "/users/21")
    assert start.data["route"] == "/users/{user_id}"
    entry = one(tree, "endpoint_entry")
    assert entry.data["endpoint"].endswith("read_user")
    call = one(tree, "function_entry")
    assert call.data["function"].endswith("compute")


def test_http_exception_is_a_handled_404(server: Any) -> None:
    """HTTPException raised by the handler: FastAPI turns it into a 404 response, so the
    endpoint returns (result 404) and the request completes with 404, no error event."""
    with ascope.testing.capture() as captured:
        assert httpx.get(server.url("/items/404")).status_code == 404
        server.settle()
    _start, tree = request_tree(captured.events, "/items/404")
    assert one(tree, "endpoint_exit").data["result"] == 404
    complete = one(tree, "http_request_complete")
    assert complete.data["status"] == 404 and complete.data["outcome"] == "complete"
    assert "error" not in kinds(tree)


def test_background_task_is_a_child_of_the_request(server: Any) -> None:
    """FastAPI BackgroundTasks run after the response: still in the request's tree."""
    with ascope.testing.capture() as captured:
        assert httpx.post(server.url("/items/3/notify")).status_code == 202
        server.settle()
    _start, tree = request_tree(captured.events, "/items/3/notify")
    call = one(tree, "function_entry")
    assert call.data["function"].endswith("notify")
    complete = one(tree, "http_request_complete")
    assert complete.data["status"] == 202
    assert complete.ts_ns < call.ts_ns


def test_streaming_response(server: Any) -> None:
    """A FastAPI StreamingResponse completes at its last chunk."""
    with ascope.testing.capture() as captured:
        assert httpx.get(server.url("/stream")).text == "0\n1\n2\n"
        server.settle()
    _start, tree = request_tree(captured.events, "/stream")
    complete = one(tree, "http_request_complete")
    assert complete.data["response_size"] == 6
    assert complete.data["duration_ns"] >= 60_000_000


def test_fastapi_websocket_channel(server: Any) -> None:
    """A FastAPI websocket route is a channel named by its template."""
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/ws/lobby")) as ws:
            ws.send("a")
            assert ws.recv(timeout=5) == "lobby:a"
        server.settle()
    join = one(captured.events, "channel_join_start", path="/ws/lobby")
    assert join.data["socket"]["route"] == "/ws/{room}"
    assert join.data["socket"]["endpoint"].endswith("room")
    tree = tree_of(captured.events, join.correlation_id)
    message = one(tree, "channel_message_start")
    assert message.parent_id == join.correlation_id
    assert one(tree, "message_send").correlation_id == message.correlation_id
    assert len(by_kind(tree, "channel_leave")) == 1
