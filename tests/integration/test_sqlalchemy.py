"""SQLAlchemy integration: async engine on PostgreSQL (asyncpg), sync engine on a SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import ascope.integrations
import pytest
import pytest_asyncio

import ascope
from ascope import runtime
from ascope.testing import capture

from ._postgres import postgres_dsn as postgres_dsn
from ._postgres import postgres_url as postgres_url

sqlalchemy = pytest.importorskip("sqlalchemy")
pytest.importorskip("asyncpg")
pytest.importorskip("greenlet")

from sqlalchemy import ForeignKey, create_engine, event, select, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

pytestmark = pytest.mark.asyncio


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Book(Base):
    __tablename__ = "sa_books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_authors.id"))
    title: Mapped[str]


@pytest.fixture(autouse=True)
def _integrations_on() -> Iterator[None]:
    # The drivers' own integrations are on too: a statement must still be reported once.
    ascope.integrations.enable("sqlalchemy", "asyncpg", "sqlite")
    yield
    ascope.integrations.disable()


@pytest_asyncio.fixture
async def engine(postgres_url: str) -> AsyncIterator[Any]:
    # NullPool: each test runs on a loop of its own, and pooled asyncpg connections are
    # bound to the loop that opened them.
    engine = create_async_engine(postgres_url, poolclass=NullPool)
    with ascope.disabled():
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


def starts(events: list[ascope.Event]) -> list[ascope.Event]:
    return [event for event in events if event.kind == "query_start"]


def completion(events: list[ascope.Event], start: ascope.Event) -> ascope.Event:
    (event,) = [e for e in events
                if e.kind == "query_complete" and e.correlation_id == start.correlation_id]
    return event


async def test_async_engine_query_nests_under_the_operation_once(engine: Any) -> None:
    """A statement sent through the async engine is one query, a child of the awaiting
    operation, with SQLAlchemy's named parameters and the row count; the asyncpg
    integration underneath does not report it a second time."""
    async with capture() as captured:
        operation = runtime.report_function_entry("app", "handler")
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT generate_series(1, :n) AS x"),
                                              {"n": 3})
            values = result.scalars().all()
        runtime.report_function_exit(operation)
    assert values == [1, 2, 3]
    mine = [e for e in starts(captured.events) if "generate_series" in str(e.data["statement"])]
    assert len(mine) == 1
    (query,) = mine
    assert query.parent_id == operation
    assert query.data["statement"] == "SELECT generate_series(1, $1) AS x"
    assert query.data["params"] == {"n": 3}
    assert query.data["metadata"] == {"system": "postgresql", "driver": "asyncpg",
                                      "library": "sqlalchemy", "executemany": False}
    done = completion(captured.events, query)
    assert done.data["rows"] == 3 and done.data["error"] is None
    assert done.data["duration_ns"] > 0


async def test_concurrent_tasks_get_their_own_queries(engine: Any) -> None:
    """SQLAlchemy runs its events in a greenlet; each query still lands under the
    operation of the task that awaited it, with that task's id, while tasks overlap."""
    async def worker(number: int) -> int | None:
        operation = runtime.report_function_entry("app", f"worker{number}")
        async with AsyncSession(engine) as session:
            await session.execute(text("SELECT pg_sleep(0.05), CAST(:n AS integer) AS n"),
                                  {"n": number})
        runtime.report_function_exit(operation)
        return operation

    async with capture() as captured:
        operations = await asyncio.gather(worker(1), worker(2), worker(3))
    entries = {e.correlation_id: e for e in captured.events if e.kind == "function_entry"}
    for number, operation in enumerate(operations, start=1):
        (query,) = [e for e in starts(captured.events)
                    if "pg_sleep" in str(e.data["statement"]) and e.parent_id == operation]
        assert query.data["params"] == {"n": number}
        assert query.task_id == entries[operation].task_id
        assert completion(captured.events, query).task_id == query.task_id


