"""Requests per second of a small Starlette JSON endpoint: no middleware, ascope, OpenTelemetry.

    .venv/bin/python benchmarks/bench_asgi.py [--rounds 5] [--duration 3] [--no-query]

The endpoint (``GET /items/{id}``) runs one ``SELECT`` on an in-memory sqlite3 database
and returns the row as JSON (``--no-query``: a fixed JSON object, no SQL).

Three uvicorn servers (uvloop; httptools when installed) run side by side, each pinned to
CPU 0 with ``taskset -c 0``; ``wrk -t1 -c32`` pinned to CPU 1 loads one of them at a time,
on 127.0.0.1 only, rotating the order every round. Each round's figure is divided by the
no-middleware server's figure of the same round, and the median over rounds is printed.

- ``baseline``: the application alone;
- ``ascope``: ``AscopeMiddleware`` capturing the request, endpoint and query events (6
  per request; 4 with ``--no-query``) into the default SQLite store in a temporary
  directory (the writer thread shares CPU 0);
- ``otel``: OpenTelemetry's ``OpenTelemetryMiddleware`` with a ``BatchSpanProcessor`` and
  an exporter that drops the spans (the request's spans only: OpenTelemetry's sqlite3
  instrumentation is not installed).

Diagnostic variants (``--variants``): ``ascope-off``, ``ascope-discard`` (batches thrown
away before the writer: the loop's side alone), ``ascope-nosink``, ``ascope-memory``,
``ascope-notasks``, ``ascope-sampled`` (``--sample-rate``, default 0.1: one request in
ten recorded into SQLite) and ``ascope-unsampled`` (``sample_rate=0``: what a request left
out costs). ``floor`` is not ascope: a minimal Python recorder of the same six events,
storing nothing (see ``_floor_middleware``), a lower bound for middleware of its shape.

Besides req/s, each server's CPU time per request (from ``/proc``) is printed: steadier
than req/s when other tenants of a shared machine take CPU from the server; with the
part of it spent off the loop's thread (ascope's writer). So is its
garbage collection (``gc.callbacks``, read from the server between runs): CPU per request
spent in collections, full collections per 10,000 requests, and the CPU time of the longest
collection (the loop stands still at least that long).

The whole run is bounded: rounds x variants x (duration + 1 s warm-up) plus start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextvars import ContextVar
from typing import Any

VARIANTS = ("baseline", "ascope", "otel")
# Diagnostic variants (``--variants``): where the cost of the ascope variant goes.
EXTRA_VARIANTS = ("ascope-off", "ascope-nosink", "ascope-memory", "ascope-notasks",
                  "ascope-discard", "ascope-sampled", "ascope-unsampled", "floor")


# -- the servers (run in child processes) -----------------------------------------------------


def build_app(variant: str, store: str | None, sample_rate: float = 0.1,
              query: bool = True) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    database: list[Any] = []  # floor: [its recording wrapper, the connection]

    async def item(request: Any) -> JSONResponse:
        item_id = request.path_params["item_id"]
        if not query:
            return JSONResponse({"id": item_id, "name": "widget", "tags": ["a", "b"],
                                 "price": 9.5})
        name, price = database[0].execute(
            "SELECT name, price FROM items WHERE id = ?", (item_id,)).fetchone()
        return JSONResponse({"id": item_id, "name": name, "tags": ["a", "b"], "price": price})

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        if variant == "ascope-notasks":  # diagnostic: no task_spawn/task_exit per request
            import ascope

            ascope.uninstall_task_factory()
        # Opened here, after the middleware stack is built: in the ascope variants the
        # middleware has switched the sqlite3 integration on, so its queries are recorded.
        connection = sqlite3.connect(":memory:", check_same_thread=False)
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        connection.executemany("INSERT INTO items VALUES (?, ?, ?)",
                               [(i, f"widget {i}", 9.5) for i in range(100)])
        database.append(connection)
        try:
            yield
        finally:  # also when the server cancels the lifespan: no connection left unclosed
            connection.close()

    async def collections(request: Any) -> JSONResponse:  # read by the driver: GC_STATS
        totals = {"runs": GC_STATS[:3], "ns": sum(GC_STATS[3:6]), "max_ns": GC_STATS[6]}
        GC_STATS[6] = 0  # the longest collection (its CPU time) since the last read
        return JSONResponse(totals)

    endpoint: Any = item
    if variant == "floor":
        endpoint = _floor_endpoint(item)
    app = Starlette(routes=[Route("/items/{item_id:int}", endpoint), Route("/gc", collections)],
                    lifespan=lifespan)
    if variant == "floor":
        database.append(_FloorConnection(database))  # the lifespan's connection follows
        return _floor_middleware(app)
    if variant.startswith("ascope"):
        from ascope.integrations.asgi import AscopeMiddleware

        import ascope

        sinks = {"ascope": [f"sqlite:{store}"], "ascope-nosink": [],
                 "ascope-memory": ["memory:"], "ascope-off": [],
                 "ascope-notasks": [f"sqlite:{store}"], "ascope-discard": [],
                 "ascope-sampled": [f"sqlite:{store}"],
                 "ascope-unsampled": [f"sqlite:{store}"]}[variant]
        ascope.configure(sinks=sinks)
        if variant == "ascope-sampled":
            ascope.configure(sample_rate=sample_rate)
        elif variant == "ascope-unsampled":
            ascope.configure(sample_rate=0.0)
        app.add_middleware(AscopeMiddleware, enable=variant != "ascope-off")
        if variant == "ascope-discard":  # diagnostic: the loop's side only, no writer work
            from ascope import _pipeline

            _pipeline.WRITER.submit = lambda ring, batch: None  # type: ignore[method-assign]

    elif variant == "otel":
        from opentelemetry import trace
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class DropExporter(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DropExporter()))
        trace.set_tracer_provider(provider)
        app.add_middleware(OpenTelemetryMiddleware)
    return app


# -- floor: a minimal Python recorder of the six events, on the loop -------------------------
#
# Not ascope, and not a usable recorder: a lower bound for middleware of this shape, which
# records a request's start and end, its endpoint's entry and exit and its query's start
# and end, correlated by a context variable, written in Python on the server's loop. Each
# event is a tuple of a name, a perf_counter_ns() reading, the request's number and one or
# two values, appended to a list (its C append, no Python call) that the middleware
# empties once it holds 4,096: no writer, no store, no trace id, no headers, no sampling
# decision, no error handling. What is left: a middleware coroutine, the wrapped `send`, a
# coroutine around the endpoint, a method around the query, a context variable set and
# reset, six clock reads and six tuples. A different design (in C, or reading the
# server's own state instead of wrapping the application) might do less: this bounds
# this design, it proves nothing about all.

_FLOOR_EVENTS: list[tuple[Any, ...]] = []
_FLOOR_REQUEST: ContextVar[int | None] = ContextVar("floor_request", default=None)
_floor_ids = iter(range(1 << 62))


def _floor_middleware(app: Any) -> Any:
    current = _FLOOR_REQUEST
    now = time.perf_counter_ns
    events = _FLOOR_EVENTS
    record = events.append  # a C call per event, no Python frame

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)  # type: ignore[no-any-return]
        if len(events) >= 4096:  # emptied once per request at most, not checked per event
            events.clear()
        request = next(_floor_ids)
        token = current.set(request)
        record(("http_request_start", now(), request, scope["method"], scope["path"]))

        def wrapped_send(message: Any) -> Any:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                record(("http_request_complete", now(), request))
            return send(message)

        try:
            await app(scope, receive, wrapped_send)
        finally:
            current.reset(token)

    return middleware


def _floor_endpoint(endpoint: Any) -> Any:
    current = _FLOOR_REQUEST
    now = time.perf_counter_ns
    record = _FLOOR_EVENTS.append
    name = endpoint.__qualname__

    async def wrapped(request: Any) -> Any:
        record(("endpoint_entry", now(), current.get(), name))
        response = await endpoint(request)
        record(("endpoint_exit", now(), current.get(), response.status_code))
        return response

    return wrapped


class _FloorConnection:
    """database[0] for the floor variant (the lifespan appends the connection it wraps
    as database[1]): each execute recorded."""

    def __init__(self, database: list[Any]) -> None:
        self._database = database

    def execute(self, statement: str, parameters: Any) -> Any:
        request = _FLOOR_REQUEST.get()
        record = _FLOOR_EVENTS.append
        now = time.perf_counter_ns
        record(("query_start", now(), request, statement, parameters))
        cursor = self._database[1].execute(statement, parameters)
        record(("query_complete", now(), request, cursor.rowcount))
        return cursor


# The server's garbage collections: runs per generation, CPU ns spent in them per
# generation, and the longest one (CPU ns) since the driver last read them (GET /gc).
GC_STATS = [0, 0, 0, 0, 0, 0, 0]
_gc_started = [0]


def _count_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.thread_time_ns()  # the collecting thread's CPU: no waits
        return
    spent = time.thread_time_ns() - _gc_started[0]
    generation = info["generation"]
    GC_STATS[generation] += 1
    GC_STATS[3 + generation] += spent
    GC_STATS[6] = max(GC_STATS[6], spent)


def serve(variant: str, port: int, store: str | None, sample_rate: float,
          query: bool = True) -> None:
    import gc

    import uvicorn

    gc.callbacks.append(_count_collection)

    http = "httptools"
    try:
        import httptools  # noqa: F401
    except ImportError:
        http = "h11"
    uvicorn.run(build_app(variant, store, sample_rate, query), host="127.0.0.1", port=port,
                loop="uvloop", http=http, log_level="error", access_log=False, lifespan="on")


# -- the driver -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def run_wrk(port: int, duration: float, connections: int) -> tuple[float, int]:
    """(requests per second, requests completed) of one wrk run against the server."""
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
         f"http://127.0.0.1:{port}/items/42"],
        capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    if match is None or done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses:\n{out}")
    return float(match.group(1)), int(done.group(1))


def collections(port: int) -> dict[str, Any]:
    """The server's garbage collection totals so far (see GC_STATS)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/gc", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _cpu(stat_path: str) -> float:
    with open(stat_path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) the process has used so far: all its threads (ended ones
    included), and all but its main thread, the event loop's (ascope's writer thread)."""
    total = _cpu(f"/proc/{pid}/stat")
    return total, total - _cpu(f"/proc/{pid}/task/{pid}/stat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sample-rate", type=float, default=0.1,
                        help="the ascope-sampled variant's sample_rate (default 0.1)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated; the first is the baseline of the ratios. "
                             f"Also: {', '.join(EXTRA_VARIANTS)}")
    parser.add_argument("--no-query", action="store_true",
                        help="the endpoint runs no SQL (by default each request runs one "
                             "SELECT on an in-memory sqlite3 database, recorded by ascope)")
    parser.add_argument("--serve", choices=VARIANTS + EXTRA_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.store, args.sample_rate, not args.no_query)
        return
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install -y {tool})")

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    for variant in variants:
        if variant not in VARIANTS + EXTRA_VARIANTS:
            sys.exit(f"unknown variant {variant!r}")
    baseline = variants[0]
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="ascope-bench-")
    store = os.path.join(workdir, "ascope.db")
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for variant in variants:
            port = free_port()
            command = ["taskset", "-c", "0", sys.executable, os.path.abspath(__file__),
                       "--serve", variant, "--port", str(port), "--store", store,
                       "--sample-rate", str(args.sample_rate)] + ["--no-query"] * args.no_query
            servers[variant] = (subprocess.Popen(command), port)
        for _process, port in servers.values():
            wait_ready(port)
        results: dict[str, list[float]] = {variant: [] for variant in variants}
        ratios: dict[str, list[float]] = {variant: [] for variant in variants}
        cpu_us: dict[str, list[float]] = {variant: [] for variant in variants}
        off_loop_us: dict[str, list[float]] = {variant: [] for variant in variants}
        gc_us: dict[str, list[float]] = {variant: [] for variant in variants}
        full_runs = dict.fromkeys(variants, 0)
        requests_total = dict.fromkeys(variants, 0)
        longest = dict.fromkeys(variants, 0.0)
        for round_index in range(args.rounds):
            shift = round_index % len(variants)
            order = variants[shift:] + variants[:shift]
            this_round: dict[str, float] = {}
            for variant in order:
                process, port = servers[variant]
                run_wrk(port, 1, args.connections)  # warm-up (JIT-free, but caches/pools)
                gc_before = collections(port)
                before = cpu_seconds(process.pid)
                this_round[variant], requests = run_wrk(port, args.duration, args.connections)
                after = cpu_seconds(process.pid)
                cpu_us[variant].append((after[0] - before[0]) / requests * 1e6)
                off_loop_us[variant].append((after[1] - before[1]) / requests * 1e6)
                gc_after = collections(port)
                gc_us[variant].append((gc_after["ns"] - gc_before["ns"]) / requests / 1000)
                full_runs[variant] += gc_after["runs"][2] - gc_before["runs"][2]
                requests_total[variant] += requests
                longest[variant] = max(longest[variant], gc_after["max_ns"] / 1e6)
            for variant in variants:
                results[variant].append(this_round[variant])
                ratios[variant].append(this_round[variant] / this_round[baseline])
            print(f"round {round_index + 1}: " + "  ".join(
                f"{v} {this_round[v]:,.0f}" for v in variants), flush=True)
    finally:
        for process, _port in servers.values():
            process.terminate()
        for process, _port in servers.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()

    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    print(f"\nuvicorn (uvloop, {http}) pinned to CPU 0; wrk -t1 -c{args.connections} "
          f"-d{args.duration:g}s pinned to CPU 1; {args.rounds} rounds, rotated")
    print(f"{'variant':<16} {'median req/s':>12} {'median ratio':>12}  ratios")
    for variant in variants:
        print(f"{variant:<16} {statistics.median(results[variant]):>12,.0f} "
              f"{statistics.median(ratios[variant]):>11.3f}x  "
              + " ".join(f"{r:.3f}" for r in ratios[variant]))
    # The server's CPU time per request (its process, all threads, from /proc): steadier
    # than req/s on a shared machine, where time taken from the server by other tenants
    # lowers req/s without changing what a request costs. The ratio is the baseline's
    # CPU per request over the variant's: the req/s ratio a CPU of its own would give.
    # "off loop": the part spent by threads other than the loop's (ascope's writer).
    base_cpu = statistics.median(cpu_us[baseline])
    print(f"\n{'variant':<16} {'CPU us/request':>14} {'ratio':>8} {'off loop':>9}  per round")
    for variant in variants:
        median_cpu = statistics.median(cpu_us[variant])
        print(f"{variant:<16} {median_cpu:>14.1f} {base_cpu / median_cpu:>7.3f}x "
              f"{statistics.median(off_loop_us[variant]):>9.1f}  "
              + " ".join(f"{c:.1f}" for c in cpu_us[variant]))
    # Garbage collection in the measured runs: CPU in collections per request, full
    # (generation 2) collections per 10,000 requests, and the CPU time of the longest
    # collection (the whole event loop stands still at least that long).
    print(f"\n{'variant':<16} {'GC us/request':>13} {'full GCs/10k':>12} {'longest ms':>10}")
    for variant in variants:
        print(f"{variant:<16} {statistics.median(gc_us[variant]):>13.2f} "
              f"{full_runs[variant] * 10_000 / max(requests_total[variant], 1):>12.2f} "
              f"{longest[variant]:>10.1f}")
    _report_store(store)
    print(f"total time {time.monotonic() - started:.0f} s")
    shutil.rmtree(workdir, ignore_errors=True)


def _report_store(store: str) -> None:
    if not os.path.exists(store):
        print("ascope store: missing (nothing captured?)")
        return
    from ascope.store import open_store

    with open_store(store) as opened:
        kinds = opened.kinds()
    print("ascope store: " + ", ".join(f"{kind} {count:,}" for kind, count in kinds.items()))


if __name__ == "__main__":
    main()
