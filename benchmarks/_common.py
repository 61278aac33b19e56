"""Shared helpers for the benchmarks: interleaved repeats, medians, ratio printing."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run each variant once per round, in rotating order; return the median per variant.

    Each variant returns its own measurement (e.g. ns per operation). Rotating the order
    every round spreads the shared machine's noise evenly over the variants.
    """
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(variants[name]())
    return {name: statistics.median(values) for name, values in results.items()}


def print_table(title: str, figures: dict[str, float], baseline: str, unit: str) -> None:
    base = figures[baseline]
    print(f"\n{title}")
    for name, value in figures.items():
        print(f"  {name:<44} {value:>12,.1f} {unit}   {value / base:6.2f}x {baseline}")
