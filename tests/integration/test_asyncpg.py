"""asyncpg integration against a real PostgreSQL: connections, pools, prepared statements."""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import socket
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import ascope.integrations
import pytest
import pytest_asyncio

import ascope
from ascope import runtime
from ascope.testing import capture

from ._postgres import postgres_dsn as postgres_dsn

asyncpg = pytest.importorskip("asyncpg")



@pytest.fixture(autouse=True)
def _asyncpg_on() -> Iterator[None]:
    ascope.integrations.enable("asyncpg")
    yield
    ascope.integrations.disable()


@pytest_asyncio.fixture
async def connection(postgres_dsn: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture
async def table(connection: Any) -> AsyncIterator[str]:
    name = f"items_{secrets.token_hex(4)}"
    with ascope.disabled():
        await connection.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, label text)")
    yield name
    with ascope.disabled():
        await connection.execute(f"DROP TABLE {name}")


def queries(events: list[ascope.Event], kind: str = "query_start") -> list[ascope.Event]:
    return [event for event in events if event.kind == kind]


def by_id(events: list[ascope.Event], correlation_id: int) -> dict[str, ascope.Event]:
    return {event.kind: event for event in events if event.correlation_id == correlation_id}


@pytest.mark.asyncio
async def test_connection_queries_nest_under_the_calling_operation(
        connection: Any, table: str, postgres_dsn: str) -> None:
    """Each query method records start and completion (statement, arguments, database,
    rows, duration) as a child of the operation that awaited it."""
    async with capture() as captured:
        operation = runtime.report_function_entry("app", "handler")
        status = await connection.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "one")
        await connection.executemany(f"INSERT INTO {table} VALUES ($1, $2)",
                                     [(2, "two"), (3, "three")])
        rows = await connection.fetch(f"SELECT * FROM {table} WHERE id >= $1", 2)
        row = await connection.fetchrow(f"SELECT * FROM {table} WHERE id = $1", 99)
        value = await connection.fetchval(f"SELECT count(*) FROM {table}")
        runtime.report_function_exit(operation)
    assert (status, len(rows), row, value) == ("INSERT 0 1", 2, None, 3)

    starts = queries(captured.events)
    assert [event.data["metadata"]["call"] for event in starts] == [
        "execute", "executemany", "fetch", "fetchrow", "fetchval"]
    assert all(event.parent_id == operation for event in starts)
    assert starts[0].data["statement"] == f"INSERT INTO {table} VALUES ($1, $2)"
    assert starts[0].data["params"] == [1, "one"]
    assert starts[1].data["params"] == [[2, "two"], [3, "three"]]
    assert starts[0].data["database"] == postgres_dsn.rpartition("/")[2]
    assert starts[0].data["metadata"]["system"] == "postgresql"
    completes = [by_id(captured.events, event.correlation_id)["query_complete"]
                 for event in starts]
    assert [event.data["rows"] for event in completes] == [1, None, 2, 0, None]
    assert all(event.data["error"] is None for event in completes)
    assert all(isinstance(event.data["duration_ns"], int) and event.data["duration_ns"] > 0
               for event in completes)


@pytest.mark.asyncio
async def test_pool_queries_belong_to_the_task_that_ran_them(postgres_dsn: str) -> None:
    """Queries through a pool, from concurrent tasks, each nest under their own task's
    operation (the pool's proxy reaches the wrapped connection methods)."""
    pool = await asyncpg.create_pool(postgres_dsn, min_size=2, max_size=2)
    try:
        async def worker(number: int) -> tuple[int | None, Any]:
            operation = runtime.report_function_entry("app", f"worker{number}")
            value = await pool.fetchval("SELECT $1::int, pg_sleep(0.05)", number)
            async with pool.acquire() as connection:
                await connection.fetch("SELECT $1::int AS n", number)
            runtime.report_function_exit(operation)
            return operation, value

        async with capture() as captured:
            results = await asyncio.gather(worker(1), worker(2))
    finally:
        await pool.close()

    for number, (operation, value) in zip((1, 2), results, strict=True):
        assert value == number
        mine = [event for event in queries(captured.events) if event.parent_id == operation]
        statements = [event.data["statement"] for event in mine]
        assert "SELECT $1::int, pg_sleep(0.05)" in statements
        assert "SELECT $1::int AS n" in statements
        assert all(event.data["params"] == [number] for event in mine
                   if event.data["params"] is not None)
        entry = by_id(captured.events, operation)["function_entry"]  # type: ignore[arg-type]
        assert {event.task_id for event in mine} == {entry.task_id}


