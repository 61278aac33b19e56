"""httpx integration: outgoing requests to real uvicorn services on 127.0.0.1.

Servers run in threads (a loop each); they are stopped inside the ``capture()`` block, so
their loops hand everything they recorded to the writer before the capture closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import ascope.integrations
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ascope
from ascope import runtime
from ascope.testing import capture

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from ascope.integrations._redact import redact_url  # noqa: E402
from ascope.integrations.httpx import _Body  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import (  # noqa: E402
    JSONResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Route  # noqa: E402

OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"


class Service:
    """A uvicorn server on 127.0.0.1 (free port) in a thread of its own."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off", loop="asyncio", http="h11", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-service",
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def running(app: Any) -> Iterator[Service]:
    service = Service(app)
    try:
        yield service
    finally:
        service.stop()


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"traceparent": request.headers.get("traceparent"),
                         "query": dict(request.query_params)})


ECHO = Starlette(routes=[Route("/echo", echo)])


@pytest.fixture(autouse=True)
def _httpx_on() -> Iterator[None]:
    ascope.integrations.enable("httpx")
    yield
    ascope.integrations.disable()


def of_kind(events: list[ascope.Event], kind: str) -> list[ascope.Event]:
    return [event for event in events if event.kind == kind]


def span_id(traceparent: str) -> int:
    return int(traceparent.split("-")[2], 16)


@pytest.mark.asyncio
async def test_async_request_is_a_child_operation_that_passes_the_trace_on() -> None:
    """An AsyncClient request is an operation under the current one; the service receives
    a traceparent naming the trace and, as parent span, the request's correlation id;
    credentials and sensitive query values are redacted from the recorded URL."""
    with running(ECHO) as service:
        port = service.url.rpartition(":")[2]
        async with capture() as captured:
            operation = runtime.report_function_entry("app", "handler")
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"http://alice:s3cret@127.0.0.1:{port}/echo?token=abc&page=2")
            runtime.report_function_exit(operation)
            service.stop()
    received = response.json()
    assert received["query"] == {"token": "abc", "page": "2"}  # the request itself unchanged
    (start,) = of_kind(captured.events, "http_client_start")
    (complete,) = of_kind(captured.events, "http_client_complete")
    assert start.parent_id == operation
    assert start.data["method"] == "GET"
    assert start.data["url"] == (
        f"http://[redacted]@127.0.0.1:{port}/echo?token=[redacted]&page=2")
    assert start.data["traceparent"] == received["traceparent"]
    assert received["traceparent"] == f"00-{start.trace_id}-{start.correlation_id:016x}-01"
    assert complete.correlation_id == start.correlation_id
    assert complete.data["status"] == 200 and complete.data["error"] is None
    assert complete.data["duration_ns"] > 0
    assert runtime.current_correlation_id() is None


@pytest.mark.asyncio
async def test_request_inside_a_trace_keeps_its_trace_id() -> None:
    """Inside a trace (an incoming request's, here set by hand) the outgoing traceparent
    carries that trace id, not a new one."""
    with running(ECHO) as service:
        async with capture() as captured:
            ascope.initialize_context(trace_id="ab" * 16)
            async with httpx.AsyncClient() as client:
                received = (await client.get(f"{service.url}/echo")).json()
            service.stop()
    (start,) = of_kind(captured.events, "http_client_start")
    assert start.trace_id == "ab" * 16
    assert received["traceparent"].split("-")[1] == "ab" * 16


@pytest.mark.asyncio
async def test_sync_client_in_a_worker_thread_is_correlated() -> None:
    """The sync Client, run through ``asyncio.to_thread`` (which copies the context), nests
    its requests under the operation that sent the work to the thread."""
    def fetch(url: str) -> Any:
        with httpx.Client() as client:
            return client.get(url).json()

    with running(ECHO) as service:
        async with capture() as captured:
            operation = runtime.report_function_entry("app", "handler")
            received = await asyncio.to_thread(fetch, f"{service.url}/echo")
            runtime.report_function_exit(operation)
            service.stop()
    (start,) = of_kind(captured.events, "http_client_start")
    assert start.parent_id == operation
    assert span_id(received["traceparent"]) == start.correlation_id
    (complete,) = of_kind(captured.events, "http_client_complete")
    assert complete.data["status"] == 200


