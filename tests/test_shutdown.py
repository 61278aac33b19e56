"""Shutdown flush: real programs in a subprocess, counted in the real SQLite store.

Each program enables capture into a SQLite file, emits events and ends one way or another
without calling ``flush()``; after ascope's own exit handling it prints ``ascope.stats()``.
The store must then hold exactly ``written - dropped`` events, and every emitted event
(``expression_value``) unless stats show it dropped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ascope.store import open_store

PRELUDE = """
import asyncio, atexit, json, os, sys, threading

def report():
    import ascope
    stats = ascope.stats()
    print(json.dumps({"written": stats.written, "dropped": stats.dropped}), flush=True)

# Registered before ascope is imported, so it runs after ascope's own exit flush (LIFO).
atexit.register(report)

import ascope
from ascope import runtime as rt

ascope.configure(sinks=["sqlite:" + os.environ["STORE"]])
ascope.enable()

def emit(count, label="e"):
    for value in range(count):
        rt.report_expression_value(None, label, value, 0)
"""


def run_program(tmp_path: Path, body: str, **env: str) -> tuple[dict[str, int], int, str]:
    """Run PRELUDE + body in a fresh interpreter; returns (final stats, emitted events
    stored, stderr), after checking the store holds exactly written - dropped rows."""
    store = tmp_path / "events.db"
    script = tmp_path / "program.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("ASCOPE_")}
    environment.update(env, STORE=str(store), PYTHONWARNINGS="default")
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               env=environment, timeout=100, check=False)
    assert completed.returncode == 0, completed.stderr
    stats: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    with open_store(store) as opened:
        assert opened.count() == stats["written"] - stats["dropped"]
        rows = opened.count("expression_value")
    return stats, rows, completed.stderr


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_100k_events_and_a_normal_return_lose_nothing(tmp_path: Path, loop_kind: str) -> None:
    """100,000 events from a loop, no flush, asyncio.run returns: all of them are stored."""
    stats, rows, stderr = run_program(tmp_path, f"""
        import uvloop
        async def main():
            for _ in range(100):
                emit(1000)
                await asyncio.sleep(0)
        factory = uvloop.new_event_loop if {loop_kind!r} == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    """)
    assert stats["dropped"] == 0
    assert rows == 100_000
    assert "Traceback" not in stderr


def test_events_emitted_just_before_asyncio_run_ends_are_stored(tmp_path: Path) -> None:
    """Events still in the ring when the main coroutine returns are written at the end of
    asyncio.run / interpreter exit."""
    stats, rows, _ = run_program(tmp_path, """
        async def main():
            await asyncio.sleep(0)
            emit(5000)  # no await after this: all of it is still in the ring
        asyncio.run(main())
    """)
    assert stats["dropped"] == 0
    assert rows == 5000


def test_loop_closed_with_the_drainer_pending_loses_nothing(tmp_path: Path) -> None:
    """run_until_complete + loop.close() (no task cancellation): the ring of the closed loop
    is still written."""
    stats, rows, _ = run_program(tmp_path, """
        async def main():
            emit(3000)
            await asyncio.sleep(0)
            emit(3000)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
    """)
    assert stats["dropped"] == 0
    assert rows == 6000


def test_interpreter_exit_writes_thread_events(tmp_path: Path) -> None:
    """Events from plain threads and the main thread (no loop) are written at exit."""
    stats, rows, _ = run_program(tmp_path, """
        threads = [threading.Thread(target=emit, args=(2000, f"t{n}")) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        emit(1000, "main")
    """)
    assert stats["dropped"] == 0
    assert rows == 7000


def test_sys_exit_inside_the_loop_still_flushes(tmp_path: Path) -> None:
    """SystemExit(0) raised from the main coroutine: what was emitted is written."""
    stats, rows, _ = run_program(tmp_path, """
        async def main():
            emit(2000)
            sys.exit(0)
        asyncio.run(main())
    """)
    assert stats["dropped"] == 0
    assert rows == 2000


def test_overflow_is_reported_in_stats_and_the_rest_is_stored(tmp_path: Path) -> None:
    """A ring of 1,000 given 100,000 events without a chance to drain: stats show the
    drops and the store holds exactly the others."""
    stats, rows, _ = run_program(tmp_path, """
        async def main():
            emit(100_000)
        asyncio.run(main())
    """, ASCOPE_RING_SIZE="1000")
    assert stats["dropped"] == 99_000  # the drainer never ran: the ring kept the last 1,000
    assert rows == 1000
