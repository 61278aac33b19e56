"""AscopeMiddleware on HTTP: a Starlette app under real uvicorn, driven by a real httpx client.

Each test asserts on the correlated tree of one request: ``http_request_start`` is the root
(no parent), the route handler's ``endpoint_entry`` is its child, the handler's own
instrumented calls and tasks are the endpoint's children, and ``http_request_complete``
closes the request with status, content type, size, duration and outcome.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from ascope.integrations.asgi import AscopeMiddleware
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import ascope
import ascope.testing

from .conftest import by_kind, call_http, call_websocket, kinds, one, serve, tree_of

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


@ascope.instrument
async def load_item(item_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"id": item_id}


@ascope.instrument
async def audit(item_id: int) -> None:
    await asyncio.sleep(0.2)


async def child_work() -> int:
    await asyncio.sleep(0)
    return 7


async def item(request: Request) -> JSONResponse:
    data = await load_item(request.path_params["item_id"])
    data["child"] = await asyncio.create_task(child_work())
    return JSONResponse(data)


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        for index in range(3):
            await asyncio.sleep(0.05)
            yield f"chunk {index}\n"

    return StreamingResponse(chunks(), media_type="text/plain")


async def events(request: Request) -> StreamingResponse:
    async def messages() -> Any:
        for index in range(3):
            await asyncio.sleep(0.05)
            yield f"data: {index}\n\n"

    return StreamingResponse(messages(), media_type="text/event-stream")


async def boom(request: Request) -> Response:
    raise RuntimeError("kaboom")


async def later(request: Request) -> Response:
    item_id = int(request.query_params.get("id", "1"))
    return PlainTextResponse("accepted", background=BackgroundTask(audit, item_id))


gate = threading.Event()


async def endless(request: Request) -> StreamingResponse:
    async def forever() -> Any:
        gate.set()
        while True:
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    return StreamingResponse(forever(), media_type="application/octet-stream")


class Things(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return PlainTextResponse("things")

    async def post(self, request: Request) -> Response:
        return PlainTextResponse("made", status_code=201)


def make_app(**options: Any) -> Starlette:
    app = Starlette(routes=[
        Route("/items/{item_id:int}", item),
        Route("/stream", stream),
        Route("/events", events),
        Route("/boom", boom),
        Route("/later", later),
        Route("/endless", endless),
        Route("/things", Things),
        Mount("/api/v1", routes=[Route("/users/{name}", item_user)]),
    ])
    app.add_middleware(AscopeMiddleware, enable=False, **options)
    return app


async def item_user(request: Request) -> Response:
    return PlainTextResponse(request.path_params["name"])


@pytest.fixture(scope="module")
def server() -> Any:
    with serve(make_app()) as running:
        yield running


def request_tree(events: list[ascope.Event], path: str) -> tuple[ascope.Event, list[ascope.Event]]:
    start = one(events, "http_request_start", path=path)
    return start, tree_of(events, start.correlation_id)


def test_request_endpoint_and_nested_calls_form_one_tree(server: Any) -> None:
    """A request is one tree: request start (root) > endpoint > instrumented call and the
    task the handler spawned; the completion carries status, type, size and duration. Its
    parent is the caller's span: here the test's own httpx call (the middleware switched
    the httpx integration on), whose traceparent names it."""
    with ascope.testing.capture() as captured:
        response = httpx.get(server.url("/items/42"))
        server.settle()
    assert response.json() == {"id": 42, "child": 7}
    start, tree = request_tree(captured.events, "/items/42")
    client = one(captured.events, "http_client_start")
    assert start.parent_id == client.correlation_id
    assert start.trace_id == client.trace_id
    assert start.data["method"] == "GET"
    assert start.data["route"] == "/items/{item_id}"
    assert start.data["client"][0] == "127.0.0.1"
    request_id = start.correlation_id
    entry = one(tree, "endpoint_entry")
    assert entry.parent_id == request_id
    assert entry.data["endpoint"].endswith("test_asgi_http.item")
    assert entry.data["route"] == "/items/{item_id}"
    assert entry.data["params"] == {"item_id": 42}
    call = one(tree, "function_entry")
    assert call.data["function"].endswith("load_item")
    assert call.parent_id == entry.correlation_id
    spawn = [e for e in tree if e.kind == "task_spawn"
             and e.data.get("coroutine", "").endswith("child_work")]
    assert len(spawn) == 1 and spawn[0].parent_id == entry.correlation_id
    exit_ = one(tree, "endpoint_exit")
    assert exit_.correlation_id == entry.correlation_id
    assert exit_.data["outcome"] == "return" and exit_.data["result"] == 200
    complete = one(tree, "http_request_complete")
    assert complete.correlation_id == request_id
    assert complete.data["status"] == 200
    assert complete.data["content_type"] == "application/json"
    assert complete.data["response_size"] == len(response.content)
    assert complete.data["outcome"] == "complete"
    assert complete.data["duration_ns"] > 0
    # Every event of the request carries its trace id; order: start first.
    assert {e.trace_id for e in tree} == {start.trace_id}
    assert kinds(tree)[0] == "http_request_start"
    assert kinds(tree).index("endpoint_entry") < kinds(tree).index("function_entry")


def test_two_requests_are_two_roots_with_two_traces(server: Any) -> None:
    """Each request has its own correlation id and (without traceparent) its own trace."""
    with ascope.testing.capture() as captured:
        httpx.get(server.url("/items/1"))
        httpx.get(server.url("/items/2"))
        server.settle()
    starts = by_kind(captured.events, "http_request_start")
    assert len(starts) == 2
    assert starts[0].correlation_id != starts[1].correlation_id
    assert starts[0].trace_id != starts[1].trace_id
    for start in starts:
        assert len(start.trace_id) == 32 and int(start.trace_id, 16) != 0


def test_traceparent_joins_the_callers_trace(server: Any) -> None:
    """An incoming W3C traceparent makes the request (and everything in it) join that
    trace; the caller's span id is kept in the recorded header."""
    header = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
    with ascope.testing.capture() as captured:
        httpx.get(server.url("/items/5"), headers={"traceparent": header})
        server.settle()
    start, tree = request_tree(captured.events, "/items/5")
    assert start.trace_id == TRACE_ID
    assert int(PARENT_SPAN, 16) >= 2**63
    assert start.parent_id == PARENT_SPAN  # the caller's span, past int64: in W3C form
    assert start.data["headers"]["traceparent"] == header
    assert {e.trace_id for e in tree} == {TRACE_ID}
    with ascope.testing.capture() as captured:
        httpx.get(server.url("/items/4"), headers={"traceparent": f"00-{TRACE_ID}-{'1' * 16}-01"})
        server.settle()
    start = one(captured.events, "http_request_start", path="/items/4")
    assert start.parent_id == int("1" * 16, 16)  # a span id that fits stays a number


