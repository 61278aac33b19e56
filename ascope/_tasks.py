"""Task tracking: the task factory that gives every task its own frame.

The factory is installed on each loop ascope runs on, chained onto whatever factory the
loop already had (``asyncio.eager_task_factory`` included) and passing on every keyword
it is given. Before delegating it records ``task_spawn`` and sets the child's frame —
new correlation id, parent = the spawner's, a new task id — into the context the task
will copy, so eager tasks, which run their first step inside the factory call, are
covered too. A done callback records ``task_exit``.
"""

from __future__ import annotations

import asyncio
import functools
import time
import types
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from . import _context as _c
from . import _pipeline

_now = time.perf_counter_ns
_current = _c.current
_STATE = _c.STATE
_Task = asyncio.Task
# asyncio.current_task is C from 3.12; on 3.11 it is a Python function over this dict.
_current_task = (asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
                 if isinstance(asyncio.current_task, types.FunctionType)
                 and isinstance(getattr(asyncio.tasks, "_current_tasks", None), dict)
                 else asyncio.current_task)
_ring_of = _pipeline.ring_of
_MISSING = object()
_speedups: Any = _MISSING  # ascope._speedups, or None for the Python factory below

TaskFactory = Callable[..., "asyncio.Future[Any]"]


def _coroutine_name(coro: Any) -> str:
    name = getattr(coro, "__qualname__", None)
    return name if isinstance(name, str) else type(coro).__qualname__


def make_task_factory(delegate: TaskFactory | None) -> TaskFactory:
    """A task factory recording spawn and exit, delegating creation to ``delegate``.

    The compiled one (``ascope._speedups.TaskFactory``, the same code) where it is built.
    """
    global _speedups
    if _speedups is _MISSING:  # resolved on first use: ascope._speedups imports this module
        _speedups = _c.load_speedups()
    factory: TaskFactory = (_python_task_factory(delegate) if _speedups is None
                            else _speedups.TaskFactory(delegate))
    constructor = _eager_constructor(delegate)
    if constructor is None:
        return factory
    return _EagerLookalike(factory, delegate, constructor)


def _python_task_factory(delegate: TaskFactory | None) -> TaskFactory:
    # Without a delegate the task is built here, as the loop's default factory would
    # (asyncio.Task; uvloop's default builds the same): one Python call fewer per task.
    create = delegate

    def ascope_task_factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                            **kwargs: Any) -> Any:
        # Frame positions as literals, as in runtime.py (this runs for every task):
        # 0 cid, 3 task, 4 trace, 5 enabled, 6 scope, 8 ring.
        parent = _current.get()
        try:
            off = not (_STATE.on and parent[5])
        except Exception:  # not a frame: counted, and the task is made as if off
            _STATE.internal_errors += 1
            off = True
        if off:
            if create is None:
                return _Task(coro, loop=loop, **kwargs)
            return create(loop, coro, **kwargs)
        try:
            task_id = next(_c.task_ids)
            start = _now()
            ring = parent[8]
            if ring is None or ring.loop is not loop:
                ring = _ring_of(loop)
            parent_id, trace, scope = parent[0], parent[4], parent[6]
            cid = next(_c.ids)
            child = (cid, parent_id, parent, task_id, trace, True, scope, start, ring)
            # A task created by a loop callback (a server's protocol handling a connection)
            # outside any operation or task has nothing to be the child of: it gets its
            # frame and task id, but no spawn/exit events — the request it serves is
            # recorded by the middleware. Two events per request fewer for a server.
            recorded = (parent_id is not None or parent[3] is not None
                        or _current_task(loop) is not None)
            if recorded:
                name = getattr(coro, "__qualname__", None)
                event = ("task_spawn", start, cid, parent_id, task_id, trace, scope,
                         task_id, name if type(name) is str else _coroutine_name(coro),
                         kwargs.get("name"))
                if len(ring.buffer) < ring.high_water:  # _pipeline.emit_event, inlined, flat
                    ring.buffer.append(event)
                else:
                    ring.put_slow(event)
        except Exception:
            _STATE.internal_errors += 1
            if create is None:
                return _Task(coro, loop=loop, **kwargs)
            return create(loop, coro, **kwargs)
        context = kwargs.get("context")
        try:
            if context is not None:
                # The caller chose the task's context; the frame goes into that one.
                try:
                    context.run(_current.set, child)
                except RuntimeError:  # it is entered (the caller's own, in ctx.run): leave it
                    pass
                task = (_Task(coro, loop=loop, **kwargs) if create is None
                        else create(loop, coro, **kwargs))
            else:
                # The task copies the caller's context while being created: set the child's
                # frame there for exactly that moment.
                token = _current.set(child)
                try:
                    task = (_Task(coro, loop=loop, **kwargs) if create is None
                            else create(loop, coro, **kwargs))
                finally:
                    _current.reset(token)
        except BaseException as error:  # not created (create_task(42)): close its spawn
            if recorded:
                now = _now()
                _pipeline.emit_event("task_exit", now, child,
                                     ("not_created", now - start, type(error).__qualname__,
                                      kwargs.get("name")))
            raise
        if recorded:
            if task.done():
                # An eager task that finished inside the factory: record its exit now. A
                # done callback would run a loop iteration later, after code that already
                # saw the task done (3.12's gather, for one) has moved on.
                _task_done(child, task)
            else:
                task.add_done_callback(functools.partial(_task_done, child))
        return task

    ascope_task_factory.ascope_delegate = delegate  # type: ignore[attr-defined]
    return ascope_task_factory


