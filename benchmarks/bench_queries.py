"""What the database integrations cost per statement.

    .venv/bin/python benchmarks/bench_queries.py

sqlite3 in memory (`SELECT ?`), and asyncpg on 127.0.0.1 when a server answers at
ASCOPE_TEST_PG_DSN (default postgresql://postgres:postgres@127.0.0.1:5432/postgres):
integration off, integration on with capture off, and capture on (into the SQLite store in
a temporary directory). Interleaved rounds, medians, ratios to "off" measured in this run.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import ascope.integrations
from _common import interleaved, print_table

import ascope

now = time.perf_counter_ns


def sqlite_statements(count: int) -> float:
    connection = sqlite3.connect(":memory:")  # opened per round: enable() wraps connect
    t0 = now()
    for n in range(count):
        connection.execute("SELECT ?", (n,)).fetchall()
    elapsed = (now() - t0) / count
    connection.close()
    return elapsed


def variant(integration: bool, capture: bool, measure: object) -> float:
    if integration:
        ascope.integrations.enable("sqlite" if measure is sqlite_statements else "asyncpg")
    else:
        ascope.integrations.disable()
    if capture:
        ascope.enable()
    else:
        ascope.disable()
    try:
        return measure(2_000)  # type: ignore[operator]
    finally:
        ascope.disable()
        ascope.integrations.disable()
        ascope._pipeline.flush_blocking()


def asyncpg_figures(rounds: int) -> dict[str, float] | None:
    try:
        import asyncpg
    except ImportError:
        return None
    dsn = os.environ.get("ASCOPE_TEST_PG_DSN",
                         "postgresql://postgres:postgres@127.0.0.1:5432/postgres")

    def statements(count: int) -> float:
        async def run() -> float:
            connection = await asyncpg.connect(dsn)
            t0 = now()
            for n in range(count // 4):
                await connection.fetchval("SELECT $1::int", n)
            elapsed = (now() - t0) / (count // 4)
            await connection.close()
            return elapsed
        return asyncio.run(run())

    try:
        statements(4)
    except Exception as error:  # no server: say so, measure the rest
        print(f"\nasyncpg: no server at {dsn} ({type(error).__name__}); skipped")
        return None
    return interleaved({
        "integration off": lambda: variant(False, False, statements),
        "integration on, capture off": lambda: variant(True, False, statements),
        "integration on, capture on": lambda: variant(True, True, statements),
    }, rounds)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        ascope.configure(sinks=[f"sqlite:{os.path.join(directory, 'bench.db')}"])
        figures = interleaved({
            "integration off": lambda: variant(False, False, sqlite_statements),
            "integration on, capture off": lambda: variant(True, False, sqlite_statements),
            "integration on, capture on": lambda: variant(True, True, sqlite_statements),
        }, 7)
        print_table("sqlite3 :memory: SELECT ? (ns per statement)", figures,
                    "integration off", "ns")
        pg = asyncpg_figures(5)
        if pg is not None:
            print_table("asyncpg fetchval on 127.0.0.1 (ns per statement)", pg,
                        "integration off", "ns")
        ascope.shutdown()


if __name__ == "__main__":
    main()
