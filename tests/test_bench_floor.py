"""The ``floor`` variant of benchmarks/bench_asgi.py records what the docs say it does.

Its figure is quoted as the cost of the least Python that captures a request's six
events (docs/integrations.md, "The floor"): a floor that silently recorded fewer would
make that figure mean less than it claims.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import Any

import pytest

pytest.importorskip("starlette")

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench_asgi.py")
_spec = importlib.util.spec_from_file_location("bench_asgi", _PATH)
assert _spec is not None and _spec.loader is not None
bench_asgi = importlib.util.module_from_spec(_spec)  # loaded by path: sys.path untouched
_spec.loader.exec_module(bench_asgi)


def test_the_floor_records_the_six_events_of_a_request_correlated() -> None:
    app = bench_asgi.build_app("floor", None)
    sent: list[dict[str, Any]] = []

    async def drive() -> None:
        startup = [{"type": "lifespan.startup"}]
        started = asyncio.Event()

        async def lifespan_receive() -> dict[str, Any]:
            if startup:
                return startup.pop()
            await asyncio.Event().wait()  # until cancelled
            raise AssertionError("unreachable")

        async def lifespan_send(message: dict[str, Any]) -> None:
            started.set()

        lifespan = asyncio.ensure_future(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive,
                lifespan_send))
        await started.wait()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        bench_asgi._FLOOR_EVENTS.clear()
        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                   "method": "GET", "scheme": "http", "path": "/items/42", "raw_path":
                   b"/items/42", "root_path": "", "query_string": b"", "headers": [],
                   "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)},
                  receive, send)
        lifespan.cancel()

    asyncio.run(drive())
    assert sent[0]["status"] == 200 and b'"widget 42"' in sent[-1]["body"]
    events = bench_asgi._FLOOR_EVENTS
    assert [event[0] for event in events] == [
        "http_request_start", "endpoint_entry", "query_start", "query_complete",
        "endpoint_exit", "http_request_complete"]
    assert len({event[2] for event in events}) == 1  # one request's number on all six
    assert all(type(event[1]) is int for event in events)
