"""Test set-up for the runtime core: fresh global state per test, loop kinds, hypothesis.

Every test starts with capture off, no sinks, default ring and value settings, no open
``testing.capture()`` blocks and the main thread's context at its root frame, and leaves
it that way, so no test depends on the order the suite runs in.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from helpers_core import LOOP_FACTORIES, run_on
from hypothesis import HealthCheck, settings

import ascope
from ascope import _config, _pipeline, _values
from ascope import _context as _c
from ascope._pipeline import PipelineSettings
from ascope._values import ValueLimits

# CI machines are slow and shared: no per-example deadline, fewer examples by default.
settings.register_profile("ci", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def reset_ascope() -> None:
    """Put every piece of ascope's process-wide state back to its defaults."""
    ascope.disable()
    # Captures left open by a failing test: forget them.
    _pipeline.WRITER.captures = {}
    _c.STATE.scoped_captures = 0
    _c.STATE.recompute()
    # Settings straight from their dataclass defaults, so fields added later reset too
    # (and those configure() cannot set back, such as max_backlog=None).
    defaults = PipelineSettings()
    changed = False
    for setting in dataclasses.fields(PipelineSettings):
        if getattr(_pipeline.SETTINGS, setting.name) != getattr(defaults, setting.name):
            setattr(_pipeline.SETTINGS, setting.name, getattr(defaults, setting.name))
            changed = True
    if changed:
        _pipeline.resize_rings()
    if _values.SETTINGS.limits != ValueLimits():
        _values.set_limits(ValueLimits())
    ascope.configure(sinks=[], sample_rate=1.0)
    _pipeline.flush_blocking()
    _c.current.set(_c.ROOT)


@pytest.fixture(autouse=True)
def _fresh_ascope() -> Iterator[None]:
    reset_ascope()
    yield
    reset_ascope()
    assert _values.SETTINGS.limits == ValueLimits()
    assert _config.configured_sinks() == []


@pytest.fixture(params=list(LOOP_FACTORIES))
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Each loop kind ascope supports: asyncio, uvloop and (3.12+) the eager task factory."""
    return str(request.param)


@pytest.fixture
def run(loop_kind: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """``run(coro)`` runs a coroutine on a fresh loop of the parametrized kind."""
    return lambda coroutine: run_on(loop_kind, coroutine)