def test_a_request_without_traceparent_is_a_root(server: Any) -> None:
    """No traceparent (urllib: no integration adds one): a new trace, no parent."""
    import urllib.request

    with ascope.testing.capture() as captured:
        with urllib.request.urlopen(server.url("/items/8"), timeout=10) as response:
            assert response.status == 200
        server.settle()
    start = one(captured.events, "http_request_start", path="/items/8")
    assert start.parent_id is None and len(start.trace_id) == 32
    assert "traceparent" not in (start.data["headers"] or {})


def test_malformed_traceparent_starts_a_new_trace(server: Any) -> None:
    """A traceparent that is not valid W3C (all-zero trace id) is ignored."""
    with ascope.testing.capture() as captured:
        httpx.get(server.url("/items/6"),
                  headers={"traceparent": f"00-{'0' * 32}-{PARENT_SPAN}-01"})
        server.settle()
    start = one(captured.events, "http_request_start", path="/items/6")
    assert start.trace_id != "0" * 32 and len(start.trace_id) == 32


def test_sensitive_headers_and_query_values_are_redacted(server: Any) -> None:
    """Authorization and cookies are recorded as present but redacted, as are query
    parameters with sensitive names; other headers and parameters are kept."""
    with ascope.testing.capture() as captured:
        httpx.get(server.url("/items/7?token=s3cr3t&page=2"),
                  headers={"authorization": "Bearer s3cr3t", "cookie": "session=s3cr3t",
                           "x-api-key": "s3cr3t", "user-agent": "spec-client"})
        server.settle()
    start = one(captured.events, "http_request_start", path="/items/7")
    headers = start.data["headers"]
    assert headers["authorization"] == "[redacted]"
    assert headers["cookie"] == "[redacted]"
    assert headers["x-api-key"] == "[redacted]"
    assert headers["user-agent"] == "spec-client"
    assert start.data["params"] == {"token": "[redacted]", "page": "2"}
    assert "s3cr3t" not in repr([e.data for e in captured.events])


