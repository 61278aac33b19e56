"""CPU instructions per operation, counted by callgrind: the same every run, noise or not.

    .venv/bin/python benchmarks/bench_instructions.py [--only pair,tasks,writer,sqlite,asgi]

Timings on the shared machine swing by 2x; instruction counts do not (valgrind's
callgrind counts every instruction the process executes, in all its threads). Each
workload runs twice under callgrind, with N operations and with none, and the difference
divided by N is printed: start-up and imports cancel out. Use it to compare two versions
of a hot path exactly; use the timing benchmarks for what a user waits for (instructions
are not time: cache misses and a second core doing a thread's work differ).

Needs valgrind (apt-get install -y valgrind). Takes about a minute per section.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

PRELUDE = """
import asyncio, sys, time
import ascope
from ascope import runtime, _pipeline, _events
N = int(sys.argv[1])
ascope.configure(sinks=[])
ascope.enable()
"""

WORKLOADS: dict[str, dict[str, str]] = {
    "pair": {
        "empty function f(module, function, args)": """
def f(module, function, args): return None
def main():
    for _ in range(N): f("bench", "f", (1, 2))
main()
""",
        "report_function_entry + exit, capture on": """
async def main():
    entry, exit_ = runtime.report_function_entry, runtime.report_function_exit
    for _ in range(N): exit_(entry("bench", "f", (1, 2)), None)
asyncio.run(main())
""",
        "report_line_execution (a point event), capture on": """
async def main():
    line = runtime.report_line_execution
    for i in range(N): line(None, i)
asyncio.run(main())
""",
        "the same pair, pure Python (runtime.PURE_PYTHON)": """
async def main():
    entry = runtime.PURE_PYTHON["report_function_entry"]
    exit_ = runtime.PURE_PYTHON["report_function_exit"]
    for _ in range(N): exit_(entry("bench", "f", (1, 2)), None)
asyncio.run(main())
""",
        "OpenTelemetry span start/end (batch processor)": """
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
class Drop(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS
provider = TracerProvider(); provider.add_span_processor(BatchSpanProcessor(Drop()))
tracer = provider.get_tracer("bench")
def main():
    for _ in range(N):
        with tracer.start_as_current_span("f"): pass
main()
provider.shutdown()
""",
    },
    "tasks": {
        "uvloop: default task factory": """
import uvloop
async def trivial(): return None
async def main():
    loop = asyncio.get_running_loop(); loop.set_task_factory(None)
    for _ in range(N): await loop.create_task(trivial())
uvloop.run(main())
""",
        "uvloop: ascope task factory": """
import uvloop
async def trivial(): return None
async def main():
    loop = asyncio.get_running_loop(); ascope.install_task_factory()
    for _ in range(N): await loop.create_task(trivial())
uvloop.run(main())
""",
        "uvloop, from a loop callback: default task factory": """
import uvloop
async def trivial(): return None
async def main():
    loop = asyncio.get_running_loop(); loop.set_task_factory(None)
    for _ in range(N):  # as uvicorn makes a request's task: from a protocol callback
        done = loop.create_future()
        loop.call_soon(lambda: loop.create_task(trivial()).add_done_callback(
            lambda _: done.set_result(None)))
        await done
uvloop.run(main())
""",
        "uvloop, from a loop callback: ascope task factory": """
import uvloop
async def trivial(): return None
async def main():
    loop = asyncio.get_running_loop(); ascope.install_task_factory()
    for _ in range(N):  # its parent is no operation or task: a frame, no task events
        done = loop.create_future()
        loop.call_soon(lambda: loop.create_task(trivial()).add_done_callback(
            lambda _: done.set_result(None)))
        await done
uvloop.run(main())
""",
        "asyncio: default task factory": """
async def trivial(): return None
async def main():
    loop = asyncio.get_running_loop(); loop.set_task_factory(None)
    for _ in range(N): await loop.create_task(trivial())
asyncio.run(main())
""",
        "asyncio: ascope task factory": """
async def trivial(): return None
async def main():
    loop = asyncio.get_running_loop(); ascope.install_task_factory()
    for _ in range(N): await loop.create_task(trivial())
asyncio.run(main())
""",
    },
    "writer": {
        "writer: one ASGI request's event into SQLite (per event)": """
import os, tempfile
from ascope.sinks import SqliteSink
trace = "0af7651916cd43dd8448eb211c80319c"
batch = []
for i in range(250):
    c = (1 << 40) + 3 * i
    batch += [
        ("http_request_start", i, c, None, c + 2, trace, None, ("GET", "/items/42", None,
         ("127.0.0.1", 50000 + i), {"host": "127.0.0.1:8000"}, "/items/{item_id}")),
        ("endpoint_entry", i, c + 1, c, c + 2, trace, None,
         ("app.item", None, {"item_id": 42}, "/items/{item_id}")),
        ("endpoint_exit", i, c + 1, c, c + 2, trace, None,
         ("app.item", None, 200, "return", 200408)),
        ("http_request_complete", i, c, None, c + 2, trace, None,
         (200, "application/json", 54, 323522, "complete"))]
sink = SqliteSink(os.path.join(tempfile.mkdtemp(), "bench.db"))
def main():
    for _ in range(N // len(batch)):
        sink.write_rows(_events.build_rows(batch, 0), _events.NODE)
main()
""",
    },
    "sqlite": {
        name: """
import sqlite3, ascope.integrations
from ascope import _context
from ascope.integrations._asgi_base import _unsampled
MODE = """ + repr(mode) + """
if MODE != "plain":
    ascope.integrations.enable("sqlite")
connection = sqlite3.connect(":memory:")
connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
connection.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, "w", 9.5) for i in range(100)])
async def main():
    if MODE == "left out":  # the frame a request left out by sample_rate runs under
        _context.current.set(_unsampled(_context.current.get(), "0af7651916cd43dd8448eb211c80319c"))
    elif MODE == "recorded":
        runtime.report_function_entry("bench", "operation")
    for _ in range(N):
        connection.execute("SELECT name, price FROM items WHERE id = ?", (42,)).fetchone()