async def test_n_plus_one_shows_as_one_plus_n_queries(engine: Any) -> None:
    """The classic N+1: one query for the authors, then one per author for their books —
    all children of the handler, so counting them exposes the pattern."""
    with ascope.disabled():
        async with AsyncSession(engine) as session:
            session.add_all([Author(id=i, name=f"author {i}") for i in range(1, 4)])
            await session.flush()
            session.add_all([Book(id=i, author_id=1 + i % 3, title=f"book {i}")
                             for i in range(1, 7)])
            await session.commit()

    async with capture() as captured:
        operation = runtime.report_function_entry("app", "list_books")
        async with AsyncSession(engine) as session:
            authors = (await session.scalars(select(Author).order_by(Author.id))).all()
            for author in authors:
                await session.scalars(select(Book).where(Book.author_id == author.id))
        runtime.report_function_exit(operation)

    selects = [e for e in starts(captured.events)
               if e.parent_id == operation and str(e.data["statement"]).startswith("SELECT")]
    assert len(selects) == 1 + 3
    assert "FROM sa_authors" in selects[0].data["statement"]
    assert all("FROM sa_books" in e.data["statement"] for e in selects[1:])
    assert [e.data["params"] for e in selects[1:]] == [
        {"author_id_1": 1}, {"author_id_1": 2}, {"author_id_1": 3}]
    assert [completion(captured.events, e).data["rows"] for e in selects] == [3, 2, 2, 2]


async def test_failed_statement_records_the_error_and_raises_it_unchanged(engine: Any) -> None:
    """A constraint violation raises SQLAlchemy's IntegrityError as without ascope; the
    query completes with the driver error's type, the message is in an ``error`` event."""
    async with capture() as captured:
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO sa_books VALUES (1, 999, 'x')"))
    (query,) = [e for e in starts(captured.events) if "sa_books" in str(e.data["statement"])]
    done = completion(captured.events, query)
    assert done.data["error"] == "AsyncAdapt_asyncpg_dbapi.ForeignKeyViolationError"
    (error,) = [e for e in captured.events
                if e.kind == "error" and e.correlation_id == query.correlation_id]
    assert "foreign key" in error.data["message"]
    assert runtime.current_correlation_id() is None


async def test_sync_api_on_the_async_engine_is_correlated(engine: Any) -> None:
    """``run_sync`` runs plain sync SQLAlchemy code on the async engine: its queries are
    children of the awaiting operation too."""
    def count_authors(connection: Any) -> int:
        return int(connection.execute(text("SELECT count(*) FROM sa_authors")).scalar_one())

    async with capture() as captured:
        operation = runtime.report_function_entry("app", "count")
        async with engine.connect() as connection:
            assert await connection.run_sync(count_authors) == 0
        runtime.report_function_exit(operation)
    (query,) = [e for e in starts(captured.events) if "count(*)" in str(e.data["statement"])]
    assert query.parent_id == operation


async def test_sync_engine_on_a_sqlite_file(tmp_path: Path) -> None:
    """A sync engine on a SQLite file, used from a worker thread (``asyncio.to_thread``
    copies the context): queries nest under the operation that sent the work there,
    once each even though the sqlite3 integration sees them too."""
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}", poolclass=NullPool)

    def work() -> list[Any]:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
            connection.execute(text("INSERT INTO notes (body) VALUES (:body)"),
                               [{"body": "a"}, {"body": "b"}])
            return list(connection.execute(text("SELECT body FROM notes")).scalars())

    async with capture() as captured:
        operation = runtime.report_function_entry("app", "notes")
        assert await asyncio.to_thread(work) == ["a", "b"]
        runtime.report_function_exit(operation)
    engine.dispose()

    # The dialect's first-connect PRAGMAs are not cursor executions: the sqlite3
    # integration reports them. Everything the test sent goes through SQLAlchemy.
    queries = [e for e in starts(captured.events) if not e.data["statement"].startswith("PRAGMA")]
    statements = [e.data["statement"] for e in queries]
    assert statements == ["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
                          "INSERT INTO notes (body) VALUES (?)", "SELECT body FROM notes"]
    assert all(e.parent_id == operation for e in queries)
    assert queries[1].data["params"] == [{"body": "a"}, {"body": "b"}]
    assert queries[1].data["metadata"]["executemany"] is True
    assert queries[0].data["database"] == str(tmp_path / "app.db")
    assert [completion(captured.events, e).data["rows"] for e in queries] == [None, 2, None]


