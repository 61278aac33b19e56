"""A tiny user service to show ascope's test helpers: Starlette, SQLite, ``ascope.install``.

``GET /users/{id}`` runs one query; ``GET /users`` has the classic N+1 bug (one query for
the ids, then one per user); ``GET /users?fast=1`` does it in one query.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import ascope.integrations
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import ascope

USERS = [(1, "ada"), (2, "grace"), (3, "edsger")]


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?)", USERS)
    return db


@ascope.instrument
def fetch_user(db: sqlite3.Connection, user_id: int) -> dict[str, Any] | None:
    row = db.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else {"id": row[0], "name": row[1]}


@ascope.instrument
def fetch_user_ids(db: sqlite3.Connection) -> list[int]:
    return [row[0] for row in db.execute("SELECT id FROM users ORDER BY id")]


@ascope.instrument
def fetch_all_users(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = db.execute("SELECT id, name FROM users ORDER BY id").fetchall()
    return [{"id": user_id, "name": name} for user_id, name in rows]


@ascope.instrument
async def notify(user_id: int) -> None:
    await asyncio.sleep(0)  # stands for a call to another service


def database(request: Request) -> sqlite3.Connection:
    return request.app.state.db  # type: ignore[no-any-return]


async def get_user(request: Request) -> JSONResponse:
    user = fetch_user(database(request), request.path_params["user_id"])
    if user is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    await asyncio.create_task(notify(user["id"]))
    return JSONResponse(user)


async def list_users(request: Request) -> JSONResponse:
    db = database(request)
    if request.query_params.get("fast"):
        return JSONResponse(fetch_all_users(db))
    return JSONResponse([fetch_user(db, user_id) for user_id in fetch_user_ids(db)])


def create_app() -> Starlette:
    app = Starlette(routes=[Route("/users/{user_id:int}", get_user),
                            Route("/users", list_users)])
    ascope.install(app)  # requests and endpoints (and database drivers, at the first request)
    # The sqlite3 integration records connections opened after it is on: switch it on
    # now, since the connection is opened before the first request.
    ascope.integrations.enable("sqlite")
    app.state.db = connect()
    return app