@pytest.mark.asyncio
async def test_connection_error_is_recorded_and_raised_unchanged() -> None:
    """A request that cannot connect raises httpx's own ConnectError; its operation ends
    with no status, the error type, and the message in an ``error`` event."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with capture() as captured, httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
    (start,) = of_kind(captured.events, "http_client_start")
    (complete,) = of_kind(captured.events, "http_client_complete")
    assert complete.data == {"status": None, "duration_ns": complete.data["duration_ns"],
                             "error": "ConnectError", "headers_ns": None, "size": 0}
    (error,) = of_kind(captured.events, "error")
    assert error.correlation_id == start.correlation_id and error.data["source"] == "http_client"


@pytest.mark.asyncio
async def test_an_outgoing_request_is_a_node_of_the_tree() -> None:
    """In the rebuilt tree an httpx call is an operation of its own, under the code that
    made it, with what it did inside it (anyio's connection task, when it makes one)
    nested under it, and how it ended in its label."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with running(ECHO) as service:
        async with capture() as captured:
            operation = runtime.report_function_entry("app", "handler")
            async with httpx.AsyncClient() as client:
                await client.get(f"{service.url}/echo")
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{closed_port}/")
            runtime.report_function_exit(operation)
            service.stop()
    tree = captured.tree()
    (handler,) = tree.find("app:handler")
    calls = [node for node in handler.children if node.kind == "http_client_start"]
    assert [node.label for node in calls] == [
        f"http GET {service.url}/echo -> 200",
        f"http GET http://127.0.0.1:{closed_port}/ -> error ConnectError"]
    assert tree.find(f"http GET {service.url}/echo") == calls[:1]
    # Nothing the calls did is left at the top of the tree.
    assert [node.kind for node in tree.children] == ["function_entry"]
    assert all(event.kind != "http_client_complete" for event in handler.events)


CHUNK = b"x" * 1000
PAUSE = 0.1


async def slow_body(request: Request) -> StreamingResponse:
    """Headers at once, then three chunks PAUSE apart (or a failure after the first)."""
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(3):
            if index:
                await asyncio.sleep(PAUSE)
            if index == 1 and "fail" in request.query_params:
                raise RuntimeError("the body breaks off")
            yield CHUNK

    return StreamingResponse(chunks(), media_type="application/octet-stream")


SLOW = Starlette(routes=[Route("/slow", slow_body)])


def completion(events: list[ascope.Event]) -> dict[str, Any]:
    (complete,) = of_kind(events, "http_client_complete")
    return dict(complete.data)


@pytest.mark.asyncio
async def test_the_operation_lasts_until_the_body_is_read() -> None:
    """A response whose body streams for 2 x PAUSE: the operation ends when the body has
    been read (AsyncClient.get reads it), not when the headers came; it counts the bytes."""
    with running(SLOW) as service:
        async with capture() as captured:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{service.url}/slow")
            service.stop()
    assert response.content == CHUNK * 3
    data = completion(captured.events)
    assert data["status"] == 200 and data["error"] is None and data["size"] == 3000
    assert data["headers_ns"] < PAUSE * 1e9 <= 2 * PAUSE * 1e9 <= data["duration_ns"]


def test_a_sync_stream_ends_when_the_reader_is_done() -> None:
    """The sync Client streaming: the operation ends at the end of the reader's loop,
    and while the body streams the caller's own operation is current again."""
    with running(SLOW) as service, capture() as captured:
        outer = runtime.report_function_entry("app", "download")
        with httpx.Client() as client, client.stream("GET", f"{service.url}/slow") as response:
            current = runtime.current_correlation_id()
            received = b"".join(response.iter_bytes())
        runtime.report_function_exit(outer)
        service.stop()
    assert received == CHUNK * 3 and current == outer
    data = completion(captured.events)
    assert data["size"] == 3000 and data["duration_ns"] >= 2 * PAUSE * 1e9 > data["headers_ns"]


class _Lockstep:
    """A deterministic interleaving of two threads in one function (``code``): traced with
    ``trace`` (``sys.settrace`` on each thread), each line of it waits until the other
    thread has run as many of its lines or has returned from it, so the two run it side by
    side, line by line, as thread switches at the worst moments would (or two cores on a
    free-threaded build). A wait gives up after ``timeout``, so a version of the function
    that makes one thread wait for the other cannot hang the test."""

    def __init__(self, code: Any, timeout: float = 5.0) -> None:
        self.code = code
        self.timeout = timeout
        self.entered = threading.Event()
        self._changed = threading.Condition()
        self._lines: dict[int, int] = {}
        self._returned: set[int] = set()

    def trace(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is not self.code:
            return None
        self.entered.set()
        return self._step

    def _step(self, frame: Any, event: str, arg: Any) -> Any:
        me = threading.get_ident()
        with self._changed:
            if event == "line":
                line = self._lines[me] = self._lines.get(me, 0) + 1
                self._changed.notify_all()
                self._changed.wait_for(lambda: any(
                    other != me and (count >= line or other in self._returned)
                    for other, count in self._lines.items()), self.timeout)
            elif event == "return":
                self._returned.add(me)
                self._changed.notify_all()
        return self._step


def test_a_sync_stream_read_to_its_end_while_closed_elsewhere_ends_once() -> None:
    """The sync Client's response read to its end in one thread while another thread closes
    it: both end the operation at the same moment (run in lockstep through its end), and it
    is recorded exactly once; the reader gets the whole body, neither thread an error."""
    lockstep = _Lockstep(_Body.finish.__code__)
    failures: list[BaseException] = []
    received: list[bytes] = []

    def traced(work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            previous = sys.gettrace()
            sys.settrace(lockstep.trace)
            try:
                work()
            except BaseException as error:  # reported by the test's thread
                failures.append(error)
            finally:
                sys.settrace(previous)

        return threading.Thread(target=run)

    with running(ECHO) as service, capture() as captured:
        with httpx.Client() as client, client.stream("GET", f"{service.url}/echo") as response:
            def read() -> None:
                received.extend(response.iter_raw())

            def close() -> None:
                assert lockstep.entered.wait(10), "the reader did not reach the end"
                response.close()  # while the reader is ending the operation

            threads = [traced(read), traced(close)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        service.stop()
    assert not failures and not any(thread.is_alive() for thread in threads)
    completes = of_kind(captured.events, "http_client_complete")
    assert len(completes) == 1, completes
    data = completes[0].data
    assert data["status"] == 200 and data["error"] is None
    assert data["size"] == len(b"".join(received)) > 0


@pytest.mark.asyncio
async def test_a_response_closed_early_ends_at_its_close() -> None:
    """The reader stops after the first chunk and closes: the operation ends then, with
    the bytes read so far and no error."""
    with running(SLOW) as service:
        async with capture() as captured:
            async with httpx.AsyncClient() as client, client.stream(
                    "GET", f"{service.url}/slow") as response:
                async for chunk in response.aiter_raw():
                    assert chunk == CHUNK
                    break
            service.stop()
    data = completion(captured.events)
    assert data["error"] is None and data["size"] == 1000
    assert data["duration_ns"] < 2 * PAUSE * 1e9


@pytest.mark.asyncio
async def test_a_body_that_breaks_off_is_an_error_raised_unchanged() -> None:
    """The server fails after the first chunk: httpx raises its own error while reading,
    unchanged, and the operation ends with that error."""
    with running(SLOW) as service:
        async with capture() as captured:
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get(f"{service.url}/slow?fail=1")
            service.stop()
    data = completion(captured.events)
    assert data["status"] == 200 and data["error"] == "RemoteProtocolError"
    assert data["size"] == 1000
    (start,) = of_kind(captured.events, "http_client_start")
    errors = [e for e in of_kind(captured.events, "error")
              if e.data["source"] == "http_client"]
    assert [(e.correlation_id, e.trace_id) for e in errors] == [
        (start.correlation_id, start.trace_id)]


def test_a_response_read_before_it_is_returned_ends_at_once() -> None:
    """A transport that returns a response with its body already read (a test double's
    ``httpx.Response(content=...)``): nothing will read its stream again, so the
    operation ends when it is returned."""
    original = httpx.HTTPTransport.handle_request
    ascope.integrations.disable()
    httpx.HTTPTransport.handle_request = (  # type: ignore[method-assign]
        lambda self, request: httpx.Response(200, content=b"hi", request=request))
    try:
        ascope.integrations.enable("httpx")
        with capture() as captured, httpx.Client() as client:
            assert client.get("http://127.0.0.1:9/").content == b"hi"
    finally:
        ascope.integrations.disable()
        httpx.HTTPTransport.handle_request = original  # type: ignore[method-assign]
        ascope.integrations.enable("httpx")
    data = completion(captured.events)
    assert data["status"] == 200 and data["error"] is None


async def redirect(request: Request) -> RedirectResponse:
    return RedirectResponse("/echo")


@pytest.mark.asyncio
async def test_a_redirect_stays_in_its_trace() -> None:
    """Each hop of a followed redirect is an operation; outside any trace both hops join
    the first hop's trace (httpx copies its header onto the next hop, sent as it is),
    inside one (a request's, here one started by hand) each hop names itself as the
    parent span."""
    app = Starlette(routes=[Route("/echo", echo), Route("/redirect", redirect)])
    with running(app) as service:
        async with capture() as captured:
            async with httpx.AsyncClient(follow_redirects=True) as client:
                outside = (await client.get(f"{service.url}/redirect")).json()
                runtime.initialize_context()  # a trace of its own
                operation = runtime.report_function_entry("app", "handler")
                inside = (await client.get(f"{service.url}/redirect")).json()
                runtime.report_function_exit(operation)
            service.stop()
    starts = of_kind(captured.events, "http_client_start")
    assert len(starts) == 4
    first, second = starts[0], starts[1]
    assert first.trace_id == second.trace_id == outside["traceparent"].split("-")[1]
    assert second.data["traceparent"] == first.data["traceparent"]
    third, fourth = starts[2], starts[3]
    assert third.trace_id == fourth.trace_id != first.trace_id
    assert {third.parent_id, fourth.parent_id} == {operation}
    assert span_id(inside["traceparent"]) == fourth.correlation_id


@pytest.mark.asyncio
async def test_a_traceparent_of_another_trace_is_left_alone() -> None:
    """A traceparent the caller set for a different trace (another tracer's) is sent as
    given, and recorded as what was sent."""
    theirs = f"00-{OTHER_TRACE}-b7ad6b7169203331-01"
    with running(ECHO) as service:
        async with capture() as captured:
            async with httpx.AsyncClient() as client:
                received = (await client.get(f"{service.url}/echo",
                                             headers={"traceparent": theirs})).json()
            service.stop()
    assert received["traceparent"] == theirs
    (start,) = of_kind(captured.events, "http_client_start")
    assert start.data["traceparent"] == theirs


@pytest.mark.asyncio
async def test_nothing_is_added_while_capture_is_off() -> None:
    """With capture off the request goes out exactly as the caller built it."""
    with running(ECHO) as service:
        async with httpx.AsyncClient() as client:
            received = (await client.get(f"{service.url}/echo")).json()
    assert received["traceparent"] is None


def _middleware() -> Any:
    asgi = pytest.importorskip("ascope.integrations.asgi")
    return asgi.AscopeMiddleware


@pytest.mark.asyncio
async def test_two_services_calling_each_other_share_one_trace() -> None:
    """Client -> service A -> service B, both behind AscopeMiddleware: every request and
    client operation carries the client's trace id, and each service's request names the
    calling client operation as its parent span (in the traceparent header it records)."""
    middleware = _middleware()
    with running(middleware(ECHO, enable=False)) as service_b:
        async def call_b(request: Request) -> JSONResponse:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{service_b.url}/echo?api_key=k")
            return JSONResponse({"b": response.json()})

        app_a = middleware(Starlette(routes=[Route("/a", call_b)]), enable=False)
        with running(app_a) as service_a:
            async with capture() as captured:
                operation = runtime.report_function_entry("test", "client")
                async with httpx.AsyncClient() as client:
                    response = await client.get(f"{service_a.url}/a")
                runtime.report_function_exit(operation)
                service_a.stop()
                service_b.stop()
    assert response.status_code == 200

    calls = of_kind(captured.events, "http_client_start")
    requests = of_kind(captured.events, "http_request_start")
    assert len(calls) == 2 and len(requests) == 2
    outer = next(call for call in calls if call.parent_id == operation)
    inner = next(call for call in calls if call is not outer)
    request_a = next(r for r in requests if r.data["path"] == "/a")
    request_b = next(r for r in requests if r.data["path"] == "/echo")
    trace = outer.trace_id
    assert {e.trace_id for e in (*calls, *requests)} == {trace}

    # A's request was caused by the test's call, B's by A's call made inside A's request.
    assert span_id(request_a.data["headers"]["traceparent"]) == outer.correlation_id
    assert span_id(request_b.data["headers"]["traceparent"]) == inner.correlation_id
    parents = {e.correlation_id: e.parent_id for e in captured.events
               if e.kind.endswith(("_start", "_entry"))}
    ancestor = inner.parent_id
    while ancestor is not None and ancestor != request_a.correlation_id:
        ancestor = parents.get(ancestor)
    assert ancestor == request_a.correlation_id
    assert inner.data["url"] == f"{service_b.url}/echo?api_key=[redacted]"
    assert response.json()["b"]["traceparent"] == inner.data["traceparent"]


@pytest.mark.parametrize(("url", "recorded"), [
    ("http://h/p?a=1", "http://h/p?a=1"),
    ("https://u:pw@h:8/x?password=1&a=b#f", "https://[redacted]@h:8/x?password=[redacted]&a=b#f"),
    ("http://ghp_token@h/", "http://[redacted]@h/"),
    ("http://[::1]:80/?Token=x&page=2", "http://[::1]:80/?Token=[redacted]&page=2"),
    ("http://h/?a&sig=zz&a=2", "http://h/?a&sig=[redacted]&a=2"),
    ("http://h/?q=caf%C3%A9&key=k", "http://h/?q=caf%C3%A9&key=[redacted]"),
    ("http://h/?api%5Fkey=1", "http://h/?api%5Fkey=[redacted]"),
    ("http://h/?a=1;session=x", "http://h/?a=1;session=[redacted]"),
    ("http://h/cb#access_token=abc&state=1", "http://h/cb#access_token=[redacted]&state=1"),
    ("http://h/?X-Amz-Signature=abc", "http://h/?X-Amz-Signature=[redacted]"),
    ("http://[::1/", "[unparsable url]"),
])
def test_recorded_urls_lose_credentials_and_secret_parameters(url: str, recorded: str) -> None:
    """Userinfo and the values of sensitive query (and fragment) parameters are replaced;
    everything else is kept exactly as written."""
    assert redact_url(url) == recorded


@given(secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=20),
       name=st.sampled_from(["token", "password", "api_key", "sig", "access_token"]),
       user=st.booleans())
def test_a_secret_never_survives_redaction(secret: str, name: str, user: bool) -> None:
    """Whatever the secret, put in the userinfo or under a sensitive parameter name, it is
    not in the recorded URL."""
    marked = f"SECRET{secret}"
    userinfo = f"{marked}@" if user else f"me:{marked}@"
    url = f"https://{userinfo}example.com/path?page=1&{name}={marked}#{name}={marked}"
    assert marked not in redact_url(url)
