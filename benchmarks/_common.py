"""Shared helpers for the benchmarks: interleaved repeats, medians, ratio printing."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def interleaved(variants: dict[str, Callable[[], float]], rounds: int,
                rounds_out: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Run each variant once per round, in rotating order; return the median per variant.

    Each variant returns its own measurement (e.g. ns per operation). Rotating the order
    every round spreads the shared machine's noise evenly over the variants. Pass
    ``rounds_out`` to get every round's measurements too (for per-round ratios).
    """
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(variants[name]())
    if rounds_out is not None:
        rounds_out.update(results)
    return {name: statistics.median(values) for name, values in results.items()}


def ratio_per_round(rounds: dict[str, list[float]], numerator: str, denominator: str
                    ) -> tuple[float, list[float]]:
    """The median of ``numerator / denominator`` taken round by round (each ratio from two
    measurements made moments apart), and the ratios themselves."""
    ratios = [a / b for a, b in zip(rounds[numerator], rounds[denominator], strict=True)]
    return statistics.median(ratios), ratios


def print_table(title: str, figures: dict[str, float], baseline: str, unit: str) -> None:
    base = figures[baseline]
    print(f"\n{title}")
    for name, value in figures.items():
        print(f"  {name:<44} {value:>12,.1f} {unit}   {value / base:6.2f}x {baseline}")
