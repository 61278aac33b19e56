"""The pytest plugin (entry point ``pytest11: ascope``): ``ascope_events`` and friends.

    async def test_get_user(client, ascope_events):
        await client.get("/users/1")
        assert_queries(ascope_events, request="/users/1", count=1)

How a test's events are told apart
----------------------------------
For a test that uses ``ascope_events`` the plugin opens one ``ascope.testing.capture()``
before the test's fixtures are set up and closes it after they are torn down. Its
*scope* (a capture id in the context frame) has to reach every task the test's code runs
in, whatever runs the coroutines:

- pytest-asyncio runs each async fixture and the test in a task of its own, in a copy of
  the main thread's context taken at that moment (and copies a fixture's context changes
  back into the main context);
- anyio's plugin runs fixtures and tests inside one long-lived runner task, whose
  context was copied once, when the runner started — possibly during an earlier test.

So the plugin does not rely on the main context alone: it wraps the test coroutine and
every async fixture so that, inside them, the frame is set explicitly — a fresh frame
(no correlation stack) carrying the test's scope for function-scoped fixtures and the
test, and *no* scope for fixtures of a broader scope. Tasks inherit that frame. Hence:

- a task the test leaves running carries the test's scope: its later events go nowhere
  (that capture is closed), never into another test;
- a server started by a module- or session-scoped fixture has no scope: what it does
  while a test runs belongs to that test (``capture()`` takes unscoped events emitted
  during its window, and only those emitted after it opened) — except while such a
  fixture is being set up: shared set-up is nobody's test, and is left out;
- each pytest-xdist worker is a process of its own: captures live in its memory, ids
  carry a random per-process prefix, and nothing is written to a shared file.

The tasks the test runner itself creates to run fixtures and tests (pytest-asyncio's
``Runner.run`` tasks, anyio's runner task) are left out of ``ascope_events``: their
spawns are made from a frame marked with a per-test id, and every ``task_spawn`` /
``task_exit`` of such a task (and of tasks those spawn outside the test's own code) is
dropped. ``ascope_events.raw()`` has everything.

Options
-------
``@pytest.mark.ascope(...)`` for one test, ``ascope_*`` ini options for the suite:

=====================  ========================  ==========================================
marker keyword         ini option                meaning
=====================  ========================  ==========================================
``deterministic``      ``ascope_deterministic``  renumber ids and timestamps (snapshots)
``runner_tasks``       --                        keep the test runner's own task events
``ring_size`` and any  ``ascope_ring_size``      ``ascope.configure`` keywords, for the test
other ``configure``                              (the ini option: for the session)
keyword
--                     ``ascope_instrument``     packages ``ascope.instrument_packages``
                                                 instruments as they are imported
--                     ``ascope_ast``            ... with AST capture (lines, branches...)
=====================  ========================  ==========================================

Instrumentation is decided when a module is imported, before any test runs, so it is a
suite-wide (ini) choice: the plugin installs the import hook before conftest files and
test modules are imported. For one test, decorate with ``@ascope.instrument(ast=True)``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from . import _config, _pipeline, _values
from . import _context as _c
from ._config import configure
from ._events import Event
from ._query import EventQuery, Events, deterministic
from .testing import capture

__all__ = ["AscopeEvents", "ascope_events"]

_INI_BOOL = ("ascope_deterministic", "ascope_ast")
_MARKER_OWN = frozenset({"deterministic", "runner_tasks"})
_CONFIGURE_KEYS = frozenset({
    "ring_size", "overflow", "high_water", "drain_interval", "max_depth", "max_length",
    "max_string", "max_repr", "max_items", "redact",
})

_active: _TestRun | None = None  # the test being captured (one at a time per process)


# -- registration -----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("ascope_deterministic", type="bool", default=False,
                  help="ascope: renumber ids and timestamps in ascope_events (snapshots)")
    parser.addini("ascope_ast", type="bool", default=False,
                  help="ascope: AST capture for the packages in ascope_instrument")
    parser.addini("ascope_instrument", type="linelist", default=[],
                  help="ascope: packages to instrument (ascope.instrument_packages) as imported")
    parser.addini("ascope_ring_size", type="string", default="",
                  help="ascope: events per loop ring during the test session")
    parser.addini("ascope_sinks", type="string", default="",
                  help="ascope: sinks for code that calls ascope.enable() during the tests, "
                       "{worker} = the xdist worker id; default: none (nothing on disk)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ascope(**options): options for this test's ascope_events capture: deterministic, "
        "runner_tasks, or any ascope.configure() keyword",
    )


_instrumented: list[Any] = []  # instrument_packages registrations made for this session


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before conftest files (and through them the application) are imported.
    packages = [p for p in early_config.getini("ascope_instrument") if p.strip()]
    if packages:
        from . import instrument_packages  # late: only suites that ask pay for the hook

        _instrumented.append(instrument_packages(
            packages, ast=bool(early_config.getini("ascope_ast"))))


def pytest_unconfigure(config: pytest.Config) -> None:
    while _instrumented:
        _instrumented.pop().uninstall()


_session_restore: dict[str, Any] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    raw = str(session.config.getini("ascope_ring_size") or "").strip()
    if raw:
        try:
            size = int(raw)
        except ValueError:
            raise pytest.UsageError(f"ascope_ring_size: expected an integer, got {raw!r}") \
                from None
        _session_restore["ring_size"] = _pipeline.SETTINGS.ring_size
        configure(ring_size=size)
    _configure_session_sinks(session.config)


def _configure_session_sinks(config: pytest.Config) -> None:
    """Sinks for code under test that switches capture on globally (``ascope.install(app)``
    does): by default none, so a test run never writes ``ascope.db`` into the working
    directory and xdist workers never share a file; ``ascope_sinks`` may name files per
    worker (``sqlite:.ascope/{worker}.db``). Sinks chosen by ``ASCOPE_SINKS`` or by a
    ``configure()`` call before the session are left alone."""
    template = str(config.getini("ascope_sinks") or "").strip()
    if not template and _config._configured_sinks is not None:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _session_restore["sinks"] = _config._configured_sinks
    configure(sinks=template.replace("{worker}", worker) if template else [])


def pytest_sessionfinish(session: pytest.Session) -> None:
    _close_active()  # a test interrupted before its teardown: capture off again
    sinks = _session_restore.pop("sinks", _UNSET)
    if sinks is not _UNSET:
        _pipeline.flush_blocking()
        configure(sinks=sinks or [])
        _config._configured_sinks = sinks  # None again: enable() picks the default later
    if _session_restore:
        configure(**_session_restore)
        _session_restore.clear()


_UNSET: Any = object()


# -- one test's capture -----------------------------------------------------------------------


class _TestRun:
    """The capture of one test and the frames its code runs under."""

    def __init__(self, item: pytest.Item, options: dict[str, Any]) -> None:
        self.item = item
        self.options = options
        self.capture = capture()
        self.harness_id = next(_c.ids)  # marks tasks the test runner creates
        self.scope: tuple[Any, ...] = ()
        self._restore_settings: dict[str, Any] = {}
        self._cache: tuple[int, list[Event]] | None = None
        # When module/session-scoped fixtures were being set up during this test's window:
        # what they do then is shared set-up, not the test's doing.
        self.shared_setup: list[tuple[int, int]] = []

    def open(self) -> None:
        settings = {key: value for key, value in self.options.items()
                    if key in _CONFIGURE_KEYS}
        if settings:
            self._restore_settings = _current_settings(settings)
            configure(**settings)
        self.capture._enter()
        self.scope = self.capture.scope
        _c.current.set(self.harness_frame(self.scope))

    def close(self) -> None:
        try:
            flush_all()
        finally:
            self.capture._leave()  # also puts the main context's frame back
            if self._restore_settings:
                configure(**self._restore_settings)

    def harness_frame(self, scope: tuple[Any, ...] | None) -> _c.Frame:
        return (self.harness_id, None, None, None, None, True, scope, 0, None)

    # reading ----------------------------------------------------------------------------------

    def events(self) -> list[Event]:
        flush_all()
        collected = self.capture._collected()
        key = len(collected)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if self.shared_setup:
            collected = [event for event in collected if not any(
                start <= event.ts_ns <= end for start, end in self.shared_setup)]
        events = collected if self.options.get("runner_tasks") else self._drop_runner_tasks(
            collected)
        if self.options.get("deterministic"):
            events = deterministic(events)
        self._cache = (key, events)
        return events

    def _drop_runner_tasks(self, events: Sequence[Event]) -> list[Event]:
        runner_tasks = {self.harness_id}
        for event in events:  # time order: a task's spawn comes before its own spawns
            if event.kind == "task_spawn" and event.parent_id in runner_tasks:
                runner_tasks.add(event.correlation_id)  # type: ignore[arg-type]
        runner_tasks.discard(self.harness_id)
        return [event for event in events
                if not (event.kind in ("task_spawn", "task_exit")
                        and event.correlation_id in runner_tasks)]


def _current_settings(keys: dict[str, Any]) -> dict[str, Any]:
    limits = _values.SETTINGS.limits
    saved: dict[str, Any] = {}
    for key in keys:
        source = _pipeline.SETTINGS if hasattr(_pipeline.SETTINGS, key) else limits
        saved[key] = getattr(source, key)
    return saved


def _options_for(item: pytest.Item) -> dict[str, Any]:
    config = item.config
    options: dict[str, Any] = {"deterministic": config.getini("ascope_deterministic")}
    # Markers closer to the test win: apply the farthest first.
    for marker in reversed(list(item.iter_markers("ascope"))):
        if marker.args:
            pytest.fail(f"@pytest.mark.ascope takes keywords only, got {marker.args!r}",
                        pytrace=False)
        unknown = set(marker.kwargs) - _MARKER_OWN - _CONFIGURE_KEYS
        if unknown:
            pytest.fail(f"unknown @pytest.mark.ascope option(s) {sorted(unknown)}; "
                        f"known: {sorted(_MARKER_OWN | _CONFIGURE_KEYS)}", pytrace=False)
        options.update(marker.kwargs)
    return options


def _user_frame(scope: tuple[Any, ...] | None) -> _c.Frame:
    """A fresh frame for the test's own code: no correlation stack, the given scope."""
    frame = _pipeline.attach_current_loop()  # a task id and the loop's ring, if in a task
    return (None, None, None, frame[_c.TASK], None, True, scope, 0, frame[_c.RING])


