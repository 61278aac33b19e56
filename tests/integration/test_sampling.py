"""``sample_rate``: the share of requests and websocket connections the middleware records.

A request left out runs with capture off for its whole task: nothing it calls, spawns or
queries is recorded, and it is served exactly as without ascope. Every request is decided
by its trace id: the ``traceparent``'s, or the new trace's. Services with the same rate
agree, and a request left out still passes its trace on (marked not sampled) through
httpx, so the services it calls leave it out too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

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


def test_without_a_traceparent_the_new_trace_id_is_what_was_decided() -> None:
    """A recorded request's own (new) trace id is one the rate keeps: a service it calls,
    deciding by that id at the same rate, keeps it too."""
    ascope.configure(sample_rate=0.5)
    app = build()

    async def many() -> None:
        for _ in range(100):
            await call_http(app, "/items/3")

    with ascope.testing.capture() as captured:
        asyncio.run(many())
    traces = {e.trace_id for e in captured.events if e.kind == "http_request_start"}
    assert 15 < len(traces) < 85  # 50 expected; outside this, p < 1e-10
    assert all(int(trace[-14:], 16) < 2**55 for trace in traces)


def test_two_services_keep_or_drop_each_trace_together(server_factory: Any) -> None:
    """Real servers on 127.0.0.1: a front service calls a back service with httpx, both at
    rate 0.5. For every request both record it or neither does, in one trace; a request
    the front left out reaches the back with its trace id and the sampled flag cleared."""

    async def back_item(request: Request) -> JSONResponse:
        return JSONResponse({"traceparent": request.headers.get("traceparent"),
                             "capturing": ascope.enabled()})

    back = serve_app(Route("/back", back_item))
    back_server = server_factory(back)

    async def front_item(request: Request) -> JSONResponse:
        async with httpx.AsyncClient() as client:
            answer = (await client.get(back_server.url("/back"))).json()
        return JSONResponse({**answer, "front_capturing": ascope.enabled(),
                             "front_trace": current_trace()})

    front_server = server_factory(serve_app(Route("/front", front_item)))
    ascope.configure(sample_rate=0.5)
    with ascope.testing.capture() as captured:
        answers = [httpx.get(front_server.url("/front")).json() for _ in range(24)]
        front_server.settle()
        back_server.settle()
    kept = [a for a in answers if a["front_capturing"]]
    dropped = [a for a in answers if not a["front_capturing"]]
    assert kept and dropped  # each has chance 1 - 2 * 0.5**24
    for answer in answers:
        version, trace_id, span_id, flags = answer["traceparent"].split("-")
        assert version == "00"
        assert trace_id == answer["front_trace"] and len(span_id) == 16
        assert answer["capturing"] == answer["front_capturing"]
        assert flags == ("01" if answer["front_capturing"] else "00")
    recorded = [e for e in captured.events if e.kind == "http_request_start"]
    by_trace: dict[str, list[str]] = {}
    for event in recorded:
        by_trace.setdefault(event.trace_id, []).append(event.data["path"])
    assert {trace: sorted(paths) for trace, paths in by_trace.items()} == {
        a["front_trace"]: ["/back", "/front"] for a in kept}


def current_trace() -> str | None:
    trace: str | None = ascope.runtime.get_ast_correlation_metadata()["trace_id"]
    return trace


def serve_app(route: Route) -> AscopeMiddleware:
    return AscopeMiddleware(Starlette(routes=[route]), enable=False)