def test_streaming_response_is_timed_to_its_last_chunk(server: Any) -> None:
    """A streaming response completes at its last body message: the duration covers the
    whole stream (3 chunks 50 ms apart) and the size counts every chunk."""
    with ascope.testing.capture() as captured:
        response = httpx.get(server.url("/stream"))
        server.settle()
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    _start, tree = request_tree(captured.events, "/stream")
    complete = one(tree, "http_request_complete")
    assert complete.data["response_size"] == len(response.content)
    assert complete.data["content_type"].startswith("text/plain")
    assert complete.data["duration_ns"] >= 150_000_000
    assert complete.data["outcome"] == "complete"


def test_server_sent_events_are_one_request(server: Any) -> None:
    """An event stream is one request, complete when the stream ends."""
    with ascope.testing.capture() as captured:
        with httpx.stream("GET", server.url("/events")) as response:
            lines = [line for line in response.iter_lines() if line]
        server.settle()
    assert lines == ["data: 0", "data: 1", "data: 2"]
    _start, tree = request_tree(captured.events, "/events")
    complete = one(tree, "http_request_complete")
    assert complete.data["content_type"].startswith("text/event-stream")
    assert complete.data["duration_ns"] >= 150_000_000


def test_exception_escaping_the_app_is_an_error_and_a_500(server: Any) -> None:
    """An exception escaping the handler is recorded (error event with type and message,
    a 500 completion with outcome "error", endpoint exit with outcome "raise") and still
    reaches the server unchanged (uvicorn/Starlette answer 500)."""
    with ascope.testing.capture() as captured:
        response = httpx.get(server.url("/boom"))
        server.settle()
    assert response.status_code == 500
    start, tree = request_tree(captured.events, "/boom")
    error = one(tree, "error")
    assert error.data["type"] == "RuntimeError" and error.data["message"] == "kaboom"
    assert error.correlation_id == start.correlation_id
    assert one(tree, "endpoint_exit").data["outcome"] == "raise"
    complete = one(tree, "http_request_complete")
    assert complete.data["status"] == 500
    assert complete.data["outcome"] == "error"
    assert kinds(tree).index("error") < kinds(tree).index("http_request_complete")


def test_background_task_stays_in_the_tree_but_not_in_the_duration(server: Any) -> None:
    """Work run after the response (a background task taking 200 ms) is still a child of
    the request, but the request's duration ends with the response."""
    with ascope.testing.capture() as captured:
        response = httpx.get(server.url("/later?id=9"))
        server.settle()
    assert response.text == "accepted"
    _start, tree = request_tree(captured.events, "/later")
    call = one(tree, "function_entry")
    assert call.data["function"].endswith("audit")
    complete = one(tree, "http_request_complete")
    assert complete.data["duration_ns"] < 150_000_000
    call_exit = [e for e in tree if e.kind == "function_exit"
                 and e.correlation_id == call.correlation_id]
    assert call_exit[0].ts_ns > complete.ts_ns