# -- hooks: open/close around the whole test, frames around its parts --------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    global _active
    if "ascope_events" in getattr(item, "fixturenames", ()):
        _close_active()  # a previous test's teardown never ran (interrupted): end it
        try:
            options = _options_for(item)
        except pytest.fail.Exception:
            pass  # bad marker: the fixture reports it, as the test's setup error
        else:
            run = _TestRun(item, options)
            _active = run
            run.open()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        if _active is not None and _active.item is item:
            _close_active()


def _close_active() -> None:
    global _active
    run, _active = _active, None
    if run is not None:
        run.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any],
                         request: pytest.FixtureRequest) -> Iterator[Any]:
    run = _active
    if run is None or fixturedef.argname == "ascope_events":
        return (yield)
    scope = run.scope if fixturedef.scope == "function" else None
    func = fixturedef.func
    previous = _c.current.get()
    wrapped = _wrap_async(func, scope)
    started = time.perf_counter_ns()
    try:
        if wrapped is not None:
            # The runner's task for the fixture is spawned from here: mark it as the
            # runner's; the wrapper sets the fixture's own frame inside.
            fixturedef.func = wrapped  # type: ignore[misc] # as pytest-asyncio and anyio do
            _c.current.set(run.harness_frame(scope))
        else:
            _c.current.set(_user_frame(scope))
        return (yield)
    finally:
        fixturedef.func = func  # type: ignore[misc]
        _c.current.set(previous)
        if scope is None:
            run.shared_setup.append((started, time.perf_counter_ns()))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    run = _active
    if run is None or run.item is not item or not isinstance(item, pytest.Function):
        return (yield)
    test = item.obj
    wrapped = None if hasattr(test, "hypothesis") else _wrap_async(test, run.scope)
    previous = _c.current.get()
    try:
        if wrapped is not None:
            item.obj = wrapped
        else:
            _c.current.set(_user_frame(run.scope))
        return (yield)
    finally:
        item.obj = test
        _c.current.set(previous)


