"""Instrumentation overhead (issue 3). Run: .venv/bin/python benchmarks/bench_instrument.py

Prints, from one run with the variants interleaved round by round (medians, ratios to the
plain function measured alongside):

1. call capture: ``@ascope.instrument()`` on a two-argument function, capture off and on,
   against the plain function and against the same function wrapped in OpenTelemetry's
   ``tracer.start_as_current_span`` (SDK, BatchSpanProcessor, an exporter that drops);
2. AST instrumentation: ``@ascope.instrument(ast=True)`` on a small realistic function
   (``order_total`` below: a loop over 5 order lines with a dict lookup each, two ifs,
   assignments, a call: about 1-2 us of plain Python), capture off and on, plus the
   rewritten copy called directly with capture off (the cost of its injected guards
   alone: the decorator does not run it while off).

Targets: an AST-instrumented function with capture off <= 1.3x the plain function.
"Capture on" runs in a scope whose events the writer discards (as
``ascope.runtime.measure_overhead`` does): the figures are the hot path (capturing values,
appending to the ring), not the writer thread.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _common import interleaved, print_table

import ascope
from ascope import _pipeline
from ascope._switch import enter_measure_scope
from ascope.instrument._ast_rewrite import rewrite_function
from ascope.testing import capture

EVENTS_PER_CALL = 0

now = time.perf_counter_ns


def add(a: int, b: int) -> int:
    return a + b


TAX_RATES = {"book": 0.05, "food": 0.1, "tool": 0.2}


def order_total(items: list[dict[str, Any]], discount: float) -> float:
    total = 0.0
    for item in items:
        if item["quantity"] <= 0:
            continue
        price = item["price"] * item["quantity"]
        total += price * (1 + TAX_RATES.get(item["kind"], 0.2))
    if discount:
        total = total * (1 - discount)
    return round(total, 2)


ITEMS = [{"price": 9.5, "quantity": 2, "kind": "book"},
         {"price": 3.25, "quantity": 0, "kind": "food"},
         {"price": 12.0, "quantity": 1, "kind": "tool"},
         {"price": 1.5, "quantity": 6, "kind": "food"},
         {"price": 40.0, "quantity": 1, "kind": "misc"}]


def otel_tracer() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class NoExport(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    # A queue large enough that no span is dropped (a dropped span would cost less).
    provider.add_span_processor(BatchSpanProcessor(NoExport(), max_queue_size=1 << 18,
                                                   max_export_batch_size=4096))
    return provider, provider.get_tracer("bench")


def otel_wrapped(tracer: Any, function: Callable[..., Any]) -> Callable[..., Any]:
    """The decorator-level equivalent of @ascope.instrument() with OpenTelemetry."""
    start = tracer.start_as_current_span
    name = function.__qualname__

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with start(name):
            return function(*args, **kwargs)

    return wrapper


def timed(call: Callable[[], Any], n: int) -> float:
    """ns per call of ``call`` (loop overhead included, identical for every variant)."""
    gc.collect()
    t0 = now()
    for _ in range(n):
        call()
    return (now() - t0) / n


def capture_on(call: Callable[[], Any], n: int) -> float:
    with enter_measure_scope():
        _pipeline.flush_blocking()
        result = timed(call, n)
    _pipeline.flush_blocking()
    return result


async def main() -> None:
    # Inside a running loop, as in a service: events go to the loop's ring (a thread with
    # no loop takes ascope's slower shared-ring path).
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--ast-calls", type=int, default=3_000)
    options = parser.parse_args()
    rounds, n, n_ast = options.rounds, options.calls, options.ast_calls
    ascope.configure(ring_size=1 << 20)
    provider, tracer = otel_tracer()

    traced_add = ascope.instrument()(add)
    otel_add = otel_wrapped(tracer, add)
    calls = {
        "plain add(1, 2)": lambda: timed(lambda: add(1, 2), n),
        "@instrument(), capture off": lambda: timed(lambda: traced_add(1, 2), n),
        "@instrument(), capture on": lambda: capture_on(lambda: traced_add(1, 2), n),
        "OpenTelemetry start_as_current_span": lambda: timed(lambda: otel_add(1, 2), n),
    }

    ast_traced = ascope.instrument(ast=True)(order_total)
    call_traced = ascope.instrument()(order_total)
    rewritten = rewrite_function(order_total)
    assert rewritten is not None
    otel_total = otel_wrapped(tracer, order_total)
    assert ast_traced(ITEMS, 0.1) == order_total(ITEMS, 0.1) == rewritten(ITEMS, 0.1)
    ast = {
        "plain order_total()": lambda: timed(lambda: order_total(ITEMS, 0.1), n_ast),
        "@instrument(ast=True), capture off": lambda: timed(
            lambda: ast_traced(ITEMS, 0.1), n_ast),
        "rewritten body alone, capture off": lambda: timed(
            lambda: rewritten(ITEMS, 0.1), n_ast),
        "@instrument(), capture on": lambda: capture_on(lambda: call_traced(ITEMS, 0.1), n_ast),
        "@instrument(ast=True), capture on": lambda: capture_on(
            lambda: ast_traced(ITEMS, 0.1), n_ast),
        "OpenTelemetry start_as_current_span": lambda: timed(
            lambda: otel_total(ITEMS, 0.1), n_ast),
    }

    global EVENTS_PER_CALL
    with capture() as captured:
        ast_traced(ITEMS, 0.1)
    EVENTS_PER_CALL = sum(e.kind not in ("function_entry", "function_exit", "ast_node_map")
                          for e in captured.events)
    started = time.monotonic()
    call_figures = interleaved(calls, rounds)
    ast_figures = interleaved(ast, rounds)
    provider.shutdown()
    print(f"Python {sys.version.split()[0]}, {rounds} interleaved rounds, medians "
          f"({time.monotonic() - started:.1f} s)")
    print_table(f"1. Call capture ({n:,} calls per round)", call_figures,
                "plain add(1, 2)", "ns/call")
    print_table(f"2. AST instrumentation of order_total ({n_ast:,} calls per round)",
                ast_figures, "plain order_total()", "ns/call")
    off = ast_figures["@instrument(ast=True), capture off"] / ast_figures[
        "plain order_total()"]
    on = ast_figures["@instrument(ast=True), capture on"] - ast_figures["plain order_total()"]
    events = EVENTS_PER_CALL
    print(f"\nAST-instrumented, capture off: {off:.2f}x plain (target <= 1.3x): "
          f"{'OK' if off <= 1.3 else 'MISSED'}")
    print(f"AST-instrumented, capture on: +{on / 1000:.1f} us per call, about "
          f"{on / events:.0f} ns per reported event ({events} events per call)")


if __name__ == "__main__":
    asyncio.run(main())
