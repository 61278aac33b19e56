"""The bundled demo: a small Starlette service, served by uvicorn on 127.0.0.1, driven by
real HTTP and websocket clients, captured into the embedded SQLite store.

Run it with ``ascope demo`` (or ``scripts/demo``). What it shows: one trace per request
with the endpoint, the instrumented calls, the SQLite queries and the tasks spawned on the
way; a websocket session as a channel with one operation per message.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import tempfile
from typing import Any

import ascope


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _make_database(path: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript(
            """
            DROP TABLE IF EXISTS users;
            CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, password TEXT);
            INSERT INTO users VALUES (1, 'ada', 's3cret'), (2, 'grace', 'hunter2');
            DROP TABLE IF EXISTS orders;
            CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, total REAL);
            INSERT INTO orders VALUES (1, 1, 9.5), (2, 1, 20.0), (3, 2, 4.25);
            """
        )


def build_app(database: str) -> Any:
    """The demo service: users, their orders, a report fan-out and an echo websocket."""
    import aiosqlite
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    @ascope.instrument
    async def load_user(user_id: int) -> dict[str, Any] | None:
        async with aiosqlite.connect(database) as db:
            cursor = await db.execute("SELECT id, name FROM users WHERE id = ?", (user_id,))
            row = await cursor.fetchone()
        return None if row is None else {"id": row[0], "name": row[1]}

    @ascope.instrument
    async def order_total(user_id: int) -> float:
        async with aiosqlite.connect(database) as db:
            cursor = await db.execute("SELECT total FROM orders WHERE user_id = ?", (user_id,))
            rows = await cursor.fetchall()
        total = 0.0
        for (amount,) in rows:
            total += amount
        return total

    async def user(request: Any) -> JSONResponse:
        user_id = int(request.path_params["user_id"])
        found = await load_user(user_id)
        if found is None:
            return JSONResponse({"error": "no such user"}, status_code=404)
        found["total"] = await order_total(user_id)
        return JSONResponse(found)

    async def report(request: Any) -> JSONResponse:
        totals = await asyncio.gather(order_total(1), order_total(2))
        return JSONResponse({"totals": totals})

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_text():
            await websocket.send_text(message.upper())

    return Starlette(routes=[
        Route("/users/{user_id:int}", user),
        Route("/report", report),
        WebSocketRoute("/ws", echo),
    ])


async def drive(app: Any) -> None:
    """Serve ``app`` with uvicorn on 127.0.0.1 and send it real traffic."""
    import httpx
    import uvicorn
    import websockets

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn offers no event for this  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in ("/users/1", "/users/2", "/users/9", "/report"):
                response = await client.get(path)
                print(f"  GET {path} -> {response.status_code} {response.text}")
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as websocket:
            for text in ("hello", "ascope"):
                await websocket.send(text)
                print(f"  websocket {text!r} -> {await websocket.recv()!r}")
    finally:
        server.should_exit = True
        await serving


def run(database_path: str = "ascope-demo.db") -> int:
    """Run the demo, capture into ``database_path`` and print what was captured."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(database_path + suffix):
            os.remove(database_path + suffix)
    with tempfile.TemporaryDirectory() as directory:
        data = os.path.join(directory, "shop.db")
        _make_database(data)
        ascope.configure(sinks=[f"sqlite:{database_path}"])
        print(f"Serving the demo on 127.0.0.1, capturing into {database_path}")
        app = ascope.install(build_app(data))
        asyncio.run(drive(app))
        ascope.shutdown()
    from .cli import show

    return show(database_path)
