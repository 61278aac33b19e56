"""A forked child (gunicorn-style pre-fork workers) captures on its own: its own writer
thread, its own ids and node, its own connection to a shared store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

PROGRAM = textwrap.dedent("""
    import os, sys
    import ascope
    from ascope import runtime as rt
    from ascope.testing import capture

    ascope.configure(sinks=[f"sqlite:{sys.argv[1]}"])
    ascope.enable()
    rt.report_function_exit(rt.report_function_entry("app", "before_fork"))
    ascope._pipeline.flush_blocking()
    pid = os.fork()
    if pid == 0:
        with capture() as captured:
            rt.report_function_exit(rt.report_function_entry("app", "in_child"))
        rt.report_function_exit(rt.report_function_entry("app", "child_global"))
        ascope.shutdown()
        os._exit(0 if [e.kind for e in captured.events] == ["function_entry",
                                                              "function_exit"] else 3)
    rt.report_function_exit(rt.report_function_entry("app", "in_parent"))
    _, status = os.waitpid(pid, 0)
    ascope.shutdown()
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def test_forked_child_captures_and_writes_the_shared_store(tmp_path: Path) -> None:
    """The child's capture() gets its events; parent and child write one store, each
    under its own pid, with no event written twice."""
    store_path = tmp_path / "shared.db"
    script = tmp_path / "forking.py"
    script.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(script), str(store_path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    from ascope.store import open_store

    with open_store(store_path) as store:
        entries = store.events(kind="function_entry")
    functions = sorted(e.data["function"] for e in entries)
    assert functions == ["before_fork", "child_global", "in_child", "in_parent"]
    by_function = {e.data["function"]: e for e in entries}
    assert by_function["child_global"].node.pid != by_function["in_parent"].node.pid
    assert by_function["before_fork"].node.pid == by_function["in_parent"].node.pid
    ids = [e.correlation_id for e in entries]
    assert len(set(ids)) == len(ids)
