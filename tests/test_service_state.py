"""``@ascope.instrument(state=True)``: stateful services (the GenServer counterpart).

Public method calls are service callbacks (start, success or error, complete) with a
``state_change`` (before, after, diff of the instance's attributes) when they changed it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import ascope
from ascope.testing import capture

Run = Callable[[Coroutine[Any, Any, Any]], Any]

SERVICE_KINDS = ("service_callback_start", "service_callback_success", "service_callback_error",
                 "service_callback_complete", "state_change")


def story(events: list[ascope.Event]) -> list[tuple[Any, ...]]:
    """The service events as (kind, callback-or-diff, detail) tuples."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        data = event.data
        if event.kind == "service_callback_start":
            out.append(("start", data["callback"], data["args"]))
        elif event.kind == "service_callback_success":
            out.append(("success", data["callback"], data["result"]))
        elif event.kind == "service_callback_error":
            out.append(("error", data["callback"], data["type"]))
        elif event.kind == "service_callback_complete":
            out.append(("complete", data["callback"]))
        elif event.kind == "state_change":
            out.append(("state", data["before"], data["after"]))
    return out


@ascope.instrument(state=True)
class Counter:
    """A counter service."""

    def __init__(self, start: int = 0) -> None:
        self.count = start
        self.history: list[int] = []

    def increment(self, by: int = 1) -> int:
        self.count += by
        self.history.append(by)
        return self.count

    def peek(self) -> int:
        return self.count

    def fail(self) -> None:
        self.count = -1
        raise RuntimeError("broken")

    async def add_later(self, by: int) -> int:
        await asyncio.sleep(0)
        self.count += by
        return self.count

    async def wait_forever(self) -> None:
        self.count = 99
        await asyncio.sleep(3600)

    def _private(self) -> None:
        self.count = 0

    def items(self) -> Iterator[int]:
        yield from self.history

    @classmethod
    def named(cls) -> str:
        return cls.__name__


def test_init_records_the_initial_state() -> None:
    """Creating an instance is a callback too, whose state change starts from {}."""
    with capture() as captured:
        Counter(5)
    assert story(captured.events) == [
        ("start", "__init__", {"start": 5}),
        ("success", "__init__", None),
        ("state", {}, {"count": 5, "history": []}),
        ("complete", "__init__"),
    ]


def test_call_that_changes_state_reports_the_change() -> None:
    """A public call reports start, success (with result), state_change with before,
    after and diff, then complete, all under one correlation id."""
    counter = Counter()
    with capture() as captured:
        assert counter.increment(2) == 2
    assert story(captured.events) == [
        ("start", "increment", {"by": 2}),
        ("success", "increment", 2),
        ("state", {"count": 0, "history": []}, {"count": 2, "history": [2]}),
        ("complete", "increment"),
    ]
    change = captured.of_kind("state_change")[0]
    assert change.data["diff"] == {"added": {}, "removed": {},
                                   "changed": {"count": [0, 2], "history": [[], [2]]}}
    assert len({e.correlation_id for e in captured.events}) == 1
    assert captured.events[-1].data["duration_ns"] >= 0


def test_call_that_does_not_change_state_reports_no_change() -> None:
    """A read-only call reports start, success and complete, but no state_change."""
    counter = Counter(3)
    with capture() as captured:
        assert counter.peek() == 3
    assert story(captured.events) == [("start", "peek", {}), ("success", "peek", 3),
                                      ("complete", "peek")]


def test_error_reports_error_and_the_partial_change() -> None:
    """A call that raises reports service_callback_error (type) instead of success, the
    state it left behind, then complete; the exception reaches the caller unchanged."""
    counter = Counter()
    with capture() as captured, pytest.raises(RuntimeError, match="broken"):
        counter.fail()
    assert story(captured.events) == [
        ("start", "fail", {}),
        ("error", "fail", "RuntimeError"),
        ("state", {"count": 0, "history": []}, {"count": -1, "history": []}),
        ("complete", "fail"),
    ]
    assert captured.of_kind("service_callback_error")[0].data["message"] == "broken"


def test_async_callbacks(run: Run) -> None:
    """Async methods are callbacks too; their state is taken when the call starts and when
    it ends (asyncio and uvloop)."""
    async def main() -> list[ascope.Event]:
        counter = Counter()
        async with capture() as captured:
            assert await counter.add_later(4) == 4
        return captured.events

    assert story(run(main())) == [
        ("start", "add_later", {"by": 4}),
        ("success", "add_later", 4),
        ("state", {"count": 0, "history": []}, {"count": 4, "history": []}),
        ("complete", "add_later"),
    ]


