from __future__ import annotations

import ascope

from . import register
from .services import billing

CALLED_AT_IMPORT = []


def render(name: str) -> str:
    return f"<h1>{name}</h1>"


@register
async def checkout(amount: int) -> dict[str, int]:
    total = await billing.charge(amount)
    return {"total": total}


def with_helper(x: int) -> int:
    def helper(y: int) -> int:  # nested: not instrumented by the hook
        return y + 1

    return helper(x)


@ascope.instrument(name="views.explicit")
def explicit(x: int) -> int:  # the explicit decorator wins over the hook's
    return x


CALLED_AT_IMPORT.append(render("import"))