def test_client_disconnect_mid_response_is_recorded(server: Any) -> None:
    """A client that goes away during an endless streaming response: the request ends
    with outcome "disconnect", not "complete", and the server keeps serving."""
    gate.clear()
    with ascope.testing.capture() as captured:
        with httpx.stream("GET", server.url("/endless")) as response:
            for _chunk in response.iter_bytes():
                break
        assert gate.wait(5)
        server.settle()
    _start, tree = request_tree(captured.events, "/endless")
    complete = one(tree, "http_request_complete")
    assert complete.data["outcome"] == "disconnect"
    assert complete.data["status"] == 200
    assert complete.data["response_size"] >= 1024
    assert httpx.get(server.url("/items/3")).status_code == 200


def test_class_endpoint_records_its_method_as_action(server: Any) -> None:
    """An HTTPEndpoint class is the endpoint; the HTTP method it dispatched to is the action."""
    with ascope.testing.capture() as captured:
        assert httpx.post(server.url("/things")).status_code == 201
        server.settle()
    entry = one(captured.events, "endpoint_entry")
    assert entry.data["endpoint"].endswith("Things")
    assert entry.data["action"] == "post"
    assert one(captured.events, "endpoint_exit").data["result"] == 201


def test_mounted_route_template_includes_the_mount(server: Any) -> None:
    """A route under a Mount is named by its full template."""
    with ascope.testing.capture() as captured:
        assert httpx.get(server.url("/api/v1/users/ada")).text == "ada"
        server.settle()
    start = one(captured.events, "http_request_start")
    assert start.data["route"] == "/api/v1/users/{name}"
    assert one(captured.events, "endpoint_entry").data["params"] == {"name": "ada"}


def test_unmatched_path_is_a_request_without_endpoint(server: Any) -> None:
    """A 404 from the router: request events with status 404, no endpoint, no route."""
    with ascope.testing.capture() as captured:
        assert httpx.get(server.url("/nowhere")).status_code == 404
        server.settle()
    start, tree = request_tree(captured.events, "/nowhere")
    assert start.data["route"] is None
    assert "endpoint_entry" not in kinds(tree)
    assert one(tree, "http_request_complete").data["status"] == 404


def test_capture_off_records_nothing_and_serves_the_same(server: Any) -> None:
    """With capture off the middleware only passes calls through."""
    before = ascope.stats().written
    response = httpx.get(server.url("/items/11"))
    assert response.json() == {"id": 11, "child": 7}
    server.settle()
    assert ascope.stats().written == before


def test_plain_asgi_app_wrapped_directly_on_uvloop() -> None:
    """``AscopeMiddleware(app)`` around a bare ASGI callable (no router) on a uvloop server:
    request events without endpoint, lifespan passed through to the app."""
    lifespan_seen: list[str] = []

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                lifespan_seen.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 203,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"bare"})

    with (serve(AscopeMiddleware(bare, enable=False), loop="uvloop") as running,
          ascope.testing.capture() as captured):
        assert httpx.get(running.url("/x?q=1")).status_code == 203
        running.settle()
    assert lifespan_seen == ["lifespan.startup", "lifespan.shutdown"]
    start, tree = request_tree(captured.events, "/x")
    assert start.data["params"] == {"q": "1"}
    assert kinds(tree) == ["http_request_start", "http_request_complete"]
    assert one(tree, "http_request_complete").data["status"] == 203


def test_many_concurrent_requests_do_not_mix(server: Any) -> None:
    """20 concurrent requests: each endpoint and call sits under its own request."""
    async def drive() -> None:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(*(client.get(server.url(f"/items/{n}")) for n in range(20)))

    with ascope.testing.capture() as captured:
        asyncio.run(drive())
        server.settle()
    starts = by_kind(captured.events, "http_request_start")
    assert len(starts) == 20
    for start in starts:
        tree = tree_of(captured.events, start.correlation_id)
        item_id = int(start.data["path"].rsplit("/", 1)[1])
        assert one(tree, "endpoint_entry").data["params"] == {"item_id": item_id}
        assert one(tree, "function_entry").data["args"] == {"item_id": item_id}
        assert one(tree, "http_request_complete").data["status"] == 200


