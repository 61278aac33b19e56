"""``sample_rate``: the share of requests and websocket connections the middleware records.

A request left out runs with capture off for its whole task: nothing it calls, spawns or
queries is recorded, and it is served exactly as without ascope. A request carrying a
``traceparent`` is decided by its trace id (services with the same rate agree); the
others at random.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from ascope.integrations.asgi import AscopeMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import ascope
import ascope.testing

from .conftest import call_http, call_websocket, kinds, serve


@ascope.instrument
async def load(item_id: int) -> int:
    await asyncio.sleep(0)
    return item_id


async def child() -> int:
    await asyncio.sleep(0)
    return 1


async def item(request: Request) -> JSONResponse:
    value = await load(request.path_params["item_id"])
    value += await asyncio.create_task(child())
    return JSONResponse({"value": value, "capturing": ascope.enabled()})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def build() -> AscopeMiddleware:
    return AscopeMiddleware(Starlette(routes=[Route("/items/{item_id:int}", item),
                                              WebSocketRoute("/ws", echo)]), enable=False)


@pytest.fixture(autouse=True)
def restore_rate() -> Iterator[None]:
    yield
    ascope.configure(sample_rate=1.0)


def traceparent(low_bits: int) -> bytes:
    """A traceparent whose trace id ends in the given 56 bits."""
    return f"00-{'ab' * 9}{low_bits:014x}-b7ad6b7169203331-01".encode()


def test_rate_zero_records_nothing_and_serves_the_same() -> None:
    """Left out: no request, endpoint, call or task events, and capture is off inside
    the handler; the response is the same as with capture on."""
    ascope.configure(sample_rate=0.0)
    app = build()
    with ascope.testing.capture() as captured:
        sent = asyncio.run(call_http(app, "/items/4"))
    assert captured.events == []
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"value":5,"capturing":false}'


def test_rate_one_records_everything_inside() -> None:
    ascope.configure(sample_rate=1.0)
    with ascope.testing.capture() as captured:
        sent = asyncio.run(call_http(build(), "/items/4"))
    assert sent[1]["body"] == b'{"value":5,"capturing":true}'
    recorded = kinds(captured.events)
    for kind in ("http_request_start", "endpoint_entry", "function_entry", "task_spawn",
                 "http_request_complete"):
        assert kind in recorded


def test_a_traceparent_is_decided_by_its_trace_id() -> None:
    """At 0.25, a trace id whose low 56 bits fall under a quarter of their range is
    recorded, one above is not: the same decision in every service at that rate."""
    ascope.configure(sample_rate=0.25)
    app = build()
    under = traceparent(2**56 // 4 - 1)
    over = traceparent(2**56 // 4)

    async def both() -> None:
        for _ in range(5):
            await call_http(app, "/items/1", [(b"traceparent", under)])
            await call_http(app, "/items/2", [(b"traceparent", over)])

    with ascope.testing.capture() as captured:
        asyncio.run(both())
    starts = [e for e in captured.events if e.kind == "http_request_start"]
    assert [e.data["path"] for e in starts] == ["/items/1"] * 5
    assert {e.trace_id for e in starts} == {under.decode()[3:35]}


def test_without_a_traceparent_about_the_rate_is_recorded() -> None:
    ascope.configure(sample_rate=0.5)
    app = build()

    async def many() -> None:
        for _ in range(400):
            await call_http(app, "/items/3")

    with ascope.testing.capture() as captured:
        asyncio.run(many())
    recorded = kinds(captured.events).count("http_request_complete")
    assert 120 < recorded < 280  # 200 expected; outside this, p < 1e-10


def test_a_websocket_left_out_is_served_without_events() -> None:
    ascope.configure(sample_rate=0.0)
    app = build()
    with ascope.testing.capture() as captured:
        sent = asyncio.run(call_websocket(app, "/ws", ["hi"]))
    assert captured.events == []
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send",
                                         "websocket.close"]
    assert sent[1].get("text") == "hi"


def test_sampling_under_uvicorn() -> None:
    """A real server at rate 0: requests are served, the store gets nothing; back at 1,
    the next request is recorded."""
    app = build()
    with serve(app) as running, ascope.testing.capture() as captured:
        ascope.configure(sample_rate=0.0)
        assert httpx.get(running.url("/items/8")).json() == {"value": 9, "capturing": False}
        running.settle()
        ascope.configure(sample_rate=1.0)
        assert httpx.get(running.url("/items/9")).json() == {"value": 10, "capturing": True}
        running.settle()
    starts = [e for e in captured.events if e.kind == "http_request_start"]
    assert [e.data["path"] for e in starts] == ["/items/9"]