def test_cancelled_async_callback(run: Run) -> None:
    """A cancelled callback reports error CancelledError, its state change and complete,
    and the task is cancelled as it would be without ascope."""
    async def main() -> tuple[list[ascope.Event], bool]:
        counter = Counter()
        async with capture() as captured:
            task = asyncio.create_task(counter.wait_forever())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return captured.events, task.cancelled()

    events, cancelled = run(main())
    assert cancelled
    assert [s[:2] for s in story(events)] == [
        ("start", "wait_forever"), ("error", "wait_forever"),
        ("state", {"count": 0, "history": []}), ("complete", "wait_forever")]


def test_instances_are_told_apart() -> None:
    """Each instance gets its own service name (Class#n), the same across its calls."""
    first, second = Counter(), Counter()
    with capture() as captured:
        first.increment()
        second.increment()
        first.increment()
    names = [e.data["service"] for e in captured.of_kind("service_callback_start")]
    assert names[0] == names[2] != names[1]
    assert all(name.startswith("Counter#") for name in names)
    targets = [e.data["target"] for e in captured.of_kind("state_change")]
    assert targets == names


def test_private_generator_and_class_methods_are_not_callbacks() -> None:
    """Private methods run inside callbacks unreported; public generators and
    classmethods get plain call capture (no instance state to watch)."""
    counter = Counter()
    counter.history.extend([1, 2])
    with capture() as captured:
        counter._private()
        assert list(counter.items()) == [1, 2]
        assert Counter.named() == "Counter"
    assert [e for e in captured.events if e.kind in SERVICE_KINDS] == []
    functions = {e.data["function"] for e in captured.of_kind("function_entry")}
    assert functions == {"Counter.items", "Counter.named"}


def test_watched_attributes_only() -> None:
    """state=[names] snapshots only those attributes."""
    @ascope.instrument(state=["balance"])
    class Wallet:
        def __init__(self) -> None:
            self.balance = 0
            self.log: list[str] = []

        def spend(self, amount: int) -> None:
            self.balance -= amount
            self.log.append("spent")

        def note(self) -> None:
            self.log.append("note")

    wallet = Wallet()
    with capture() as captured:
        wallet.spend(3)
        wallet.note()
    changes = captured.of_kind("state_change")
    assert [(c.data["before"], c.data["after"]) for c in changes] == [
        ({"balance": 0}, {"balance": -3})]


def test_slots_and_secrets() -> None:
    """Instances with __slots__ are snapshotted through their slots; attributes with
    secret-looking names are redacted in snapshots."""
    @ascope.instrument(state=True)
    class Session:
        __slots__ = ("__weakref__", "token", "user")

        def __init__(self, user: str) -> None:
            self.user = user
            self.token = "abc"

        def rename(self, user: str) -> None:
            self.user = user

    session = Session("ann")
    with capture() as captured:
        session.rename("bob")
    change = captured.of_kind("state_change")[0]
    assert change.data["before"] == {"token": "[redacted]", "user": "ann"}
    assert change.data["after"] == {"token": "[redacted]", "user": "bob"}


def test_behaviour_and_introspection_are_unchanged() -> None:
    """With capture off the service works as the plain class; methods keep their
    signatures and coroutine-ness."""
    counter = Counter(1)
    assert counter.increment(2) == 3
    assert inspect.iscoroutinefunction(Counter.add_later)
    assert inspect.isgeneratorfunction(Counter.items)
    assert str(inspect.signature(Counter.increment)) == "(self, by: 'int' = 1) -> 'int'"
    assert Counter.__doc__ == "A counter service."
    assert Counter.increment.__qualname__ == "Counter.increment"


def test_nested_calls_belong_to_the_callback() -> None:
    """Calls made inside a callback (instrumented functions, other services) have the
    callback's correlation id as parent."""
    @ascope.instrument
    def audit(value: int) -> int:
        return value

    @ascope.instrument(state=True)
    class Audited:
        def __init__(self) -> None:
            self.value = 0

        def set(self, value: int) -> None:
            self.value = audit(value)

    audited = Audited()
    with capture() as captured:
        audited.set(3)
    start = captured.of_kind("service_callback_start")[0]
    entry = captured.of_kind("function_entry")[0]
    assert entry.parent_id == start.correlation_id


def test_wrong_arguments_and_unusual_receiver_names(run: Run) -> None:
    """A callback called with arguments it does not take raises TypeError at the call (async
    ones included); a receiver not named self is the instance all the same."""
    @ascope.instrument(state=True)
    class Odd:
        def __init__(this) -> None:
            this.n = 0

        async def bump(this, by: int) -> int:
            this.n += by
            return this.n

    async def main() -> list[ascope.Event]:
        odd = Odd()
        async with capture() as captured:
            with pytest.raises(TypeError, match="bump"):
                odd.bump()  # type: ignore[call-arg]
            assert await odd.bump(2) == 2
        return captured.events

    events = run(main())
    assert [entry[0] for entry in story(events)] == ["start", "success", "state", "complete"]
    start = events[0]
    assert start.data["args"]["by"] == 2
    change = next(e for e in events if e.kind == "state_change")
    assert (change.data["before"], change.data["after"]) == ({"n": 0}, {"n": 2})