def _wrap_async(func: Any, scope: tuple[Any, ...] | None) -> Any:
    """``func`` (a coroutine or async generator function, maybe a bound method or a
    staticmethod) wrapped to run under a fresh frame with ``scope``; None if not async."""
    bound_to = getattr(func, "__self__", None)
    target = func.__func__ if isinstance(func, (staticmethod, types.MethodType)) else func
    if inspect.isasyncgenfunction(target):
        wrapper: Callable[..., Any] = _wrap_asyncgen(target, scope)
    elif inspect.iscoroutinefunction(target):
        wrapper = _wrap_coroutine(target, scope)
    else:
        return None
    if isinstance(func, types.MethodType) and bound_to is not None:
        # Stay a method: pytest rebinds a class's fixtures to the test's instance.
        return types.MethodType(wrapper, bound_to)
    return wrapper


def _wrap_coroutine(target: Callable[..., Any], scope: tuple[Any, ...] | None
                    ) -> Callable[..., Any]:
    @functools.wraps(target)
    async def run_captured(*args: Any, **kwargs: Any) -> Any:
        # The value, not a Token, is put back: the runner may run this in a context
        # where other code set the variable in between (anyio's shared runner task).
        previous = _c.current.get()
        _c.current.set(_user_frame(scope))
        try:
            return await target(*args, **kwargs)
        finally:
            _c.current.set(previous)

    return run_captured