@pytest.mark.asyncio
async def test_failed_query_records_the_error_and_raises_it_unchanged(
        connection: Any, table: str) -> None:
    """A query that fails raises the driver's own exception; the completion names its
    type and an ``error`` event inside the query keeps the message."""
    await connection.execute(f"INSERT INTO {table} VALUES (1, 'one')")
    async with capture() as captured:
        with pytest.raises(asyncpg.UniqueViolationError) as raised:
            await connection.execute(f"INSERT INTO {table} VALUES (1, 'again')")
    (start,) = queries(captured.events)
    events = by_id(captured.events, start.correlation_id)  # type: ignore[arg-type]
    assert events["query_complete"].data["error"] == "UniqueViolationError"
    assert events["query_complete"].data["rows"] is None
    assert events["error"].data["message"] == str(raised.value)
    assert events["error"].data["source"] == "query"


@pytest.mark.asyncio
async def test_prepared_statements_and_copy_are_recorded(connection: Any, table: str) -> None:
    """A prepared statement's executions carry its query text; COPY counts its rows."""
    async with capture() as captured:
        copied = await connection.copy_records_to_table(
            table, records=[(10, "a"), (11, "b"), (12, "c")])
        statement = await connection.prepare(f"SELECT label FROM {table} WHERE id > $1")
        labels = await statement.fetch(10)
    assert copied == "COPY 3" and [row["label"] for row in labels] == ["b", "c"]
    starts = queries(captured.events)
    assert [event.data["metadata"]["call"] for event in starts] == [
        "copy_records_to_table", "prepared.fetch"]
    assert starts[0].data["statement"] == f"COPY {table} FROM STDIN"
    assert starts[1].data["statement"] == f"SELECT label FROM {table} WHERE id > $1"
    assert starts[1].data["params"] == [10]
    rows = [by_id(captured.events, event.correlation_id)["query_complete"].data["rows"]
            for event in starts]
    assert rows == [3, 2]


@pytest.mark.asyncio
async def test_prepared_statement_capture_is_decided_where_it_is_awaited(
        connection: Any) -> None:
    """A prepared statement's call returns a coroutine; whether its query is recorded is
    decided in the task that awaits it, when it does, as for the connection's methods:
    made under ``disabled()`` (or in a task left out) and awaited with capture on, it is
    recorded; made with capture on and awaited under ``disabled()``, it is not."""
    statement = await connection.prepare("SELECT $1::int")

    async def made_in_a_quiet_task() -> Any:
        with ascope.disabled():
            return statement.fetchval(3)

    async with capture() as captured:
        operation = runtime.report_function_entry("app", "handler")
        with ascope.disabled():
            made_quiet = statement.fetchval(1)
        made_loud = statement.fetchrow(2)
        from_quiet_task = await asyncio.create_task(made_in_a_quiet_task())
        assert await made_quiet == 1
        with ascope.disabled():
            assert (await made_loud)[0] == 2
        assert await from_quiet_task == 3
        runtime.report_function_exit(operation)
    starts = queries(captured.events)
    assert [(e.data["metadata"]["call"], e.data["params"]) for e in starts] == [
        ("prepared.fetchval", [1]), ("prepared.fetchval", [3])]
    assert all(event.parent_id == operation for event in starts)


@pytest.mark.asyncio
async def test_prepared_statement_never_run_warns_as_without_ascope(connection: Any) -> None:
    """A prepared statement's coroutine whose task is cancelled before it starts, or that
    is closed, ends without a word, captured or not; one never awaited warns once, under
    the driver's name: all as without ascope."""
    statement = await connection.prepare("SELECT 1")

    async def never_run() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            task = asyncio.create_task(statement.fetchval())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            statement.fetch().close()
            del task
            gc.collect()
        return [str(warning.message) for warning in caught]

    async with capture():
        assert await never_run() == []
        with ascope.disabled():
            assert await never_run() == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        statement.fetchrow()  # never awaited
        gc.collect()
    assert [str(warning.message) for warning in caught] == [
        "coroutine 'PreparedStatement.fetchrow' was never awaited"]


