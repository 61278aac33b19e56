"""Real servers for the integration tests: uvicorn on 127.0.0.1, in a thread of this process.

    with serve(app) as server:
        with ascope.testing.capture() as captured:
            httpx.get(server.url("/items/1"))
            server.settle()
        ...

``serve`` binds a socket on a free port itself (no race for the port), runs
``uvicorn.Server`` on its own loop in a daemon thread (``loop="asyncio"`` or ``"uvloop"``)
and stops it on exit. The app is wrapped by a counter of calls in flight, so
``server.settle()`` can wait until every request and websocket the server was handling has
returned (all middleware events emitted) and then flush the server loop's ring, so the
surrounding ``capture()`` block sees everything. Events of a server in this process carry
no capture scope, so an open ``ascope.testing.capture()`` collects them.

Hook for database tests (``docs/integrations.md``): build the app with handlers that use
the database, then assert on ``query_start`` events whose parent chain reaches the
request's ``http_request_start`` (``tree_of`` below gives the chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import uvicorn

import ascope
from ascope import Event

ASGIApp = Callable[..., Any]


class _InFlight:
    """Outermost ASGI wrapper counting the calls the server has not finished."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.active = 0
        self.calls = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        self.active += 1
        self.calls += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class RunningServer:
    """A uvicorn server running in a thread; ``url``/``ws_url`` build addresses for it."""

    def __init__(self, server: uvicorn.Server, counter: _InFlight, port: int,
                 thread: threading.Thread) -> None:
        self.server = server
        self.counter = counter
        self.port = port
        self.thread = thread
        self.loop: asyncio.AbstractEventLoop | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until the server is handling no request or connection."""
        deadline = time.monotonic() + timeout
        while self.counter.active:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server still busy with {self.counter.active} calls")
            time.sleep(0.005)

    def flush(self, timeout: float = 10.0) -> None:
        """Hand the server loop's pending events to the writer and wait until written."""
        assert self.loop is not None, "server loop unknown (not started?)"
        future = asyncio.run_coroutine_threadsafe(ascope.flush(), self.loop)
        future.result(timeout)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for in-flight calls to finish, then flush their events."""
        self.wait_idle(timeout)
        self.flush(timeout)


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve(app: ASGIApp, *, loop: str = "asyncio", ws: str = "auto",
          timeout: float = 60.0) -> Iterator[RunningServer]:
    """Run ``app`` under uvicorn on 127.0.0.1 for the block."""
    sock = _bound_socket()
    port = int(sock.getsockname()[1])
    counter = _InFlight(app)
    config = uvicorn.Config(counter, loop=loop, ws=ws, lifespan="auto", log_level="warning",
                            access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as error:  # reported by the main thread
            failure.append(error)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    running = RunningServer(server, counter, port, thread)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start: {failure!r}")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start in time")
        time.sleep(0.01)
    running.loop = counter.loop or _server_loop(server)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        if failure:
            raise failure[0]


def _server_loop(server: uvicorn.Server) -> asyncio.AbstractEventLoop:
    # uvicorn keeps its listening servers; their loop is the one it runs on.
    for listener in server.servers:
        loop = getattr(listener, "_loop", None) or getattr(listener, "get_loop", None)
        if callable(loop):
            loop = loop()
        if loop is not None:
            return loop  # type: ignore[no-any-return]
    raise RuntimeError("could not find the server's loop")


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    """``server_factory(app, loop=...)`` starts a server that stops after the test."""
    stack = contextlib.ExitStack()
    with stack:
        yield lambda app, **options: stack.enter_context(serve(app, **options))


# -- reading event trees ----------------------------------------------------------------------


def by_kind(events: Sequence[Event], kind: str) -> list[Event]:
    return [event for event in events if event.kind == kind]


def one(events: Sequence[Event], kind: str, **data: Any) -> Event:
    """The single event of ``kind`` whose data has the given values."""
    found = [e for e in events if e.kind == kind
             and all(e.data.get(key) == value for key, value in data.items())]
    assert len(found) == 1, f"expected one {kind} {data}, got {len(found)}: {found}"
    return found[0]


def tree_of(events: Sequence[Event], root_id: int) -> list[Event]:
    """Every event whose correlation chain (correlation id, then parents) reaches root_id."""
    parents: dict[int, int | None] = {}
    for event in events:
        if event.correlation_id is not None and event.correlation_id not in parents:
            parents[event.correlation_id] = event.parent_id
    found = []
    for event in events:
        cid: int | None = event.correlation_id
        seen = 0
        while cid is not None and seen < 64:
            if cid == root_id:
                found.append(event)
                break
            cid = parents.get(cid)
            seen += 1
    return found


def kinds(events: Sequence[Event]) -> list[str]:
    return [event.kind for event in events]


# -- driving an ASGI app directly (no server): exact, deterministic --------------------------


async def call_http(app: ASGIApp, path: str,
                    headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    """One GET of ``path`` straight into ``app``; the messages it sent back."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers or [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def call_websocket(app: ASGIApp, path: str, texts: Sequence[str]
                         ) -> list[dict[str, Any]]:
    """A websocket connection to ``path`` sending ``texts``, then disconnecting; the
    messages the app sent back."""
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "subprotocols": []}
    incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    incoming += [{"type": "websocket.receive", "text": text} for text in texts]
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
