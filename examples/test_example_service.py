"""Testing what a service did, not only what it returned: a copyable example.

Run it with ``pytest examples/`` (from the repository root). The plugin comes with
ascope (no conftest needed); ``ascope_events`` holds everything the test did — requests,
endpoint calls, queries, tasks — read at any point of the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from service import create_app
from starlette.applications import Starlette

from ascope.pytest_plugin import AscopeEvents
from ascope.testing import assert_called, assert_no_errors, assert_queries, assert_tree

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def app() -> Starlette:
    # Module-scoped: created once; what it does while being set up (the schema, the
    # rows) is shared set-up and belongs to no test's events.
    return create_app()


@pytest_asyncio.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_get_user_runs_one_query(client: httpx.AsyncClient,
                                       ascope_events: AscopeEvents) -> None:
    """Fetching a user runs exactly one query, from fetch_user, under the endpoint."""
    response = await client.get("/users/1")
    assert response.json() == {"id": 1, "name": "ada"}
    assert_queries(ascope_events, request="/users/1", count=1)
    assert_called(ascope_events, "service:fetch_user", times=1, parent="service:get_user")
    assert_called(ascope_events, "service:notify", times=1)  # in a task the endpoint spawned
    assert_no_errors(ascope_events)


async def test_the_fast_listing_is_one_query(client: httpx.AsyncClient,
                                             ascope_events: AscopeEvents) -> None:
    """The listing with ?fast=1 reads every user with one query."""
    await client.get("/users", params={"fast": 1})
    assert_queries(ascope_events, request="/users", count=1)


async def test_the_slow_listing_has_an_n_plus_one(client: httpx.AsyncClient,
                                                  ascope_events: AscopeEvents) -> None:
    """The default listing issues one query per user: assert_queries catches it."""
    await client.get("/users")
    with pytest.raises(AssertionError, match=r"issued 4 queries, expected 1"):
        assert_queries(ascope_events, request="/users", count=1)
    assert_called(ascope_events, "service:fetch_user", times=3)


async def test_the_call_tree(client: httpx.AsyncClient, ascope_events: AscopeEvents) -> None:
    """The shape of what a request did: patterns match at any depth, in order."""
    await client.get("/users/2")
    assert_tree(ascope_events, {
        "GET /users/2": {
            "service:fetch_user": {"query SELECT id, name FROM users WHERE id = ?": {}},
            "task notify": {"service:notify": {}},
        },
    })


EXPECTED = """\
GET /users/3 -> 200
  endpoint service.get_user
    call service:fetch_user
      query SELECT id, name FROM users WHERE id = ?
    task notify
      call service:notify"""


@pytest.mark.ascope(deterministic=True)
async def test_snapshot(client: httpx.AsyncClient, ascope_events: AscopeEvents) -> None:
    """A rendered tree compared with stored text (deterministic: same text every run)."""
    await client.get("/users/3")
    assert ascope_events.render() == EXPECTED


async def test_a_missing_user_is_not_an_error(client: httpx.AsyncClient,
                                              ascope_events: AscopeEvents) -> None:
    """A 404 is an answer, not a failure: assert_no_errors passes; the status is there."""
    await client.get("/users/99")
    assert_no_errors(ascope_events)
    assert ascope_events.only("http_request_complete").data["status"] == 404