def test_request_start_is_stamped_with_the_arrival_time() -> None:
    """The start event is sent once the route is known, but stamped with the time the
    request reached the middleware: a 100 ms middleware between ascope and the router
    shows up as the gap between request start and endpoint entry."""

    class Slow:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                await asyncio.sleep(0.1)
            await self.app(scope, receive, send)

    app = Starlette(routes=[Route("/items/{item_id:int}", item)])
    app.add_middleware(Slow)
    app.add_middleware(AscopeMiddleware, enable=False)  # added last: outermost
    with serve(app) as running, ascope.testing.capture() as captured:
        before = time.perf_counter_ns()
        httpx.get(running.url("/items/8"))
        running.settle()
    start = one(captured.events, "http_request_start")
    entry = one(captured.events, "endpoint_entry")
    assert before <= start.ts_ns
    assert entry.ts_ns - start.ts_ns >= 100_000_000
    assert start.data["route"] == "/items/{item_id}"


# -- installing ---------------------------------------------------------------------------------


def test_install_adds_the_middleware_to_a_starlette_app_once() -> None:
    """``ascope.install(app)`` adds AscopeMiddleware in place and returns the app itself;
    a second install does not add a second one."""
    app = Starlette(routes=[Route("/items/{item_id:int}", item)])
    assert ascope.install(app, enable=False, integrations=False) is app
    assert ascope.install(app, enable=False, integrations=False) is app
    assert [m.cls for m in app.user_middleware] == [AscopeMiddleware]


def test_install_wraps_any_other_asgi_callable() -> None:
    """For a bare ASGI callable, install returns the wrapping middleware (serve that)."""
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        return None

    wrapped = ascope.install(bare, enable=False, integrations=False)
    assert isinstance(wrapped, AscopeMiddleware) and wrapped.app is bare
    assert ascope.install(wrapped) is wrapped
    with pytest.raises(ascope.ConfigurationError):
        ascope.install(42)


def test_install_switches_capture_and_integrations_on() -> None:
    """By default the middleware switches capture on into the configured sinks and
    enables the library integrations that are installed; the server's events reach the
    sink without any capture() block."""
    import ascope.integrations as registry

    from ascope.sinks import MemorySink

    sink = MemorySink()
    ascope.configure(sinks=[sink])
    app = Starlette(routes=[Route("/items/{item_id:int}", item)])
    try:
        ascope.install(app)
        with serve(app) as running:
            assert httpx.get(running.url("/items/4")).status_code == 200
            running.settle()
            assert ascope.enabled()
            assert registry.enabled() == frozenset(registry.available())
    finally:
        registry.disable()
    assert "http_request_start" in [e.kind for e in sink.events]


def test_integrations_option_false_enables_none() -> None:
    """``integrations=False`` leaves the library integrations alone."""
    import ascope.integrations as registry

    AscopeMiddleware(Starlette(), enable=False, integrations=False)
    assert registry.enabled() == frozenset()


def test_lifespan_and_unknown_scope_types_pass_through_untouched() -> None:
    """Scopes other than http/websocket reach the app with the very same scope, receive
    and send objects, capture on or off."""
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    middleware = AscopeMiddleware(app, enable=False, integrations=False)

    async def drive() -> None:
        for kind in ("lifespan", "custom.protocol"):
            scope = {"type": kind}
            await middleware(scope, receive, send)
            assert seen[-1] == (scope, receive, send) and seen[-1][0] is scope
            assert scope == {"type": kind}

    with ascope.testing.capture() as captured:
        asyncio.run(drive())
    asyncio.run(drive())
    assert [e.kind for e in captured.events if e.kind.startswith(("http", "channel"))] == []


