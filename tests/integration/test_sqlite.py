"""sqlite3 and aiosqlite integration on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import ascope.integrations
import pytest

import ascope
from ascope import runtime
from ascope.testing import capture

aiosqlite = pytest.importorskip("aiosqlite")



@pytest.fixture(autouse=True)
def _sqlite_on() -> Iterator[None]:
    ascope.integrations.enable("sqlite")
    yield
    ascope.integrations.disable()


def starts(events: list[ascope.Event]) -> list[ascope.Event]:
    return [event for event in events if event.kind == "query_start"]


def completion(events: list[ascope.Event], start: ascope.Event) -> ascope.Event:
    (event,) = [e for e in events
                if e.kind == "query_complete" and e.correlation_id == start.correlation_id]
    return event


@pytest.mark.asyncio
async def test_sqlite3_statements_nest_under_the_operation(tmp_path: Path) -> None:
    """Every way of running SQL on a sqlite3 connection (connection and cursor
    ``execute``, ``executemany``, ``executescript``) is one query under the current
    operation, with parameters, database file and rows changed."""
    path = str(tmp_path / "app.db")
    async with capture() as captured:
        operation = runtime.report_function_entry("app", "handler")
        connection = sqlite3.connect(path)
        connection.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT);")
        connection.executemany("INSERT INTO t (label) VALUES (?)", [("a",), ("b",), ("c",)])
        cursor = connection.cursor()
        cursor.execute("UPDATE t SET label = :label WHERE id > :id", {"label": "z", "id": 1})
        rows = connection.execute("SELECT label FROM t ORDER BY id").fetchall()
        connection.commit()
        connection.close()
        runtime.report_function_exit(operation)
    assert rows == [("a",), ("z",), ("z",)]
    queries = starts(captured.events)
    assert [(e.data["metadata"]["call"], e.data["statement"]) for e in queries] == [
        ("executescript", "CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT);"),
        ("executemany", "INSERT INTO t (label) VALUES (?)"),
        ("execute", "UPDATE t SET label = :label WHERE id > :id"),
        ("execute", "SELECT label FROM t ORDER BY id"),
    ]
    assert all(e.parent_id == operation and e.data["database"] == path for e in queries)
    assert queries[1].data["params"] == [["a"], ["b"], ["c"]]
    assert queries[2].data["params"] == {"label": "z", "id": 1}
    assert [completion(captured.events, e).data["rows"] for e in queries] == [None, 3, 2, None]


@pytest.mark.asyncio
async def test_parameters_are_bounded(tmp_path: Path) -> None:
    """An ``executemany`` of thousands of rows, or a long IN list, records the first rows
    and how many were left out — never a copy of everything."""
    connection = sqlite3.connect(str(tmp_path / "big.db"))
    connection.execute("CREATE TABLE t (n INTEGER)")
    many = [(n,) for n in range(5000)]
    async with capture() as captured:
        connection.executemany("INSERT INTO t VALUES (?)", many)
        connection.execute(f"SELECT n FROM t WHERE n IN ({', '.join('?' * 900)})",
                           tuple(range(900)))
    connection.close()
    insert, select = starts(captured.events)
    assert insert.data["params"][:2] == [[0], [1]]
    assert insert.data["params"][-1] == {"$truncated": 5000 - 32}
    assert select.data["params"][-1] == {"$truncated": 900 - 32}
    assert completion(captured.events, insert).data["rows"] == 5000


@pytest.mark.asyncio
async def test_a_factory_of_the_callers_own_is_kept(tmp_path: Path) -> None:
    """A connection ``factory=`` (and a cursor factory) given by the caller still decides
    the class: ascope subclasses it, so ``isinstance`` and its methods hold."""
    class AppConnection(sqlite3.Connection):
        def greet(self) -> str:
            return "hello"

    class AppCursor(sqlite3.Cursor):
        pass

    async with capture() as captured:
        connection = sqlite3.connect(str(tmp_path / "f.db"), factory=AppConnection)
        cursor = connection.cursor(AppCursor)
        cursor.execute("SELECT 1")
        connection.close()
    assert isinstance(connection, AppConnection) and connection.greet() == "hello"
    assert isinstance(cursor, AppCursor)
    assert [e.data["statement"] for e in starts(captured.events)] == ["SELECT 1"]


def _overriding_classes(log: list[str]) -> tuple[type, type]:
    class LoggingCursor(sqlite3.Cursor):
        def execute(self, sql: Any, parameters: Any = (), /) -> Any:
            log.append("LoggingCursor.execute")
            return super().execute(sql, parameters)

    class LoggingConnection(sqlite3.Connection):
        def cursor(self, factory: Any = LoggingCursor) -> Any:  # type: ignore[override]
            log.append(f"cursor({factory.__name__})")
            return super().cursor(factory)

        def execute(self, sql: Any, parameters: Any = (), /) -> Any:
            log.append("LoggingConnection.execute")
            return super().execute(sql, parameters)

    return LoggingCursor, LoggingConnection


def _run_overriding(path: str) -> tuple[list[str], list[Any]]:
    """What a connection class and a cursor class of the caller's, both overriding
    methods, run for ``execute`` on each, and what the caller can see of the results."""
    log: list[str] = []
    cursor_class, connection_class = _overriding_classes(log)
    connection = sqlite3.connect(path, factory=connection_class)
    from_connection = connection.execute("SELECT 1").fetchall()
    cursor = connection.cursor()
    from_cursor = cursor.execute("SELECT 2").fetchall()
    seen = [from_connection, from_cursor, isinstance(connection, connection_class),
            isinstance(cursor, cursor_class)]
    connection.close()
    return log, seen


@pytest.mark.asyncio
async def test_the_callers_overriding_classes_run_as_without_ascope(tmp_path: Path) -> None:
    """A connection class of the caller's overriding ``execute`` and ``cursor()`` (with its
    own default cursor class), and that cursor class overriding ``execute``: the same
    methods run, in the same order, with the same results, as without the integration,
    and both statements are recorded."""
    ascope.integrations.disable("sqlite")
    plain = _run_overriding(str(tmp_path / "plain.db"))
    ascope.integrations.enable("sqlite")
    async with capture() as captured:
        recorded = _run_overriding(str(tmp_path / "recorded.db"))
    assert recorded == plain
    assert plain[0] == ["LoggingConnection.execute", "cursor(LoggingCursor)",
                        "LoggingCursor.execute"]
    assert [e.data["statement"] for e in starts(captured.events)] == ["SELECT 1", "SELECT 2"]


@pytest.mark.asyncio
@pytest.mark.parametrize("attribute", ["rowcount", "connection"])
async def test_a_cursor_whose_attribute_raises_runs_unharmed(tmp_path: Path,
                                                             attribute: str) -> None:
    """A cursor class of the caller's whose ``rowcount`` or ``connection`` raises (sqlite3
    itself never reads them from Python): every way of running SQL works as without
    ascope. Without a row count the statements are recorded with none; without the
    connection they run unrecorded, each failure counted."""
    def refuse(self: Any) -> Any:
        raise RuntimeError(f"no {attribute} here")

    odd = type("OddCursor", (sqlite3.Cursor,), {attribute: property(refuse)})
    errors_before = ascope.stats().internal_errors
    async with capture() as captured:
        connection = sqlite3.connect(str(tmp_path / "odd.db"))
        cursor = connection.cursor(odd)
        cursor.execute("CREATE TABLE t (x INTEGER)")
        cursor.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        cursor.executescript("INSERT INTO t VALUES (3);")
        rows = cursor.execute("SELECT x FROM t ORDER BY x").fetchall()
        connection.close()
    assert rows == [(1,), (2,), (3,)]
    queries = starts(captured.events)
    errors = ascope.stats().internal_errors - errors_before
    if attribute == "rowcount":
        assert len(queries) == 4 and errors == 0
        assert [completion(captured.events, q).data["rows"] for q in queries] == [None] * 4
    else:
        assert queries == [] and errors == 4


@pytest.mark.asyncio
async def test_classes_that_refuse_subclasses_or_attributes_run_unharmed(
        tmp_path: Path) -> None:
    """A connection class whose ``__init_subclass__`` wants an argument (ascope's subclass
    cannot be made: the class is used as it is, unrecorded) and one refusing new
    attributes (with aiosqlite too): everything runs as without ascope, and what ascope
    could not do is counted."""
    class Strict(sqlite3.Connection):
        def __init_subclass__(cls, *, dialect: str, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)

    class AppConnection(Strict, dialect="app"):
        pass

    class Locked(sqlite3.Connection):
        def __setattr__(self, name: str, value: Any) -> None:
            if name.startswith("_ascope"):
                raise AttributeError(f"cannot set {name}")
            super().__setattr__(name, value)

    errors_before = ascope.stats().internal_errors
    async with capture() as captured:
        strict = sqlite3.connect(str(tmp_path / "s.db"), factory=AppConnection)
        assert type(strict) is AppConnection
        assert strict.execute("SELECT 1").fetchall() == [(1,)]
        strict.close()
        locked = sqlite3.connect(str(tmp_path / "l.db"), factory=Locked)
        assert locked.execute("SELECT 2").fetchall() == [(2,)]
        locked.close()
        async with aiosqlite.connect(str(tmp_path / "l.db"), factory=Locked) as db:
            assert await db.execute_fetchall("SELECT 3") == [(3,)]
    # Without their database's name (refused); SELECT 3 twice: by aiosqlite's side, and by
    # its thread's connection, which could not be told to stay quiet.
    assert [(e.data["statement"], e.data["database"]) for e in starts(captured.events)] == [
        ("SELECT 2", None), ("SELECT 3", None), ("SELECT 3", None)]
    # Counted: the subclass refused (1), the name refused (2), the quiet flag refused (at
    # each aiosqlite call that sent SQL or reached the connection: 1 or more).
    assert ascope.stats().internal_errors - errors_before >= 4


def test_odd_factories_are_left_to_sqlite3(tmp_path: Path) -> None:
    """A cursor factory or connection factory that is an unhashable callable (``__eq__``
    without ``__hash__``) works as without ascope, and ``cursor(None)`` fails as it does
    without ascope."""
    class CursorFactory:
        def __eq__(self, other: object) -> bool:
            return self is other

        def __call__(self, connection: Any) -> Any:
            return sqlite3.Cursor(connection)

    class ConnectionFactory(CursorFactory):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return sqlite3.Connection(*args, **kwargs)

    connection = sqlite3.connect(str(tmp_path / "u.db"), factory=ConnectionFactory())
    assert type(connection.cursor(CursorFactory())) is sqlite3.Cursor
    connection.close()
    recording = sqlite3.connect(str(tmp_path / "r.db"))
    assert isinstance(recording, ascope.integrations.sqlite.Connection)
    assert type(recording.cursor(CursorFactory())) is sqlite3.Cursor
    with pytest.raises(TypeError, match="not callable"):
        recording.cursor(None)
    recording.close()


@pytest.mark.asyncio
async def test_sqlite3_error_is_recorded_and_raised_unchanged(tmp_path: Path) -> None:
    """A failing statement raises sqlite3's own exception; the query records it."""
    connection = sqlite3.connect(str(tmp_path / "e.db"))
    async with capture() as captured:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            connection.execute("SELECT * FROM missing")
    connection.close()
    (query,) = starts(captured.events)
    assert completion(captured.events, query).data["error"] == "OperationalError"
    (error,) = [e for e in captured.events if e.kind == "error"]
    assert error.correlation_id == query.correlation_id
    assert error.data["message"] == "no such table: missing"


