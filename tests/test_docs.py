"""The documentation's complete examples run as written.

Every ```python block in README.md and docs/*.md that is a whole program (it calls
``asyncio.run``) runs in a fresh interpreter in an empty directory and must exit 0.
Fragments (snippets that need an app around them) are left to the pages' own tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def programs() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, block in enumerate(BLOCK.findall(page.read_text()), 1):
            if "asyncio.run(" in block:
                found.append((f"{page.relative_to(ROOT)}#{number}", block))
    return found


def test_the_docs_have_runnable_examples() -> None:
    """README, quickstart and context each show at least one whole program."""
    names = {name.split("#")[0] for name, _ in programs()}
    assert {"README.md", "docs/quickstart.md", "docs/context.md"} <= names


@pytest.mark.parametrize(("name", "code"), programs(), ids=[name for name, _ in programs()])
def test_example_runs(name: str, code: str, tmp_path: Path) -> None:
    """The example exits 0 (its own asserts hold) in a fresh interpreter."""
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
