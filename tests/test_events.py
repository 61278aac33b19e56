"""docs/events.md documents every event kind of ``ascope._events.SCHEMA`` with its keys.

The page gives each kind a ``### `kind` `` heading followed by a table whose first column
lists the data keys in order (a line ``- `kind`: key, key`` is accepted too).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ascope import _events

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"

_HEADING = re.compile(r"^#{2,4}\s+`([a-z_][a-z0-9_]*)`\s*$")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")
_LINE = re.compile(r"^[-*]\s+`([a-z_][a-z0-9_]*)`\s*:\s*(`?\w+`?(?:\s*,\s*`?\w+`?)*)\s*$")

# Kinds ascope itself makes outside SCHEMA (documented, with ready-made data).
# Kinds recorded through runtime.report_event (a dict payload, no SCHEMA entry).
OWN_KINDS = {"ascope_error", "ast_node_map"}


def documented_kinds(text: str) -> dict[str, list[str]]:
    """kind -> data keys, in the order the page lists them."""
    kinds: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = heading.group(1)
            kinds[current] = []
            continue
        if line.startswith("#"):
            current = None
            continue
        row = _ROW.match(line)
        if row and current is not None:
            kinds[current].append(row.group(1))
            continue
        inline = _LINE.match(line.strip())
        if inline and current is None:
            keys = [key.strip(" `") for key in inline.group(2).split(",")]
            kinds[inline.group(1)] = [key for key in keys if key]
    return kinds


@pytest.fixture(scope="module")
def documented() -> dict[str, list[str]]:
    if not DOC.exists():
        pytest.skip("docs/events.md is not written yet")
    return documented_kinds(DOC.read_text(encoding="utf-8"))


def test_parser_reads_both_forms() -> None:
    """The parser understands a heading + table and the one-line form (self-check)."""
    text = "### `a_kind`\n| key | meaning |\n|---|---|\n| `x` | X |\n| `y` | Y |\n\n" \
           "## Other\n- `b_kind`: p, q\n"
    assert documented_kinds(text) == {"a_kind": ["x", "y"], "b_kind": ["p", "q"]}


def test_every_schema_kind_is_documented(documented: dict[str, list[str]]) -> None:
    """Each kind in SCHEMA has a section in docs/events.md."""
    missing = sorted(set(_events.SCHEMA) - set(documented))
    assert missing == []


def test_documented_kinds_exist(documented: dict[str, list[str]]) -> None:
    """The page documents no kind that SCHEMA does not have (besides ascope's own)."""
    assert sorted(set(documented) - set(_events.SCHEMA) - OWN_KINDS) == []


@pytest.mark.parametrize("kind", sorted(_events.SCHEMA))
def test_documented_keys_match_the_schema(documented: dict[str, list[str]], kind: str
                                          ) -> None:
    """The keys the page lists for a kind are SCHEMA's keys, in SCHEMA's order."""
    if kind not in documented:
        pytest.fail(f"{kind} is not documented")
    assert documented[kind] == list(_events.SCHEMA[kind])