@pytest.mark.asyncio
async def test_aiosqlite_queries_carry_the_awaiting_tasks_correlation(tmp_path: Path) -> None:
    """aiosqlite runs sqlite3 on its own thread, which does not copy the context; the
    queries are still children of the awaiting task's operation, with its task id, and
    are reported once (not again from the thread)."""
    path = str(tmp_path / "async.db")
    async with aiosqlite.connect(path) as db:
        await db.execute("CREATE TABLE t (n INTEGER)")
        await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
        await db.commit()

        async def worker(number: int) -> int | None:
            operation = runtime.report_function_entry("app", f"worker{number}")
            rows = await db.execute_fetchall("SELECT n FROM t WHERE n >= ?", (number,))
            async with db.execute("SELECT count(*) FROM t") as cursor:
                await cursor.fetchone()
            runtime.report_function_exit(operation)
            assert len(list(rows)) == 4 - number
            return operation

        async with capture() as captured:
            operations = await asyncio.gather(worker(1), worker(2))

    entries = {e.correlation_id: e for e in captured.events if e.kind == "function_entry"}
    assert len(starts(captured.events)) == 4
    for number, operation in enumerate(operations, start=1):
        mine = [e for e in starts(captured.events) if e.parent_id == operation]
        assert [(e.data["metadata"]["call"], e.data["statement"]) for e in mine] == [
            ("execute_fetchall", "SELECT n FROM t WHERE n >= ?"),
            ("execute", "SELECT count(*) FROM t"),
        ]
        assert mine[0].data["params"] == [number]
        assert mine[0].data["metadata"]["driver"] == "aiosqlite"
        assert mine[0].data["database"] == path
        assert {e.task_id for e in mine} == {entries[operation].task_id}
        assert completion(captured.events, mine[0]).data["rows"] == 4 - number


