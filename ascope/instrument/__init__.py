"""Call capture and AST instrumentation (see docs/instrument.md).

PLACEHOLDER: being written (issue 3). `instrument` and `instrument_packages` are the
public names this package must export.
"""

from __future__ import annotations

from typing import Any

__all__ = ["instrument", "instrument_packages"]


def instrument(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("ascope.instrument is being written (issue 3)")


def instrument_packages(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("ascope.instrument_packages is being written (issue 3)")
