"""Node ids and the node map of one rewritten function (see docs/ast.md).

An id is ``module:qualname:line:node_type`` where ``line`` is relative to the ``def``
line of the function the node sits in (0 = the ``def`` line), with ``.column`` appended
only when another node of the same type in the same function starts on the same line.
Ids are decided after the whole function has been rewritten (the column rule needs to
see every node of a line), so the rewriter first puts a placeholder constant wherever an
id goes and ``NodeTable.finish`` fills the real ids in.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NodeTable", "node_type_of"]

# Node types named differently from their ast class (lowercased) where the class name
# would read oddly in an id.
_TYPE_NAMES = {"ExceptHandler": "except", "match_case": "case"}

_SOURCE_LIMIT = 300


def node_type_of(node: ast.AST) -> str:
    name = type(node).__name__
    return _TYPE_NAMES.get(name) or name.lower()


@dataclass(slots=True)
class _Entry:
    qualname: str
    def_line: int
    node_type: str
    position: ast.AST  # the node whose location/source stands for this one
    header_only: bool  # compound statement: keep the first line of its source
    constants: list[ast.Constant] = field(default_factory=list)
    node_id: str = ""


class NodeTable:
    """Collects the nodes injected code reports about; assigns their ids at the end."""

    def __init__(self, module: str, filename: str, source: str) -> None:
        self.module = module
        self.filename = filename
        self.source = source
        self._lines = source.splitlines(keepends=True)
        self._entries: dict[tuple[int, str], _Entry] = {}

    def ref(self, node: ast.AST, qualname: str, def_line: int, *,
            node_type: str | None = None, position: ast.AST | None = None) -> ast.Constant:
        """A constant that will hold ``node``'s id (one id per node and type)."""
        kind = node_type or node_type_of(node)
        key = (id(node), kind)
        entry = self._entries.get(key)
        if entry is None:
            header = isinstance(node, (ast.stmt, ast.excepthandler, ast.match_case)) and bool(
                getattr(node, "body", None))
            entry = _Entry(qualname, def_line, kind, position or node, header)
            self._entries[key] = entry
        constant = ast.Constant(value=f"\x00ascope-node-{len(self._entries)}")
        entry.constants.append(constant)
        return constant

    def source_of(self, node: ast.AST) -> str:
        """The source text of ``node`` (cut to a readable length)."""
        text = self._segment(node)
        if text is None:
            try:
                text = ast.unparse(node)
            except Exception:
                text = ""
        return text if len(text) <= _SOURCE_LIMIT else text[:_SOURCE_LIMIT] + "..."

    def source_line(self, lineno: int) -> str:
        return self._lines[lineno - 1] if 0 < lineno <= len(self._lines) else ""

    def _segment(self, node: ast.AST) -> str | None:
        # ast.get_source_segment splits the whole file on every call; the lines are kept.
        where = [getattr(node, name, None)
                 for name in ("lineno", "end_lineno", "col_offset", "end_col_offset")]
        if not all(type(number) is int for number in where):
            return None
        first, last, start, stop = (int(number) for number in where)  # type: ignore[arg-type]
        first, last = first - 1, last - 1
        if not 0 <= first <= last < len(self._lines):
            return None
        if first == last:
            return self._lines[first].encode()[start:stop].decode(errors="replace")
        parts = [self._lines[first].encode()[start:].decode(errors="replace")]
        parts.extend(self._lines[first + 1:last])
        parts.append(self._lines[last].encode()[:stop].decode(errors="replace"))
        return "".join(parts)

    def finish(self) -> list[dict[str, Any]]:
        """Fill the real ids into every placeholder; return the node map rows."""
        groups: dict[tuple[str, int, str], list[_Entry]] = defaultdict(list)
        for entry in self._entries.values():
            line = getattr(entry.position, "lineno", entry.def_line) - entry.def_line
            groups[(entry.qualname, max(line, 0), entry.node_type)].append(entry)
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for (qualname, line, node_type), entries in groups.items():
            for entry in entries:
                where = str(line)
                if len(entries) > 1:
                    where += f".{getattr(entry.position, 'col_offset', 0)}"
                entry.node_id = f"{self.module}:{qualname}:{where}:{node_type}"
                for constant in entry.constants:
                    constant.value = entry.node_id
                if entry.node_id not in seen:  # two nodes at one spot share an id and row
                    seen.add(entry.node_id)
                    rows.append(self._row(entry))
        rows.sort(key=lambda row: (row["line"], row["column"], row["id"]))
        return rows

    def _row(self, entry: _Entry) -> dict[str, Any]:
        position = entry.position
        text = self.source_of(position)
        if entry.header_only:
            text = text.split("\n", 1)[0]
        return {
            "id": entry.node_id,
            "file": self.filename,
            "line": getattr(position, "lineno", None),
            "column": getattr(position, "col_offset", None),
            "end_line": getattr(position, "end_lineno", None),
            "end_column": getattr(position, "end_col_offset", None),
            "node_type": entry.node_type,
            "source": text,
        }