@pytest.mark.asyncio
async def test_aiosqlite_error_is_recorded_and_raised_unchanged(tmp_path: Path) -> None:
    """A failing aiosqlite statement raises sqlite3's exception to the awaiting task; its
    query records the error under that task."""
    async with aiosqlite.connect(str(tmp_path / "e.db")) as db, capture() as captured:
        with pytest.raises(sqlite3.OperationalError):
            await db.execute("SELEC nothing")
    (query,) = starts(captured.events)
    assert completion(captured.events, query).data["error"] == "OperationalError"
    assert query.task_id is not None


@pytest.mark.asyncio
async def test_disable_puts_sqlite3_connect_back(tmp_path: Path) -> None:
    """``disable("sqlite")`` restores ``sqlite3.connect`` itself, and connections opened
    while the integration was on stop recording."""
    opened_before = sqlite3.connect(str(tmp_path / "d.db"))
    ascope.integrations.disable("sqlite")
    assert sqlite3.connect is sqlite3.dbapi2.connect
    assert type(sqlite3.connect).__name__ == "builtin_function_or_method"
    async with capture() as captured:
        later: Any = sqlite3.connect(str(tmp_path / "d.db"))
        assert type(later) is sqlite3.Connection
        later.execute("SELECT 1")
        opened_before.execute("SELECT 2")
        async with aiosqlite.connect(str(tmp_path / "d.db")) as db:
            await db.execute("SELECT 3")
    later.close()
    opened_before.close()
    assert starts(captured.events) == []


