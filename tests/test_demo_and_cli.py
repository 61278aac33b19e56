"""The bundled demo and the ``ascope`` command, end to end (real uvicorn on 127.0.0.1, real
HTTP and websocket clients, a real SQLite store), in a subprocess as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ascope.store import open_store


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ascope.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_demo_captures_each_request_as_a_tree(tmp_path: Path) -> None:
    """`ascope demo` serves the demo app, drives it, and stores one trace per request:
    the driver's httpx call -> request -> endpoint -> instrumented calls -> their queries,
    tasks under /report, and the websocket session as a channel with one operation per
    message."""
    done = run_cli("demo", "--db", "demo.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "GET /users/1 -> 200" in done.stdout
    with open_store(tmp_path / "demo.db") as store:
        requests = store.events(kind="http_request_start")
        assert sorted(e.data["path"] for e in requests) == [
            "/report", "/users/1", "/users/2", "/users/9"]
        report = next(e for e in requests if e.data["path"] == "/report")
        trace = store.events(trace_id=report.trace_id)
        by_id = {e.correlation_id: e for e in trace if e.kind.endswith(("_start", "_entry",
                                                                        "_spawn"))}

        def ancestors(event_id: int | None) -> list[str]:
            chain = []
            while event_id in by_id:
                chain.append(by_id[event_id].kind)
                event_id = by_id[event_id].parent_id
            return chain

        queries = [e for e in trace if e.kind == "query_start"]
        assert len(queries) == 2
        for query in queries:
            assert ancestors(query.correlation_id) == [
                "query_start", "function_entry", "task_spawn", "endpoint_entry",
                "http_request_start", "http_client_start"]
        # The store's own writes are never captured: exactly the app's 7 queries.
        assert store.count("query_start") == 7
        channel = store.events(kind="channel_join_start")
        assert len(channel) == 1
        messages = store.events(kind="channel_message_start")
        assert [m.parent_id for m in messages] == [channel[0].correlation_id] * 2
        assert {m.data["payload"]["data"] for m in messages} == {"hello", "ascope"}


def test_show_prints_counts_and_trees(tmp_path: Path) -> None:
    """`ascope show` prints the event counts and each trace as an indented tree."""
    assert run_cli("demo", "--db", "demo.db", cwd=tmp_path).returncode == 0
    shown = run_cli("show", "demo.db", "--all", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "http_request_start" in shown.stdout
    lines = shown.stdout.splitlines()
    request = next(i for i, line in enumerate(lines) if "GET /report -> 200" in line)
    assert "endpoint" in lines[request + 1]
    assert len(lines[request + 1]) - len(lines[request + 1].lstrip()) > (
        len(lines[request]) - len(lines[request].lstrip()))


def test_show_reports_a_missing_store(tmp_path: Path) -> None:
    """`ascope show` on a path with no store says so and exits non-zero."""
    shown = run_cli("show", "nothing.db", cwd=tmp_path)
    assert shown.returncode == 1
    assert "no store" in shown.stderr


APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("hello " + request.path_params["name"])

app = Starlette(routes=[Route("/hello/{name}", hello)])
"""


def test_serve_captures_a_users_app(tmp_path: Path) -> None:
    """`ascope serve module:app` serves the app with uvicorn on 127.0.0.1, captured into
    the store given; stopping it (Ctrl-C) writes what was captured."""
    import signal
    import socket
    import time

    import httpx

    (tmp_path / "myservice.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ascope.cli", "serve", "myservice:app",
                               "--db", "trace.db", "--port", str(port)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/hello/ada", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.text == "hello ada"
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    with open_store(tmp_path / "trace.db") as store:
        (start,) = store.events(kind="http_request_start")
        assert start.data["path"] == "/hello/ada"
        assert start.data["route"] == "/hello/{name}"
        assert store.count("endpoint_entry") == 1


PLAIN = """
import asyncio
import ascope

ascope.configure(sinks=["sqlite:plain.db"])


@ascope.instrument
async def fetch(n: int) -> int:
    return n


async def main() -> None:
    ascope.enable()
    await asyncio.gather(*(fetch(n) for n in range(7)))


asyncio.run(main())
"""


def test_show_prints_work_outside_any_trace(tmp_path: Path) -> None:
    """A plain asyncio program has no trace ids: `ascope show` prints its tasks and calls
    as one tree, cut to 5 top-level operations unless --all."""
    (tmp_path / "plain.py").write_text(PLAIN)
    ran = subprocess.run([sys.executable, "plain.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    shown = run_cli("show", "plain.db", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "outside any trace" in shown.stdout
    assert shown.stdout.count("task fetch") == 5
    assert "(2 more top-level operations; --all shows them)" in shown.stdout
    every = run_cli("show", "plain.db", "--all", cwd=tmp_path)
    assert every.stdout.count("task fetch") == 7
    assert every.stdout.count("call __main__:fetch") == 7