async def test_async_engine_on_a_sqlite_file_with_aiosqlite(tmp_path: Path) -> None:
    """The aiosqlite dialect: one query per statement, under the awaiting operation, its
    parameters by name, so one called ``password`` is redacted."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}",
                                 poolclass=NullPool)
    async with capture() as captured:
        operation = runtime.report_function_entry("app", "handler")
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT :x + 1, :password"),
                                              {"x": 1, "password": "hunter2"})
            assert result.one() == (2, "hunter2")
        runtime.report_function_exit(operation)
    await engine.dispose()
    (query,) = [e for e in starts(captured.events) if "+ 1" in str(e.data["statement"])]
    assert query.parent_id == operation
    assert query.data["metadata"]["driver"] == "aiosqlite"
    assert query.data["params"] == {"x": 1, "password": "[redacted]"}
    assert completion(captured.events, query).data["rows"] == 1


async def test_disable_removes_the_listeners(engine: Any) -> None:
    """``disable("sqlalchemy")`` removes its event listeners: nothing is recorded for
    statements sent afterwards."""
    from ascope.integrations import sqlalchemy as integration

    ascope.integrations.disable("sqlalchemy", "asyncpg")
    assert not event.contains(Engine, "before_cursor_execute",
                              integration._before_cursor_execute)
    async with capture() as captured, engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    assert starts(captured.events) == []


@pytest.mark.asyncio
async def test_queries_of_a_served_request_hang_under_its_endpoint(
        engine: Any, postgres_url: str) -> None:
    """End to end: uvicorn serving a Starlette app behind AscopeMiddleware, its handler
    doing 1 + N ORM queries on PostgreSQL. Every query is a child of the endpoint, inside
    the request's tree, in the request's trace and task."""
    from ascope.integrations.asgi import AscopeMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from .conftest import serve, tree_of

    with ascope.disabled():
        async with AsyncSession(engine) as session:
            session.add_all([Author(id=i, name=f"author {i}") for i in (1, 2)])
            await session.commit()

    async def list_authors(request: Request) -> JSONResponse:
        books = {}
        async with AsyncSession(engine) as session:
            for author in (await session.scalars(select(Author).order_by(Author.id))).all():
                found = await session.scalars(select(Book).where(Book.author_id == author.id))
                books[author.name] = [book.title for book in found]
        return JSONResponse(books)

    app = AscopeMiddleware(Starlette(routes=[Route("/authors", list_authors)]), enable=False)
    with serve(app) as server:
        async with capture() as captured:
            response = await asyncio.to_thread(httpx_get, server.url("/authors"))
            await asyncio.to_thread(server.settle)
    assert response == {"author 1": [], "author 2": []}

    (request,) = [e for e in captured.events if e.kind == "http_request_start"]
    (endpoint,) = [e for e in captured.events if e.kind == "endpoint_entry"]
    tree = tree_of(captured.events, request.correlation_id)  # type: ignore[arg-type]
    everything = [e for e in tree if e.kind == "query_start"]
    queries = [e for e in everything if e.data["metadata"].get("library") == "sqlalchemy"]
    assert len(queries) == 1 + 2
    assert all(e.parent_id == endpoint.correlation_id for e in queries)
    assert {e.trace_id for e in everything} == {request.trace_id}
    assert {e.task_id for e in queries} == {endpoint.task_id}
    # The rest is asyncpg's own transaction control when the session gives its
    # connection back, also inside the request.
    assert {e.data["statement"] for e in everything if e not in queries} <= {
        "ROLLBACK;", "COMMIT;", "BEGIN;"}
    done = {e.correlation_id for e in tree if e.kind == "query_complete"}
    assert done == {e.correlation_id for e in everything}


def httpx_get(url: str) -> Any:
    import httpx

    return httpx.get(url, timeout=10).json()


@pytest.mark.asyncio
async def test_a_statement_where_capture_is_off_for_the_task_is_not_described(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``disabled()`` (as in a request left out by ``sample_rate``) SQLAlchemy's
    statement runs without ascope describing its connection or capturing parameters."""
    from ascope.integrations import sqlalchemy as integration

    described: list[Any] = []
    real = integration._describe
    monkeypatch.setattr(integration, "_describe",
                        lambda *args: described.append(args) or real(*args))
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    async with capture() as captured:
        with ascope.disabled(), engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 2")).scalar() == 2
    engine.dispose()
    assert len(described) == 1
    assert [e.data["statement"] for e in captured.events
            if e.kind == "query_start"] == ["SELECT 2"]
