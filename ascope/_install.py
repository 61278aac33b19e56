"""``ascope.install(app)``. PLACEHOLDER: being written (issue 4)."""

from __future__ import annotations

from typing import Any


def install(app: Any, **options: Any) -> Any:
    raise NotImplementedError("ascope.install is being written (issue 4)")
