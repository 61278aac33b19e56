"""A module compiled with ``from __future__ import annotations``."""

from __future__ import annotations


def annotated(x: int) -> dict[str, object]:
    def inner(y: UndefinedName) -> AlsoUndefined:  # noqa: F821
        return y

    value: int = x + 1
    return {"value": value, "inner": inner.__annotations__}