@pytest.mark.asyncio
async def test_cursor_round_trips_are_recorded(connection: Any) -> None:
    """Iterating a cursor records one query per batch it fetches, and a scrollable
    cursor one for opening it and one per ``fetch``; each carries the cursor's query."""
    query = "SELECT n FROM generate_series(1, $1) AS n"
    async with capture() as captured, connection.transaction():
        seen = [row["n"] async for row in connection.cursor(query, 5, prefetch=2)]
        cursor = await connection.cursor(query, 3)
        first = await cursor.fetch(2)
    assert seen == [1, 2, 3, 4, 5] and [row["n"] for row in first] == [1, 2]
    mine = [e for e in queries(captured.events) if e.data["statement"] == query]
    calls = [e.data["metadata"]["call"] for e in mine]
    assert calls == ["cursor.fetch"] * 3 + ["cursor.open", "cursor.fetch"]
    assert mine[0].data["params"] == [5] and mine[3].data["params"] == [3]
    rows = [by_id(captured.events, e.correlation_id)["query_complete"].data["rows"]
            for e in mine]
    assert rows == [2, 2, 1, None, 2]


@pytest.mark.asyncio
async def test_cancelled_query_is_closed_and_the_cancellation_propagates(
        connection: Any) -> None:
    """Cancelling a task mid-query ends the query operation (error CancelledError) and the
    task is cancelled exactly as without ascope; its context is left clean."""
    async def slow() -> None:
        await connection.execute("SELECT pg_sleep(10)")

    async with capture() as captured:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (start,) = queries(captured.events)
    complete = by_id(captured.events, start.correlation_id)["query_complete"]  # type: ignore
    assert complete.data["error"] == "CancelledError"
    assert runtime.current_correlation_id() is None


@pytest.mark.asyncio
async def test_nothing_is_recorded_once_disabled(connection: Any) -> None:
    """After ``disable`` the connection class has its own methods back and queries are not
    recorded, while capture itself is on."""
    ascope.integrations.disable("asyncpg")
    assert not hasattr(asyncpg.connection.Connection.fetch, "__ascope_original__")
    async with capture() as captured:
        assert await connection.fetchval("SELECT 1") == 1
    assert queries(captured.events) == []


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
@pytest.mark.asyncio
async def test_an_unreachable_server_skips_locally_and_fails_in_ci(
        tmp_path: Path, ci: str, outcome: str) -> None:
    """Without a reachable server the PostgreSQL fixture skips with the reason on a
    developer's machine, and fails when ``CI=true``: CI never passes without these tests."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "test_probe.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from _postgres import postgres_dsn\n"
        "def test_needs_postgres(postgres_dsn):\n"
        "    pass\n")
    environment = {**os.environ, "CI": ci,
                   "ASCOPE_TEST_PG_DSN": f"postgresql://postgres:postgres@127.0.0.1:{port}/x"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
        "-p", "no:ascope", str(tmp_path / "test_probe.py"), cwd=tmp_path, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert outcome in output, output
    assert f"PostgreSQL is not reachable at postgresql://127.0.0.1:{port}/x" in output
    assert "pg_ctlcluster" in output  # says how to start one


def test_pool_queries_are_correlated_on_every_loop_kind(
        run: Callable[[Coroutine[Any, Any, Any]], Any], postgres_dsn: str) -> None:
    """On asyncio, uvloop and (3.12+) the eager task factory, pool queries made by
    concurrent tasks nest under their own task's operation."""
    async def scenario() -> None:
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=3)
        try:
            async def worker(number: int) -> int | None:
                operation = runtime.report_function_entry("app", f"worker{number}")
                assert await pool.fetchval("SELECT $1::int", number) == number
                runtime.report_function_exit(operation)
                return operation

            async with capture() as captured:
                operations = await asyncio.gather(*(worker(n) for n in range(3)))
        finally:
            await pool.close()
        for number, operation in enumerate(operations):
            (query,) = [e for e in queries(captured.events)
                        if e.data["statement"] == "SELECT $1::int" and e.parent_id == operation]
            assert query.data["params"] == [number]

    run(scenario())


@pytest.mark.asyncio
async def test_wrapped_methods_keep_their_shape(connection: Any) -> None:
    """Wrapped methods keep name, signature and kind: coroutine functions stay coroutine
    functions, and a prepared statement's guard still raises at call time, before any
    await, as without ascope."""
    import inspect

    for name in ("fetch", "execute", "copy_to_table"):
        method = getattr(asyncpg.connection.Connection, name)
        original = method.__ascope_original__
        assert method.__name__ == name
        assert inspect.signature(method) == inspect.signature(original)
        assert inspect.iscoroutinefunction(method)
    fetch = asyncpg.prepared_stmt.PreparedStatement.fetch
    assert not inspect.iscoroutinefunction(fetch)
    statement = await connection.prepare("SELECT 1")
    await connection.close()
    with pytest.raises(asyncpg.InterfaceError):
        statement.fetch()  # raises here, not when awaited
