"""Replacing a library's methods so that it can be put back exactly.

``Patches.wrap(cls, name, make)`` puts ``make(original)`` in place of ``cls.name`` and
remembers the original; ``restore()`` puts every original back. If someone wrapped the
method again on top of ours in the meantime (another instrumentation library), taking
ours out would drop theirs too, so ours stays in place, switched off: every wrapper
checks ``patches.active`` first and then only calls through. Each install makes a new
``Patches``, so a wrapper left behind never wakes up again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Patches"]

ORIGINAL = "__ascope_original__"
_MISSING = object()


class Patches:
    """The methods one integration replaced, and the switch its wrappers read."""

    def __init__(self) -> None:
        self.active = False
        self._replaced: list[tuple[Any, str, Any, Any]] = []  # owner, name, own, wrapper

    def wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` (looked up on ``owner`` itself) by ``make(original)``."""
        own = vars(owner).get(name, _MISSING)
        original = getattr(owner, name) if own is _MISSING else own
        wrapper = make(original)
        setattr(wrapper, ORIGINAL, original)
        setattr(owner, name, wrapper)
        self._replaced.append((owner, name, own, wrapper))

    def restore(self) -> None:
        self.active = False
        for owner, name, own, wrapper in reversed(self._replaced):
            if vars(owner).get(name) is wrapper:
                if own is _MISSING:  # it was inherited: uncover the inherited one again
                    delattr(owner, name)
                else:
                    setattr(owner, name, own)
            # else: wrapped again on top of ours; ours stays, inactive (see module docstring)
        self._replaced.clear()