@pytest.mark.asyncio
async def test_the_n_plus_one_example_in_the_docs_runs() -> None:
    """The N+1 example of docs/databases.md runs as written (its asserts included)."""
    text = (Path(__file__).parents[2] / "docs" / "databases.md").read_text()
    block = text.split("<!-- example: n-plus-one", 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/databases.md", "exec"), namespace)
    assert len(namespace["queries"]) == 4
    namespace["db"].close()


def test_aiosqlite_is_correlated_on_every_loop_kind(
        run: Callable[[Coroutine[Any, Any, Any]], Any], tmp_path: Path) -> None:
    """On asyncio, uvloop and (3.12+) the eager task factory, aiosqlite queries from
    concurrent tasks nest under their own task's operation."""
    async def scenario() -> None:
        async with aiosqlite.connect(str(tmp_path / "loops.db")) as db:
            async def worker(number: int) -> int | None:
                operation = runtime.report_function_entry("app", f"worker{number}")
                await db.execute_fetchall("SELECT ?", (number,))
                runtime.report_function_exit(operation)
                return operation

            async with capture() as captured:
                operations = await asyncio.gather(*(worker(n) for n in range(3)))
        for number, operation in enumerate(operations):
            (query,) = [e for e in starts(captured.events) if e.parent_id == operation]
            assert query.data["params"] == [number]

    run(scenario())


@pytest.mark.asyncio
async def test_ascopes_own_store_is_not_recorded(tmp_path: Path) -> None:
    """The SQLite sink's and the store's connections are opened by ascope itself: they are
    left alone, so ascope's own writes never appear in (or feed) the traces."""
    from ascope.sinks import _sqlite as sink

    async with capture() as captured:
        connection = sink.connect(str(tmp_path / "store.db"))
        connection.execute("SELECT count(*) FROM events")
        mine = sqlite3.connect(str(tmp_path / "app.db"))
        mine.execute("SELECT 1")
    connection.close()
    mine.close()
    assert type(connection) is sqlite3.Connection
    assert [e.data["statement"] for e in starts(captured.events)] == ["SELECT 1"]


@pytest.mark.asyncio
async def test_a_statement_where_capture_is_off_for_the_task_captures_nothing(
        tmp_path: Path) -> None:
    """Under ``disabled()`` (and in a request left out by ``sample_rate``, which runs the
    same way) a statement is run as it is: no event, and no time spent capturing its
    text and parameters for nothing (a parameter's ``repr`` tells when it is captured)."""
    captured_reprs: list[str] = []

    class Spy:
        def __init__(self, name: str) -> None:
            self.name = name

        def __conform__(self, protocol: Any) -> str:  # how sqlite3 binds it
            return self.name

        def __repr__(self) -> str:
            captured_reprs.append(self.name)
            return f"Spy({self.name})"

    connection = sqlite3.connect(str(tmp_path / "app.db"))
    async with capture() as captured:
        with ascope.disabled():
            assert connection.execute("SELECT ?", (Spy("off"),)).fetchone() == ("off",)
        assert connection.execute("SELECT ?", (Spy("on"),)).fetchone() == ("on",)
    assert captured_reprs == ["on"]
    ((spy,),) = [e.data["params"] for e in starts(captured.events)]
    assert spy["$repr"] == "Spy(on)"
    connection.close()