@pytest.mark.parametrize("message", [
    {"status": 200},  # no type
    "not a mapping",
    {"type": "http.response.body", "body": object()},  # a body without a length
])
def test_a_message_the_wrapped_send_cannot_read_fails_where_it_would_without_ascope(
        message: Any) -> None:
    """The wrapped ``send`` returns the server's awaitable: an app that makes it first and
    awaits it later sees the server's own error, at the await, with or without ascope."""
    class ServerError(Exception):
        pass

    async def server_send(message: Any) -> None:
        raise ServerError(repr(message))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    outcomes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pending = send(message)  # made here, awaited below
        outcomes.append("made")
        try:
            await pending
        except ServerError:
            outcomes.append("server error at await")

    async def drive(asgi: Any) -> None:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [],
                 "query_string": b""}
        await asgi(scope, receive, server_send)

    asyncio.run(drive(app))
    bare = list(outcomes)
    outcomes.clear()
    with ascope.testing.capture():
        asyncio.run(drive(AscopeMiddleware(app, enable=False, integrations=False)))
    assert bare == outcomes == ["made", "server error at await"]


def test_endpoints_option_false_records_no_endpoint_but_keeps_the_route() -> None:
    """``endpoints=False``: no endpoint events (even though another middleware wrapped the
    route classes), and the request still names its route (read from the scope)."""
    app = Starlette(routes=[Route("/items/{item_id:int}", item)])
    app.add_middleware(AscopeMiddleware, enable=False, endpoints=False)
    with serve(app) as running, ascope.testing.capture() as captured:
        assert httpx.get(running.url("/items/12")).status_code == 200
        running.settle()
    start, tree = request_tree(captured.events, "/items/12")
    assert start.data["route"] == "/items/{item_id}"
    assert "endpoint_entry" not in kinds(tree)
    assert one(tree, "function_entry").parent_id == start.correlation_id


@pytest.mark.parametrize(("header", "expected"), [
    (f"00-{TRACE_ID}-{PARENT_SPAN}-01", (TRACE_ID, PARENT_SPAN, "01")),
    (f"00-{TRACE_ID.upper()}-{PARENT_SPAN}-00", (TRACE_ID, PARENT_SPAN, "00")),
    (f"  00-{TRACE_ID}-{PARENT_SPAN}-01 ", (TRACE_ID, PARENT_SPAN, "01")),
    (f"01-{TRACE_ID}-{PARENT_SPAN}-01-future", (TRACE_ID, PARENT_SPAN, "01")),
    (f"00-{TRACE_ID}-{PARENT_SPAN}-01-extra", None),
    (f"ff-{TRACE_ID}-{PARENT_SPAN}-01", None),
    (f"00-{'0' * 32}-{PARENT_SPAN}-01", None),
    (f"00-{TRACE_ID}-{'0' * 16}-01", None),
    (f"00-{TRACE_ID[:-1]}-{PARENT_SPAN}-01", None),
    (f"00-{TRACE_ID[:-1]}g-{PARENT_SPAN}-01", None),
    (f"00-{TRACE_ID}-{PARENT_SPAN}", None),
    ("", None),
    (b"\xff\xfe", None),
])
def test_traceparent_parsing_follows_w3c(header: str | bytes, expected: Any) -> None:
    """Valid headers give (trace id, parent span id, flags) in lowercase; malformed ones,
    the reserved version ff, all-zero ids and extra fields on version 00 give None."""
    from ascope.integrations import _traceparent

    parsed = _traceparent.parse(header)
    assert (None if parsed is None else tuple(parsed)) == expected


def test_new_trace_ids_are_w3c_shaped_and_distinct() -> None:
    """Fresh trace and span ids are lowercase hex of the W3C lengths, never repeated."""
    from ascope.integrations import _traceparent

    traces = {_traceparent.new_trace_id() for _ in range(1000)}
    assert len(traces) == 1000
    for trace in traces:
        assert len(trace) == 32 and trace == trace.lower() and int(trace, 16) != 0
    span = _traceparent.new_span_id()
    assert len(span) == 16
    header = _traceparent.format(TRACE_ID, span)
    assert _traceparent.parse(header) == (TRACE_ID, span, "01")