# anyio (and any library doing the same) recognises a factory made by
# asyncio.create_eager_task_factory by its code object, and then builds its tasks with the
# factory's task constructor, not eagerly: its cancel scopes need that. Wrapping such a
# factory would hide it and change how those tasks start, so ascope's wrapper shows the
# same code object and a closure whose constructor records the task like the factory does.
_EAGER_CODE = getattr(getattr(asyncio, "eager_task_factory", None), "__code__", None)


def _eager_constructor(delegate: Any) -> Any:
    if _EAGER_CODE is None or getattr(delegate, "__code__", None) is not _EAGER_CODE:
        return None
    closure = getattr(delegate, "__closure__", None)
    return closure[0].cell_contents if closure else None


class _EagerLookalike:
    """ascope's factory over an eager task factory, recognisable as one (see above)."""

    __code__ = _EAGER_CODE

    def __init__(self, factory: TaskFactory, delegate: Any, constructor: Any) -> None:
        self._factory = factory
        self.ascope_delegate = delegate
        tracked = make_task_factory(
            lambda loop, coro, **kwargs: constructor(coro, loop=loop, **kwargs))
        self.__closure__ = (types.CellType(
            lambda coro, *, loop, **kwargs: tracked(loop, coro, **kwargs)),)

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                 **kwargs: Any) -> Any:
        return self._factory(loop, coro, **kwargs)


def _task_done(frame: _c.Frame, task: asyncio.Future[Any]) -> None:
    if not _STATE.on:
        return
    try:
        if task.cancelled():
            outcome, error = "cancelled", None
        else:
            # Not task.exception(): it marks the exception retrieved, which would silence
            # asyncio's "Task exception was never retrieved" report for the user.
            exception = getattr(task, "_exception", _MISSING)
            if exception is _MISSING:
                exception = task.exception()
            if exception is None:
                outcome, error = "result", None
            else:
                outcome, error = "exception", type(exception).__qualname__
        try:
            # The name it has now: before 3.13, create_task(name=...) names the task
            # after the factory returned, so only the exit can carry it.
            name = task.get_name()  # type: ignore[attr-defined]
        except Exception:  # a delegate factory's future that is not a Task
            name = None
        now = _now()
        cid, parent_id, _, task_id, trace, _, scope, start, ring = frame
        event = ("task_exit", now, cid, parent_id, task_id, trace, scope, outcome,
                 now - start, error, name)
        if ring is not None and len(ring.buffer) < ring.high_water:  # emit_event, inlined, flat
            ring.buffer.append(event)
        else:
            _pipeline.append_slow(ring, event)
    except Exception:
        _STATE.internal_errors += 1


def is_ascope_factory(factory: Any) -> bool:
    return hasattr(factory, "ascope_delegate")


def install_task_factory(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Install ascope's task factory on ``loop`` (default: the running loop), once.

    An existing factory is kept and called by ascope's. Installing again is harmless;
    a factory set on the loop later replaces ascope's — call this again after it.
    """
    loop = loop or asyncio.get_running_loop()
    current = loop.get_task_factory()
    if is_ascope_factory(current):
        return
    loop.set_task_factory(make_task_factory(current))


def install_on_new_loops() -> None:
    """Give every loop the current event loop policy creates ascope's task factory from
    the start (``asyncio.run``, ``asyncio.Runner`` and servers create theirs that way), so
    that with capture switched on before the loop exists — ``enable()`` at start-up,
    ``ASCOPE_SINKS`` — even the first tasks are tracked.

    Wraps the policy object's ``new_event_loop`` once; a policy set later (uvloop.install
    after enable) is wrapped by the next ``enable()``. Loops made without the policy
    (``uvloop.run``'s own factory) get the factory at their first event instead.
    """
    try:
        with warnings.catch_warnings():  # event loop policies are deprecated from 3.14
            warnings.simplefilter("ignore", DeprecationWarning)
            policy = asyncio.get_event_loop_policy()
    except Exception:
        _STATE.internal_errors += 1
        return
    if getattr(policy, "_ascope_wraps_new_event_loop", False):
        return
    create = policy.new_event_loop

    def new_event_loop() -> asyncio.AbstractEventLoop:
        loop = create()
        try:
            if _STATE.on:
                install_task_factory(loop)
        except Exception:
            _STATE.internal_errors += 1
        return loop

    policy.new_event_loop = new_event_loop  # type: ignore[method-assign]
    policy._ascope_wraps_new_event_loop = True  # type: ignore[attr-defined]


def uninstall_task_factory(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Put back the factory ascope's replaced (``None`` for the default)."""
    loop = loop or asyncio.get_running_loop()
    current = loop.get_task_factory()
    if is_ascope_factory(current):
        loop.set_task_factory(current.ascope_delegate)  # type: ignore[union-attr]
