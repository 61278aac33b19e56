"""A sink that never returns must not hold the program: a plain thread waits for a stuck
writer once (up to a second), not once per batch, and the end of asyncio.run does not
wait for it again once it is known stuck."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import asyncio, threading
    import ascope
    from ascope import runtime as rt

    release = threading.Event()

    class StuckSink:
        def write(self, events):
            release.wait(600)
        def close(self):
            pass

    ascope.configure(sinks=[StuckSink()], ring_size=100)
    ascope.enable()
    for n in range(3000):          # a plain thread: 30 rings' worth past a stuck writer
        rt.report_line_execution(None, n)

    async def main():
        for n in range(3000):
            rt.report_line_execution(None, n)
            if n % 100 == 0:
                await asyncio.sleep(0)

    asyncio.run(main())
    stats = ascope.stats()
    assert stats.dropped > 0, stats
    release.set()
    print("done")
""")


def test_a_stuck_sink_costs_a_thread_one_wait_not_one_per_batch(tmp_path: Path) -> None:
    """3,000 events past a stuck sink finish (the bug made each of ~30 hand-offs wait a
    second, then the end of the loop waited 10 s more); drops are counted."""
    script = tmp_path / "stuck.py"
    script.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=25, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
