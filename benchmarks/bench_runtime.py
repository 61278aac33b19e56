"""Runtime core benchmarks (issue 2). Run: .venv/bin/python benchmarks/bench_runtime.py

Every figure is a median over interleaved rounds measured in this one run, printed with
its ratio to a baseline measured alongside it (the machine is shared and noisy: absolute
numbers swing, ratios hold). Targets:

- report_function_entry + report_function_exit, capture on: <= 1 us per pair, and >= 20x
  cheaper than an OpenTelemetry SDK span start/end with a batch processor;
- capture off: a report call <= 1.5x an empty Python function with the same arguments;
- task factory: create + run + finish of a trivial task <= 1.6x the default factory;
- >= 1,000,000 events/s appended to the ring from one task, >= 200,000 events/s sustained
  end to end into SQLite, memory flat under overload.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import interleaved, print_table, ratio_per_round

import ascope
from ascope import _pipeline, runtime

now = time.perf_counter_ns


def empty(module: object, function: object, args: object) -> None:
    return None


def per_call(body: object, n: int) -> float:
    gc.collect()
    t0 = now()
    body(n)  # type: ignore[operator]
    return (now() - t0) / n


async def bench_calls(rounds: int, n: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoExport(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoExport()))
    tracer = provider.get_tracer("bench")

    entry = runtime.report_function_entry
    exit_ = runtime.report_function_exit
    pure_entry = runtime.PURE_PYTHON["report_function_entry"]
    pure_exit = runtime.PURE_PYTHON["report_function_exit"]
    args = (1, 2)

    def pairs(count: int) -> None:
        for _ in range(count):
            exit_(entry("bench", "f", args), None)

    def pure_pairs(count: int) -> None:
        for _ in range(count):
            pure_exit(pure_entry("bench", "f", args), None)

    def otel(count: int) -> None:
        for _ in range(count):
            with tracer.start_as_current_span("f"):
                pass

    def empties(count: int) -> None:
        for _ in range(count):
            empty("bench", "f", args)

    def entries_off(count: int) -> None:
        for _ in range(count):
            entry("bench", "f", args)

    def on(measure: object) -> float:
        # Hot path only: the ring is emptied and the writer idle before timing.
        _pipeline.flush_blocking()
        return per_call(measure, n)

    def on_with_writer(measure: object) -> float:
        # End to end: the writer thread writes the previous chunk into SQLite meanwhile.
        _pipeline.hand_off_current()
        return per_call(measure, n)

    def off(measure: object) -> float:
        ascope.disable()
        try:
            return per_call(measure, n)
        finally:
            ascope.enable()

    def task_disabled(measure: object) -> float:
        with ascope.disabled():
            return per_call(measure, n)

    rounds_out: dict[str, list[float]] = {}
    figures = interleaved({
        "empty function f(module, function, args)": lambda: per_call(empties, n),
        "capture off: report_function_entry": lambda: off(entries_off),
        "disabled() for the task: report_function_entry": lambda: task_disabled(entries_off),
        "capture on: entry + exit pair (hot path)": lambda: on(pairs),
        "capture on: the same pair, pure Python": lambda: on(pure_pairs),
        "capture on: pair incl. writer into SQLite": lambda: on_with_writer(pairs),
        "OpenTelemetry span start/end (batch)": lambda: per_call(otel, n),
    }, rounds, rounds_out)
    provider.shutdown()
    print_table("Report calls (ns per call)", figures, "empty function f(module, function, args)",
                "ns")
    pair = figures["capture on: entry + exit pair (hot path)"]
    otel_ratio, otel_ratios = ratio_per_round(rounds_out, "OpenTelemetry span start/end (batch)",
                                              "capture on: entry + exit pair (hot path)")
    off_ratio, _ = ratio_per_round(rounds_out, "capture off: report_function_entry",
                                   "empty function f(module, function, args)")
    print(f"  -> pair {pair:,.0f} ns (target <= 1,000); OpenTelemetry / ascope = "
          f"{otel_ratio:.1f}x (target >= 20); off / empty = {off_ratio:.2f}x (target <= 1.5)")
    if runtime.COMPILED:
        pure_ratio, _ = ratio_per_round(rounds_out, "capture on: the same pair, pure Python",
                                        "capture on: entry + exit pair (hot path)")
        print(f"     compiled hot path (ascope._speedups): the pure-Python pair costs "
              f"{pure_ratio:.2f}x the compiled one")
    else:
        print("     ascope._speedups is not in use (not built, or ASCOPE_NO_EXTENSIONS set): "
              "both pair rows are pure Python")
    print("     (ratios: medians of per-round ratios; OpenTelemetry / ascope by round: "
          + " ".join(f"{r:.1f}" for r in otel_ratios) + ")")


def bench_tasks(rounds: int, n: int, use_uvloop: bool, store: str) -> None:
    async def trivial() -> None:
        return None

    async def spawn_all(count: int) -> float:
        loop = asyncio.get_running_loop()
        t0 = now()
        for _ in range(count):
            await loop.create_task(trivial())
        return (now() - t0) / count

    def run(with_ascope: bool, sinks: list[str]) -> float:
        # Every variant starts with the writer idle (no backlog from the one before).
        ascope.configure(sinks=sinks)
        _pipeline.flush_blocking()

        async def main() -> float:
            if with_ascope:
                ascope.install_task_factory()
            else:
                # ascope.enable() has the policy's new loops get ascope's factory (so that
                # asyncio.run's first tasks are tracked): take it off for the baseline.
                asyncio.get_running_loop().set_task_factory(None)
            return await spawn_all(n)

        try:
            if use_uvloop:
                import uvloop
                return uvloop.run(main())
            return asyncio.run(main())
        finally:
            _pipeline.flush_blocking()

    rounds_out: dict[str, list[float]] = {}
    default, hot = "default task factory", "ascope factory, hot path (events drained)"
    figures = interleaved({
        default: lambda: run(False, []),
        hot: lambda: run(True, []),
        "ascope factory incl. writer into SQLite": lambda: run(True, [f"sqlite:{store}"]),
    }, rounds, rounds_out)
    print_table(f"Task create + run + finish, {'uvloop' if use_uvloop else 'asyncio'} "
                "(ns per task)", figures, default, "ns")
    ratio, ratios = ratio_per_round(rounds_out, hot, default)
    print(f"  -> hot path / default = {ratio:.2f}x (target <= 1.6), by round: "
          + " ".join(f"{r:.2f}" for r in ratios))
    ascope.configure(sinks=[f"sqlite:{store}"])


async def bench_throughput(seconds: float, store: str, bursts: int = 20) -> None:
    emit = runtime.report_line_execution

    # 1. Appending to the ring from one task, no awaits: pure hot-path rate.
    ascope.configure(ring_size=1 << 20)
    await ascope.flush()
    count = 200_000
    t0 = now()
    for line in range(count):
        emit(None, line)
    ring_rate = count / ((now() - t0) / 1e9)
    await ascope.flush()

    # 2. Sustained end to end into SQLite: offer a fixed rate (paced in 5 ms slices, the
    # loop yielding between them so the drainer runs) and count what reached the store.
    ascope.configure(ring_size=65_536)
    print("\nThroughput (report_line_execution from one task)")
    print(f"  appended to the ring:            {ring_rate:>12,.0f} events/s (target >= 1,000,000)")
    for rate in (100_000, 200_000, 300_000, 400_000):
        stored, dropped, elapsed = await offered_load(emit, rate, seconds, store)
        print(f"  offered {rate:>7,}/s into SQLite:  stored {stored / elapsed:>9,.0f}/s, "
              f"dropped {dropped:,} of {stored + dropped:,}")
    print("  (target: >= 200,000 events/s sustained, i.e. none dropped at that rate)")

    # 3. Overload: bursts far larger than the ring, faster than any sink; the resident
    # memory must stay flat (the ring and the writer backlog are bounded; drops counted).
    samples = []
    dropped_before = ascope.stats().dropped
    for _ in range(bursts):
        for line in range(200_000):
            emit(None, line)
        await asyncio.sleep(0)
        samples.append(resident_mib())
    await ascope.flush()
    # Resident memory moves with the allocator's arenas: flat means the later bursts stay
    # within the range of the first half, not that every sample is equal.
    half = len(samples) // 2
    growth = max(samples[half:]) - max(samples[:half])
    print(f"  overload, {bursts} bursts of 200,000 events: resident memory {min(samples):,.1f}-"
          f"{max(samples):,.1f} MiB, the second half's peak minus the first half's: "
          f"{growth:+,.1f} MiB; dropped {ascope.stats().dropped - dropped_before:,} (counted)")


async def offered_load(emit: object, rate: int, seconds: float, store: str
                       ) -> tuple[int, int, float]:
    """Emit ``rate`` events/s for ``seconds``; return (stored, dropped, elapsed)."""
    with ascope.store.open_store(store) as opened:
        rows_before = opened.count()
    before = ascope.stats()
    per_slice = rate // 200  # 5 ms slices
    t0 = now()
    for slice_index in range(int(seconds * 200)):
        for line in range(per_slice):
            emit(None, line)  # type: ignore[operator]
        wait = t0 + (slice_index + 1) * 5_000_000 - now()
        await asyncio.sleep(max(wait, 0) / 1e9)
    await ascope.flush()
    elapsed = (now() - t0) / 1e9
    with ascope.store.open_store(store) as opened:
        stored = opened.count() - rows_before
    return stored, ascope.stats().dropped - before.dropped, elapsed


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--bursts", type=int, default=20,
                        help="overload bursts of 200,000 events (memory must stay flat)")
    parser.add_argument("--only", default="calls,throughput,tasks",
                        help="comma-separated sections to run (default: all three)")
    options = parser.parse_args()
    only = {section.strip() for section in options.only.split(",")}
    from ascope import store as _store  # noqa: F401 - used via ascope.store

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.db")
        ascope.configure(sinks=[f"sqlite:{path}"])

        async def calls_and_throughput() -> None:
            ascope.enable()
            if "calls" in only:
                await bench_calls(options.rounds, options.calls)
            if "throughput" in only:
                await bench_throughput(options.seconds, path, options.bursts)

        asyncio.run(calls_and_throughput())
        ascope.enable()
        if "tasks" in only:
            bench_tasks(options.rounds, options.tasks, use_uvloop=False, store=path)
            bench_tasks(options.rounds, options.tasks, use_uvloop=True, store=path)
        ascope.disable()
        ascope.shutdown()
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
