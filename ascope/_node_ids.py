"""AST node ids: ``module:qualname:line:node_type``."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ._exceptions import InvalidNodeId


class NodeId(NamedTuple):
    """A parsed ``module:qualname:line:node_type`` node id."""

    module: str
    qualname: str
    line: int  # relative to the function's first line (0 = the def line)
    column: int | None  # present when two nodes of one type share a line
    node_type: str


_DOTTED = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*\Z")
_QUALNAME = re.compile(r"(?:[^\W\d]\w*|<[a-z]+>)(?:\.(?:[^\W\d]\w*|<[a-z]+>))*\Z")
_LINE = re.compile(r"(\d+)(?:\.(\d+))?\Z")
_NODE_TYPE = re.compile(r"[a-z][a-z0-9_]*\Z")


def validate_ast_node_id(node_id: Any) -> NodeId:
    """Parse a node id in the canonical ``module:qualname:line:node_type`` form.

    ``line`` is relative to the function's first line, with ``.column`` appended where two
    nodes of one type share a line: ``app.views:Handler.get:3:if``,
    ``app.views:Handler.get:5.17:ifexp``. Raises ``InvalidNodeId`` with the reason.
    """
    if not isinstance(node_id, str):
        raise InvalidNodeId(node_id, f"expected a str, got {type(node_id).__name__}")
    parts = node_id.split(":")
    if len(parts) != 4:
        raise InvalidNodeId(node_id, f"expected 4 ':'-separated parts "
                            f"(module:qualname:line:node_type), got {len(parts)}")
    module, qualname, line, node_type = parts
    if not _DOTTED.match(module):
        raise InvalidNodeId(node_id, f"module {module!r} is not a dotted Python name")
    if not _QUALNAME.match(qualname):
        raise InvalidNodeId(node_id, f"qualname {qualname!r} is not a dotted name "
                            "(parts may be <locals>, <lambda>...)")
    numbers = _LINE.match(line)
    if numbers is None:
        raise InvalidNodeId(node_id, f"line {line!r} is not LINE or LINE.COLUMN with "
                            "non-negative integers")
    if not _NODE_TYPE.match(node_type):
        raise InvalidNodeId(node_id, f"node type {node_type!r} is not a lowercase name "
                            "such as 'if' or 'for'")
    column = numbers.group(2)
    return NodeId(module, qualname, int(numbers.group(1)),
                  None if column is None else int(column), node_type)
