"""Live sessions: a pyview-web LiveView under real uvicorn, driven over its Phoenix-protocol
websocket by a real ``websockets`` client, inside AscopeMiddleware."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ascope.integrations import live
from ascope.integrations.asgi import AscopeMiddleware

import ascope
import ascope.testing

from .conftest import by_kind, one, serve, tree_of

pyview = pytest.importorskip("pyview")
from pyview import LiveView, PyView  # noqa: E402
from pyview.csrf import generate_csrf_token  # noqa: E402
from websockets.sync.client import connect  # noqa: E402


class Rendered:
    """A minimal rendered tree in Phoenix LiveView's format: statics and one dynamic."""

    def __init__(self, count: int) -> None:
        self.count = count

    def tree(self) -> dict[str, Any]:
        return {"s": ["<p>", "</p>"], "0": str(self.count)}

    def text(self, socket: Any = None) -> str:
        return f"<p>{self.count}</p>"


@ascope.instrument
def clamp(value: int) -> int:
    return min(value, 10)


class CounterView(LiveView[dict[str, Any]]):
    async def mount(self, socket: Any, session: Any) -> None:
        socket.context = {"count": 0, "api_token": "s3cr3t"}

    async def handle_event(self, event: str, payload: Any, socket: Any) -> None:
        if event == "increment":
            socket.context["count"] = clamp(socket.context["count"] + int(payload["by"]))
        elif event == "explode":
            raise ValueError("bad event")

    async def render(self, assigns: Any, meta: Any) -> Rendered:
        return Rendered(assigns["count"])


def make_app() -> PyView:
    app = PyView()
    app.add_live_view("/counter", CounterView)
    app.add_middleware(AscopeMiddleware, enable=False, integrations=False)
    return app


@pytest.fixture(scope="module")
def server() -> Any:
    try:
        with serve(make_app()) as running:
            yield running
    finally:
        live.unwrap_pyview()


def join_message(server: Any, topic: str) -> str:
    return json.dumps(["1", "1", topic, "phx_join", {
        "url": server.url("/counter"), "params": {"_csrf_token": generate_csrf_token(topic)}}])


def event_message(topic: str, ref: str, event: str, value: Any) -> str:
    return json.dumps(["1", ref, topic, "event", {"type": "click", "event": event,
                                                  "value": value}])


def test_http_render_mounts_the_view_inside_the_request(server: Any) -> None:
    """The first (HTTP) render mounts the view: the mount is inside the request's tree,
    with the assigns it produced (sensitive keys redacted)."""
    with ascope.testing.capture() as captured:
        response = httpx.get(server.url("/counter"))
        server.settle()
    assert response.status_code == 200 and "<p>0</p>" in response.text
    start = one(captured.events, "http_request_start", path="/counter")
    tree = tree_of(captured.events, start.correlation_id)
    mount = one(tree, "live_mount_start")
    assert mount.data["view"].endswith("CounterView")
    assert mount.data["params"] == {"connected": False}
    done = one(tree, "live_mount_complete")
    assert done.correlation_id == mount.correlation_id
    assert done.data["assigns"] == {"count": 0, "api_token": "[redacted]"}


def test_live_session_events_record_assigns_before_and_after(server: Any) -> None:
    """Over the websocket: the join message mounts the view; each event message holds one
    live event with the handler's own call and the assigns before and after."""
    topic = "lv:phx-spec1"
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/live/websocket")) as ws:
            ws.send(join_message(server, topic))
            reply = json.loads(ws.recv(timeout=5))
            assert reply[3] == "phx_reply" and reply[4]["status"] == "ok"
            for ref, by in (("2", 3), ("3", 4)):
                ws.send(event_message(topic, ref, "increment", {"by": by}))
                assert json.loads(ws.recv(timeout=5))[4]["status"] == "ok"
        server.settle()
    join = one(captured.events, "channel_join_start", path="/live/websocket")
    tree = tree_of(captured.events, join.correlation_id)
    messages = by_kind(tree, "channel_message_start")
    assert len(messages) == 3
    mount = one(tree, "live_mount_start")
    assert mount.parent_id == messages[0].correlation_id
    assert mount.data["params"] == {"connected": True}
    events = by_kind(tree, "live_event_start")
    assert [e.parent_id for e in events] == [m.correlation_id for m in messages[1:]]
    assert [e.data["event"] for e in events] == ["increment", "increment"]
    assert [e.data["params"] for e in events] == [{"by": 3}, {"by": 4}]
    assert [e.data["assigns"]["count"] for e in events] == [0, 3]
    changes = by_kind(tree, "live_assigns")
    assert [(c.data["before"]["count"], c.data["after"]["count"]) for c in changes] == [
        (0, 3), (3, 7)]
    assert all(c.data["after"]["api_token"] == "[redacted]" for c in changes)
    completes = by_kind(tree, "live_event_complete")
    assert [c.data["assigns"]["count"] for c in completes] == [3, 7]
    for event in events:
        call = one(tree_of(tree, event.correlation_id), "function_entry")
        assert call.data["function"].endswith("clamp")
    assert "s3cr3t" not in repr([e.data for e in captured.events])


def test_live_event_error_is_recorded_inside_the_event(server: Any) -> None:
    """A handler that raises: an error inside the live event, which completes with the
    exception's type; pyview then closes the socket as it would without ascope."""
    topic = "lv:phx-spec2"
    with ascope.testing.capture() as captured:
        with connect(server.ws_url("/live/websocket")) as ws:
            ws.send(join_message(server, topic))
            ws.recv(timeout=5)
            ws.send(event_message(topic, "2", "explode", {}))
            with pytest.raises(Exception):  # noqa: B017 - closed or reset, either is fine
                ws.recv(timeout=5)
        server.settle()
    event = one(captured.events, "live_event_start", event="explode")
    inside = tree_of(captured.events, event.correlation_id)
    error = one(inside, "error")
    assert error.data["type"] == "ValueError" and error.correlation_id == event.correlation_id
    assert one(inside, "live_event_complete").data["result"] == {"raised": "ValueError"}