asyncio.run(main())
"""
        for name, mode in (
            ("sqlite3 statement: plain sqlite3", "plain"),
            ("sqlite3 statement: integration, its request left out", "left out"),
            ("sqlite3 statement: integration, recorded (no sinks)", "recorded"))
    },
}

# One request through bench_asgi.py's application, driven in-process the way uvicorn does
# (a task per request, created from a loop callback; uvloop), without the server: the
# ratios are to the application's own work, so higher than under uvicorn, where the server
# adds its share to every variant. Events go through the writer thread, which callgrind
# counts too; under valgrind's slowdown its batches are smaller than at full speed.
ASGI_REQUEST = """
import asyncio, os, sys, tempfile
sys.path.insert(0, BENCHMARKS)
import bench_asgi, uvloop
N = int(sys.argv[1])
VARIANT_SETUP
app = bench_asgi.build_app(VARIANT, os.path.join(tempfile.mkdtemp(), "bench.db"))
SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
         "http_version": "1.1", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
         "scheme": "http", "method": "GET", "root_path": "", "path": "/items/42",
         "raw_path": b"/items/42", "query_string": b"", "headers": [(b"host", b"127.0.0.1")]}
async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
async def send(message): pass
async def main():
    loop = asyncio.get_running_loop()
    started = loop.create_future()
    startup = [{"type": "lifespan.startup"}]
    async def lifespan_receive():  # startup, then nothing until cancelled: no shutdown
        return startup.pop() if startup else await loop.create_future()
    async def lifespan_send(message):
        if not started.done(): started.set_result(None)
    lifespan = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive, lifespan_send))
    await started
    def request():
        done = loop.create_future()
        loop.call_soon(lambda: loop.create_task(app({**SCOPE, "state": {}}, receive, send))
                       .add_done_callback(lambda _: done.set_result(None)))
        return done
    for _ in range(200 + N): await request()
    lifespan.cancel()
uvloop.run(main())
"""


def _asgi(variant: str, setup: str = "") -> str:
    return (ASGI_REQUEST.replace("BENCHMARKS", repr(os.path.dirname(os.path.abspath(__file__))))
            .replace("VARIANT_SETUP", setup).replace("VARIANT", repr(variant)))


WORKLOADS["asgi"] = {
    "no middleware": _asgi("baseline"),
    "ascope, 6 events into SQLite (request, endpoint, query)": _asgi("ascope"),
    "ascope, writer's work removed (the loop's side)": _asgi("ascope-discard"),
    "ascope, sample_rate=0 (a request left out)": _asgi("ascope-unsampled"),
    "ascope installed, capture off": _asgi("ascope-off"),
    "OpenTelemetry ASGI middleware (batch processor)": _asgi("otel"),
    "floor (six events appended to a list, no writer; not ascope)": _asgi("floor"),
}
# Sections whose workloads set ascope up themselves (no PRELUDE).
OWN_SETUP = {"asgi"}

COUNTS = {"pair": 10_000, "tasks": 5_000, "writer": 10_000, "sqlite": 10_000, "asgi": 1_000}


def instructions(code: str, n: int, prelude: str = PRELUDE) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(prelude + code)
    out_file = script.name + ".callgrind"
    try:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
             sys.executable, script.name, str(n)],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONHASHSEED": "0"})
        match = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"callgrind failed:\n{done.stderr[-2000:]}")
        return int(match.group(1))
    finally:
        for path in (script.name, out_file):
            if os.path.exists(path):
                os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(WORKLOADS))
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install -y valgrind)")
    for section in (s.strip() for s in options.only.split(",")):
        n = COUNTS[section]
        figures = {}
        prelude = "" if section in OWN_SETUP else PRELUDE
        for name, code in WORKLOADS[section].items():
            figures[name] = (instructions(code, n, prelude)
                             - instructions(code, 0, prelude)) / n
        print(f"\n{section} (instructions per operation, {n:,} operations)")
        for name, count in figures.items():
            # The baseline: the section's first line, or the first with the same "loop:".
            group = name.split(":")[0] + ":" if ":" in name else None
            base_name = next(other for other in figures
                             if group is None or other.startswith(group))
            print(f"  {name:<58} {count:>10,.0f}   {count / figures[base_name]:6.2f}x "
                  f"{base_name}")
    print(f"\nPython {sys.version.split()[0]}, PYTHONHASHSEED=0")


if __name__ == "__main__":
    main()