def _wrap_asyncgen(target: Callable[..., Any], scope: tuple[Any, ...] | None
                   ) -> Callable[..., Any]:
    @functools.wraps(target)
    async def run_captured(*args: Any, **kwargs: Any) -> Any:
        generator = target(*args, **kwargs)
        try:
            while True:  # a fixture yields once; the runner reports more than that
                previous = _c.current.get()
                _c.current.set(_user_frame(scope))
                try:
                    value = await generator.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _c.current.set(previous)
                yield value
        finally:
            await generator.aclose()

    return run_captured


# -- flushing ---------------------------------------------------------------------------------


def flush_all(timeout: float = 5.0) -> None:
    """Hand every ring to the writer — also those of loops running in other threads
    (a server in a thread) — and wait until it has written them."""
    here = _pipeline._get_running_loop()
    waits: list[threading.Event] = []
    for ring in _pipeline.all_rings():
        loop = ring.loop
        if loop is None or loop is here or not loop.is_running():
            continue
        done = threading.Event()

        def hand_off(ring: Any = ring, done: threading.Event = done) -> None:
            try:
                _pipeline.hand_off(ring)
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(hand_off)
        except RuntimeError:  # closed meanwhile: the writer sweeps it
            continue
        waits.append(done)
    for done in waits:
        done.wait(timeout)
    _pipeline.flush_blocking(timeout)


# -- the fixture ------------------------------------------------------------------------------


class AscopeEvents(EventQuery):
    """The events of the running test, flushed each time they are read.

    Every accessor (iterating, ``len``, ``filter``, ``only``, ``tree``...) first writes
    out what is pending, blocking briefly (on the test's loop too: it is a test).
    ``await ascope_events.flushed()`` does the same without blocking the loop.
    """

    def __init__(self, run: _TestRun) -> None:
        self._run = run

    def _all(self) -> Sequence[Event]:
        return self._run.events()

    @property
    def events(self) -> list[Event]:
        return list(self._run.events())

    def snapshot(self) -> Events:
        """The events captured so far, as a fixed ``Events`` (later events not included)."""
        return Events(self._run.events())

    async def flushed(self) -> Events:
        """Flush from async code (awaiting, not blocking the loop), then ``snapshot()``."""
        await _pipeline.flush()
        await asyncio.get_running_loop().run_in_executor(None, flush_all)
        return self.snapshot()

    def raw(self) -> Events:
        """Everything captured, the test runner's own tasks included, not renumbered."""
        flush_all()
        return Events(self._run.capture._collected())

    @property
    def scope(self) -> tuple[Any, ...]:
        return self._run.scope

    def __repr__(self) -> str:
        return f"<ascope_events of {self._run.item.nodeid}>"


@pytest.fixture
def ascope_events(request: pytest.FixtureRequest) -> Iterator[AscopeEvents]:
    """Everything the test does, captured: the test body, its fixtures, the tasks they
    spawn, an app served in the same process. Read it at any point of the test."""
    global _active
    run = _active
    opened_here = run is None or run.item is not request.node
    if opened_here:  # requested dynamically (request.getfixturevalue): open from now on
        _close_active()
        run = _TestRun(request.node, _options_for(request.node))
        _active = run
        run.open()
    assert run is not None
    yield AscopeEvents(run)
    if opened_here and _active is run:
        _close_active()