def test_new_trace_ids_sort_in_the_order_they_were_made() -> None:
    """Trace ids begin with the time in milliseconds: ids made a millisecond or more
    apart sort in creation order (the store's trace index relies on it), and each parses
    as a valid traceparent."""
    from ascope.integrations import _traceparent

    made = []
    for _ in range(5):
        made.append(_traceparent.new_trace_id())
        time.sleep(0.002)
    assert made == sorted(made)
    assert abs(int(made[0][:12], 16) - time.time_ns() // 1_000_000) < 60_000
    for trace in made:
        assert _traceparent.parse(_traceparent.format(trace, "b7ad6b7169203331")) is not None


def test_long_path_and_header_values_are_bounded(server: Any) -> None:
    """A 5,000-character path and user-agent are recorded cut to the configured bound."""
    ascope.configure(max_string=64)
    long_name = "n" * 5000
    with ascope.testing.capture() as captured:
        assert httpx.get(server.url(f"/api/v1/users/{long_name}"),
                         headers={"user-agent": "u" * 5000}).status_code == 200
        server.settle()
    start = one(captured.events, "http_request_start")
    assert len(repr(start.data)) < 2000
    assert start.data["path"]["$len"] == len(f"/api/v1/users/{long_name}")
    assert start.data["headers"]["user-agent"] == {"$str": "u" * 64, "$len": 5000}


def test_escaping_exception_is_the_same_object_and_cancellation_is_recorded() -> None:
    """Called directly: the exception the app raises comes out of the middleware as the
    very same object (after an error event and a 500 completion), and a request whose
    task is cancelled completes with outcome "cancelled" and stays cancelled."""
    failure = LookupError("missing")
    started = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/fail":
            raise failure
        started.set()
        await asyncio.sleep(3600)

    middleware = AscopeMiddleware(app, enable=False, integrations=False)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    def scope(path: str) -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": path, "query_string": b"",
                "headers": [], "root_path": ""}

    async def drive() -> None:
        with pytest.raises(LookupError) as raised:
            await middleware(scope("/fail"), receive, send)
        assert raised.value is failure
        task = asyncio.create_task(middleware(scope("/hang"), receive, send))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with ascope.testing.capture() as captured:
        asyncio.run(drive())
    failed = tree_of(captured.events,
                     one(captured.events, "http_request_start", path="/fail").correlation_id)
    assert kinds(failed) == ["http_request_start", "error", "http_request_complete"]
    assert one(failed, "http_request_complete").data["status"] == 500
    hung = tree_of(captured.events,
                   one(captured.events, "http_request_start", path="/hang").correlation_id)
    assert one(hung, "http_request_complete").data["outcome"] == "cancelled"
    assert "error" not in kinds(hung)


def test_a_request_leaves_no_reference_cycle_for_the_collector() -> None:
    """The request's state and its scope refer to each other while the request runs; once
    it has returned, reference counting frees both (a cycle per request used to leave
    the scope, the state and what they hold to the garbage collector)."""
    import gc

    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    from starlette.routing import WebSocketRoute

    app = AscopeMiddleware(Starlette(routes=[Route("/items/{item_id:int}", item),
                                             WebSocketRoute("/ws", echo)]), enable=False)

    async def main() -> int:
        await call_http(app, "/items/3")  # warm: first-use caches, the loop's ring
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await call_http(app, "/items/3")
                await call_websocket(app, "/ws", ["hi"])
            return gc.collect()
        finally:
            gc.enable()

    with ascope.testing.capture() as captured:
        assert asyncio.run(main()) == 0
    assert kinds(captured.events).count("http_request_complete") == 21
    assert kinds(captured.events).count("channel_message_complete") == 20
