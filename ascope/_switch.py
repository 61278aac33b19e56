"""Switching capture on and off: globally, per task, and for scoped captures."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from . import _context as _c
from . import _pipeline

P = ParamSpec("P")
R = TypeVar("R")

_current = _c.current
_STATE = _c.STATE


def enable() -> None:
    """Switch capture on for the whole process, into the configured sinks.

    With no sinks configured, events go to the embedded SQLite store ``ascope.db``.
    Called inside a running loop, it also sets the loop up at once (ring, drainer, task
    factory), so tasks created right after are tracked.
    """
    from . import _config

    _config.ensure_sinks()
    _STATE.global_sinks = True
    _STATE.recompute()
    _pipeline.attach_current_loop()
    from . import _tasks

    _tasks.install_on_new_loops()


def disable() -> None:
    """Switch capture off for the whole process (open ``testing.capture()`` blocks go on)."""
    _STATE.global_sinks = False
    _STATE.recompute()


def _with_enabled(frame: _c.Frame, flag: bool) -> _c.Frame:
    return frame[: _c.ENABLED] + (flag,) + frame[_c.ENABLED + 1:]


class disabled(contextlib.ContextDecorator):
    """Turn capture off for the current task (and tasks it spawns) inside the block.

    Works as ``with ascope.disabled():`` and as a decorator on sync and async functions;
    the previous state comes back on exit, also when the block raises or is cancelled.
    Other tasks keep capturing.
    """

    # The tokens to reset live in the context, not on the instance: one instance may be
    # entered by several tasks at once (``quiet = disabled()`` ... ``with quiet:``), and a
    # token only resets in the context that made it.
    _tokens: ContextVar[tuple[Any, ...]] = ContextVar("ascope.disabled", default=())

    def __enter__(self) -> disabled:
        token = _current.set(_with_enabled(_current.get(), False))
        self._tokens.set((*self._tokens.get(), token))
        return self

    def __exit__(self, *exc_info: object) -> None:
        tokens = self._tokens.get()
        self._tokens.set(tokens[:-1])
        _current.reset(tokens[-1])

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:  # type: ignore[override]
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def run_disabled(*args: P.args, **kwargs: P.kwargs) -> Any:
                with disabled():
                    return await function(*args, **kwargs)

            return run_disabled  # type: ignore[return-value]

        @functools.wraps(function)
        def call_disabled(*args: P.args, **kwargs: P.kwargs) -> R:
            with disabled():
                return function(*args, **kwargs)

        return call_disabled


def _set(frame: _c.Frame) -> None:
    _current.set(frame)


@contextlib.contextmanager
def enter_measure_scope() -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """Capture on, into a scope whose events the writer discards (for measure_overhead)."""
    token = _current.set(_current.get())
    frame = _pipeline.attach_current_loop()
    _current.set(frame[: _c.ENABLED] + (True, _pipeline.DISCARD_SCOPE) + frame[_c.SCOPE + 1:])
    on_frame = _current.get()
    off_frame = _with_enabled(on_frame, False)
    _STATE.scoped_captures += 1
    _STATE.recompute()
    try:
        yield (lambda: _set(off_frame)), (lambda: _set(on_frame))
    finally:
        _pipeline.hand_off_current()
        _current.reset(token)
        _STATE.scoped_captures -= 1
        _STATE.recompute()
