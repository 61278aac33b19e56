"""Exceptions raised by ascope.

ascope raises only at configuration time or when asked to validate something; the report
API and everything behind the ring never raise into user code.

    AscopeError
    ├── ConfigurationError   bad settings given to configure() or ASCOPE_* variables
    └── InvalidNodeId        (also a ValueError) a node id not shaped
                             module:qualname:line:node_type
"""

from __future__ import annotations

__all__ = ["AscopeError", "ConfigurationError", "InvalidNodeId"]


class AscopeError(Exception):
    """Base class of every error ascope raises."""


class ConfigurationError(AscopeError):
    """A setting given to ``ascope.configure`` (or through ``ASCOPE_*``) is not usable."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"ascope: bad setting {setting!r}: {problem}")


class InvalidNodeId(AscopeError, ValueError):
    """A node id does not have the canonical ``module:qualname:line:node_type`` shape."""

    def __init__(self, node_id: object, reason: str) -> None:
        self.node_id = node_id
        self.reason = reason
        super().__init__(f"invalid AST node id {node_id!r}: {reason}")
