"""A real PostgreSQL server for the integration tests, and a fresh database per session.

The server is found at ``ASCOPE_TEST_PG_DSN`` (a libpq URL of a role that may create
databases), else at ``postgresql://postgres:postgres@127.0.0.1:5432/postgres`` — what
``.ci/run`` starts (Debian's ``postgresql`` package, see docs/databases.md). The session
creates a database of its own, ``ascope_test_<pid>_<random>``, and drops it at the end.

No server reachable: the tests that need one are skipped, with the reason, on a
developer's machine; with ``CI=true`` they fail, because a CI run that skipped every
database test would pass without testing anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["postgres_dsn", "postgres_url"]

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
HOW_TO_START = (
    "start one with `apt-get install -y postgresql && pg_ctlcluster 15 main start && "
    "su postgres -c \"psql -c \\\"alter user postgres password 'postgres';\\\"\"` (as root), "
    "or point ASCOPE_TEST_PG_DSN at a server"
)

T = TypeVar("T")


def admin_dsn() -> str:
    return os.environ.get("ASCOPE_TEST_PG_DSN") or DEFAULT_DSN


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a loop of its own, in a thread: no test loop is disturbed."""
    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=60)


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _unavailable(reason: str) -> Any:
    message = f"PostgreSQL is not reachable at {_redacted(admin_dsn())}: {reason}; {HOW_TO_START}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A libpq URL of a fresh, empty database on a real PostgreSQL server."""
    try:
        import asyncpg  # noqa: F401 - the driver the set-up itself uses
    except ImportError:
        _unavailable("asyncpg is not installed")
    admin = admin_dsn()
    database = f"ascope_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        _run(lambda: _admin(admin, f'CREATE DATABASE "{database}"'))
    except Exception as error:
        _unavailable(f"{type(error).__name__}: {error}")
    try:
        yield with_database(admin, database)
    finally:
        try:
            _run(lambda: _admin(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        except Exception:  # the server went away: nothing left to clean
            pass


@pytest.fixture(scope="session")
def postgres_url(postgres_dsn: str) -> str:
    """The same database as a SQLAlchemy URL for the asyncpg dialect."""
    return postgres_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
