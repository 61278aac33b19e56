"""The pytest plugin, run the way users run it: a fresh pytest session (``pytester``) with
the plugin loaded from its ``pytest11`` entry point, under pytest-asyncio (strict and auto
modes, function/module/session loops) and anyio's plugin (asyncio and uvloop backends).

Each inner session runs with ``filterwarnings = error`` and ``--strict-markers``, as this
project's own suite does. Most run in-process (fast); the ones that must prove something
about a fresh interpreter (entry-point loading, xdist workers) run in a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
{extra}
"""

# A tiny service: a pure-ASGI middleware reporting requests (what ascope.install does with
# more detail), a view, a "database" call reporting its query.
APP = '''
import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from ascope import runtime as rt


def reporting(app):
    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        cid = rt.report_http_request_start(scope["method"], scope["path"])
        status = {}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            rt.report_http_request_complete(cid, status.get("code", 500))

    return middleware


async def fetch_user(user_id):
    cid = rt.report_function_entry("app.db", "fetch_user", {"user_id": user_id})
    query = rt.report_query_start("SELECT * FROM users WHERE id = ?", [user_id])
    await asyncio.sleep(0)
    rt.report_query_complete(query, rows=1)
    rt.report_function_exit(cid, {"id": user_id})
    return {"id": user_id}


async def get_user(request):
    cid = rt.report_function_entry("app.views", "get_user")
    user = await fetch_user(int(request.path_params["user_id"]))
    rt.report_function_exit(cid)
    return JSONResponse(user)


async def list_users(request):
    cid = rt.report_function_entry("app.views", "list_users")
    users = [await fetch_user(i) for i in range(3)]  # the N+1 pattern
    rt.report_function_exit(cid)
    return JSONResponse(users)


app = reporting(Starlette(routes=[Route("/users/{user_id:int}", get_user),
                                  Route("/users", list_users)]))
'''


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory holding the service module and the strict ini."""
    pytester.makepyfile(service=APP)
    pytester.makeini(INI.format(extra=""))
    return pytester


def _ini(pytester: pytest.Pytester, extra: str) -> None:
    pytester.makeini(INI.format(extra=extra))


def test_entry_point_is_declared() -> None:
    """The plugin is reachable through the ``pytest11`` entry point named ``ascope``."""
    found = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "ascope"]
    assert [e.value for e in found] == ["ascope.pytest_plugin"]


def test_fresh_process_loads_plugin_and_marker(inner: pytest.Pytester) -> None:
    """In a new interpreter with no conftest, ``ascope_events`` and ``@pytest.mark.ascope``
    exist (the marker passes --strict-markers) and capture a test's calls."""
    inner.makepyfile(test_fresh="""
        import pytest
        from ascope import runtime as rt

        @pytest.mark.ascope(deterministic=True)
        def test_sync(ascope_events):
            cid = rt.report_function_entry("app.x", "work")
            rt.report_function_exit(cid)
            assert ascope_events.render() == "call app.x:work"
            assert ascope_events.only("function_entry").correlation_id == 1
    """)
    result = inner.runpytest_subprocess()
    result.assert_outcomes(passed=1)


ASYNCIO_TESTS = """
    import asyncio
    import httpx
    import pytest
    import pytest_asyncio
    from ascope import runtime as rt
    from ascope.testing import assert_called, assert_no_errors, assert_queries, assert_tree
    from service import app

    {marker}
    async def helper_fixture():
        cid = rt.report_function_entry("tests.fixtures", "helper")
        rt.report_function_exit(cid)
        yield "ok"

    {marker}
    async def client():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c

    async def background():
        cid = rt.report_function_entry("app.jobs", "background")
        await asyncio.sleep(0)
        rt.report_function_exit(cid)

    {test_marker}
    async def test_captures_everything(helper_fixture, client, ascope_events):
        task = asyncio.create_task(background())
        response = await client.get("/users/1")
        await task
        assert response.json() == {{"id": 1}}
        assert_called(ascope_events, "tests.fixtures:helper", times=1)
        assert_called(ascope_events, "app.jobs:background", times=1)
        assert_called(ascope_events, "app.db:fetch_user", times=1, parent="app.views:get_user")
        assert_queries(ascope_events, request="/users/1", count=1)
        assert_tree(ascope_events, {{"task background": {{"app.jobs:background": {{}}}},
                                    "GET /users/1": {{"app.views:get_user": {{}}}}}})
        assert_no_errors(ascope_events)
        # The runner's own tasks are not the test's doing.
        assert "test_captures_everything" not in ascope_events.render()
        assert type(asyncio.get_running_loop()).__module__.split(".")[0] in (
            "asyncio", "uvloop")

    {test_marker}
    async def test_second_test_sees_only_its_own(client, ascope_events):
        await client.get("/users/2")
        assert [node.short for node in ascope_events.requests()] == ["GET /users/2"]
        assert_called(ascope_events, "tests.fixtures:helper", times=0)
"""


LOOP_FACTORIES = """
import asyncio

import uvloop


def pytest_asyncio_loop_factories(config, item):
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_asyncio_modes(inner: pytest.Pytester, mode: str) -> None:
    """Under pytest-asyncio (strict and auto mode, on asyncio and uvloop loops) the fixture
    holds the test body's calls, its async fixtures' calls, its tasks and the ASGI app's
    request tree, and no other test's."""
    _ini(inner, f"asyncio_mode = {mode}")
    inner.makeconftest(LOOP_FACTORIES)
    strict = mode == "strict"
    inner.makepyfile(test_modes=ASYNCIO_TESTS.format(
        marker="@pytest_asyncio.fixture" if strict else "@pytest.fixture",
        test_marker="@pytest.mark.asyncio" if strict else ""))
    result = inner.runpytest("-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_captures_everything[[]uvloop[]] PASSED*"])


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_anyio_backends(inner: pytest.Pytester, backend: str) -> None:
    """Under anyio's plugin, on asyncio and on uvloop, including a module-scoped async
    fixture that keeps anyio's runner task alive across tests."""
    option = '"asyncio"' if backend == "asyncio" else '("asyncio", {"use_uvloop": True})'
    inner.makepyfile(test_anyio=f"""
        import asyncio
        import httpx
        import pytest
        from ascope import runtime as rt
        from ascope.testing import assert_called, assert_queries
        from service import app

        pytestmark = pytest.mark.anyio

        @pytest.fixture(scope="module")
        def anyio_backend():
            return {option}

        @pytest.fixture(scope="module")
        async def client():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                yield c

        @pytest.fixture
        async def per_test():
            cid = rt.report_function_entry("tests.fixtures", "per_test")
            rt.report_function_exit(cid)

        async def test_first(client, per_test, ascope_events):
            await client.get("/users/1")
            assert_queries(ascope_events, request="/users/1", count=1)
            assert_called(ascope_events, "tests.fixtures:per_test", times=1)

        async def test_second(client, per_test, ascope_events):
            await client.get("/users/7")
            assert [n.short for n in ascope_events.requests()] == ["GET /users/7"]
            assert_called(ascope_events, "tests.fixtures:per_test", times=1)
            loop = type(asyncio.get_running_loop()).__module__
            assert loop.startswith({'"uvloop"' if backend == "uvloop" else '"asyncio"'})
    """)
    result = inner.runpytest()
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("loop_scope", ["module", "session"])
def test_shared_loops_and_a_task_left_running(inner: pytest.Pytester, loop_scope: str) -> None:
    """With a module- or session-scoped loop, a task one test leaves running keeps
    emitting on the shared loop; its events never reach the next test, whose own do."""
    inner.makepyfile(test_shared=f"""
        import asyncio
        import pytest
        from ascope import runtime as rt

        pytestmark = pytest.mark.asyncio(loop_scope="{loop_scope}")
        leftover = []

        async def ticker():
            while True:
                cid = rt.report_function_entry("tests.leftover", "tick")
                rt.report_function_exit(cid)
                await asyncio.sleep(0.001)

        async def test_leaves_a_task(ascope_events):
            leftover.append(asyncio.create_task(ticker()))
            await asyncio.sleep(0.02)
            assert len(ascope_events.calls("tests.leftover:tick")) > 1

        async def test_next_one_is_clean(ascope_events):
            assert not leftover[0].done()
            await asyncio.sleep(0.02)  # the ticker keeps running meanwhile
            cid = rt.report_function_entry("tests.mine", "own")
            rt.report_function_exit(cid)
            assert ascope_events.calls("tests.leftover:tick") == []
            assert len(ascope_events.calls("tests.mine:own")) == 1
            leftover[0].cancel()
    """)
    result = inner.runpytest()
    result.assert_outcomes(passed=2)


def test_anyio_task_left_running_by_a_fixture(inner: pytest.Pytester) -> None:
    """Under anyio, with the runner (and its loop) kept alive by a module-scoped fixture, a
    task that a function-scoped fixture leaves running belongs to that test only."""
    inner.makepyfile(test_anyio_leftover="""
        import asyncio
        import pytest
        from ascope import runtime as rt

        pytestmark = pytest.mark.anyio
        leftover = []

        @pytest.fixture(scope="module")
        def anyio_backend():
            return "asyncio"

        @pytest.fixture(scope="module")
        async def keeps_the_runner():
            yield

        async def ticker():
            while True:
                cid = rt.report_function_entry("tests.leftover", "tick")
                rt.report_function_exit(cid)
                await asyncio.sleep(0.001)

        @pytest.fixture
        async def starts_a_ticker():
            leftover.append(asyncio.get_running_loop().create_task(ticker()))
            yield

        async def test_first(keeps_the_runner, starts_a_ticker, ascope_events):
            await asyncio.sleep(0.02)
            assert len(ascope_events.calls("tests.leftover:tick")) > 1

        async def test_second(keeps_the_runner, ascope_events):
            await asyncio.sleep(0.02)
            assert not leftover[0].done()
            assert ascope_events.calls("tests.leftover:tick") == []
            leftover[0].cancel()
    """)
    inner.runpytest().assert_outcomes(passed=2)


def test_shared_fixture_setup_belongs_to_no_test(inner: pytest.Pytester) -> None:
    """What a module-scoped fixture does while being set up (during the first test's
    window) is not in that test's events; what the fixture's objects do later is."""
    inner.makepyfile(test_shared_setup="""
        import pytest
        import pytest_asyncio
        from ascope import runtime as rt

        class Cache:
            def get(self):
                cid = rt.report_function_entry("app.cache", "get")
                rt.report_function_exit(cid)

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def cache():
            cid = rt.report_function_entry("app.cache", "warm_up")
            rt.report_function_exit(cid)
            return Cache()

        @pytest.fixture(scope="module")
        def settings():
            cid = rt.report_function_entry("app.settings", "load")
            rt.report_function_exit(cid)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_first(settings, cache, ascope_events):
            cache.get()
            assert [n.name for n in ascope_events.calls()] == ["app.cache:get"]
            assert "app.cache:warm_up" in [n.name for n in ascope_events.raw().calls()]
    """)
    inner.runpytest().assert_outcomes(passed=1)


def test_fixtures_and_tests_as_methods(inner: pytest.Pytester) -> None:
    """Async fixtures and tests written as methods of a test class keep their instance
    (the wrapper stays a method pytest can rebind), under pytest-asyncio and anyio."""
    inner.makepyfile(test_methods="""
        import pytest
        import pytest_asyncio
        from ascope import runtime as rt

        class TestAsyncio:
            @pytest_asyncio.fixture
            async def resource(self):
                self.opened = True
                cid = rt.report_function_entry("tests.methods", "resource")
                rt.report_function_exit(cid)
                yield "r"

            @pytest.mark.asyncio
            async def test_method(self, resource, ascope_events):
                assert self.opened and resource == "r"
                assert [n.name for n in ascope_events.calls()] == ["tests.methods:resource"]

        @pytest.mark.anyio
        class TestAnyio:
            @pytest.fixture
            def anyio_backend(self):
                return "asyncio"

            @pytest.fixture
            async def resource(self):
                self.opened = True
                return "r"

            async def test_method(self, resource, ascope_events):
                assert self.opened and resource == "r"
    """)
    inner.runpytest().assert_outcomes(passed=2)


def test_real_server_in_a_session_fixture(inner: pytest.Pytester) -> None:
    """A uvicorn server on 127.0.0.1 started by a session-scoped async fixture (the same
    process and loop) serves two tests; each sees only the requests it made."""
    inner.makepyfile(test_server="""
        import asyncio
        import httpx
        import pytest
        import pytest_asyncio
        import uvicorn
        from ascope.testing import assert_queries
        from service import app

        pytestmark = pytest.mark.asyncio(loop_scope="session")

        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def base_url():
            config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error",
                                    lifespan="off")
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
            server.should_exit = True
            await task

        async def test_one(base_url, ascope_events):
            async with httpx.AsyncClient() as client:
                assert (await client.get(base_url + "/users/1")).status_code == 200
            assert [n.short for n in ascope_events.requests()] == ["GET /users/1"]
            assert_queries(ascope_events, request="/users/1", count=1)

        async def test_two(base_url, ascope_events):
            async with httpx.AsyncClient() as client:
                await client.get(base_url + "/users")
            assert [n.short for n in ascope_events.requests()] == ["GET /users"]
            assert_queries(ascope_events, request="/users", count=3)
    """)
    result = inner.runpytest()
    result.assert_outcomes(passed=2)


def test_server_in_another_thread_and_sync_test(inner: pytest.Pytester) -> None:
    """A server running its own loop in another thread: a sync test's reads flush that
    loop's ring too, so the request it just made is there."""
    inner.makepyfile(test_thread="""
        import threading
        import time
        import httpx
        import pytest
        import uvicorn
        from service import app

        @pytest.fixture(scope="module")
        def base_url():
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                   log_level="error", lifespan="off"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.01)
            yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            server.should_exit = True
            thread.join(5)

        @pytest.mark.parametrize("user_id", [1, 2])
        def test_sync_client(base_url, user_id, ascope_events):
            assert httpx.get(f"{base_url}/users/{user_id}").status_code == 200
            assert [n.short for n in ascope_events.requests()] == [f"GET /users/{user_id}"]
    """)
    result = inner.runpytest()
    result.assert_outcomes(passed=2)


def test_failures_read_well(inner: pytest.Pytester) -> None:
    """A failing assertion prints what was expected and the tree of what happened."""
    inner.makepyfile(test_fail="""
        import httpx
        import pytest
        from ascope.testing import assert_queries, assert_tree
        from service import app

        @pytest.mark.asyncio
        async def test_n_plus_one(ascope_events):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                await c.get("/users")
            assert_queries(ascope_events, request="/users", count=1)

        @pytest.mark.asyncio
        async def test_wrong_tree(ascope_events):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                await c.get("/users/1")
            assert_tree(ascope_events, {"GET /users/1": {"app.views:get_user": {
                "app.cache:lookup": {}}}})
    """)
    result = inner.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*AssertionError: request 'GET /users' issued 3 queries, expected 1",
        "*3 x SELECT * FROM users WHERE id = ?",
        "*an N+1 query?*",
        "*GET /users -> 200",
        "*call app.views:list_users",
    ])
    result.stdout.fnmatch_lines([
        "*tree does not match: nothing under 'app.views:get_user' matches 'app.cache:lookup'*",
        "*-    app.cache:lookup",
        "*+    app.db:fetch_user",
    ])


def test_deterministic_snapshot_is_stable(inner: pytest.Pytester) -> None:
    """With ``ascope_deterministic``, ids and timestamps are renumbered per test, so the
    rendering with ids is the same text in every test and every run."""
    _ini(inner, "ascope_deterministic = true")
    inner.makepyfile(test_snapshot="""
        import asyncio
        import httpx
        import pytest
        from service import app

        EXPECTED = '''\\
        GET /users/1 -> 200 #1
          call app.views:get_user #2
            call app.db:fetch_user #3
              query SELECT * FROM users WHERE id = ? -> 1 rows #4'''

        @pytest.mark.asyncio
        @pytest.mark.parametrize("attempt", range(3))
        async def test_snapshot(attempt, ascope_events):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                await c.get("/users/1")
            assert ascope_events.render(ids=True) == EXPECTED
            timestamps = [event.ts_ns for event in ascope_events]
            assert timestamps == list(range(len(timestamps)))
            assert {event.task_id for event in ascope_events} == {1}
    """)
    result = inner.runpytest()
    result.assert_outcomes(passed=3)


def test_marker_options(inner: pytest.Pytester) -> None:
    """The marker sets configure() options for one test and puts them back after;
    unknown options fail the test with the list of known ones."""
    inner.makepyfile(test_marker="""
        import pytest
        from ascope import _values
        from ascope import runtime as rt

        @pytest.mark.ascope(max_string=8)
        def test_short_strings(ascope_events):
            cid = rt.report_function_entry("m", "f", {"text": "x" * 100})
            rt.report_function_exit(cid)
            assert _values.SETTINGS.limits.max_string == 8
            text = ascope_events.only("function_entry").data["args"]["text"]
            assert len(text) < 20

        def test_restored_after():
            assert _values.SETTINGS.limits.max_string != 8

        @pytest.mark.ascope(colour="blue")
        def test_unknown_option(ascope_events):
            pass
    """)
    result = inner.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*unknown @pytest.mark.ascope option(s) [[]'colour'[]]*"])


def test_ini_instruments_packages_with_ast(inner: pytest.Pytester) -> None:
    """``ascope_instrument`` + ``ascope_ast`` instrument the named package before conftest
    and test modules import it: calls and branches are captured with no manual reports."""
    _ini(inner, "ascope_instrument = shop\nascope_ast = true")
    inner.mkpydir("shop")
    inner.path.joinpath("shop", "prices.py").write_text(textwrap.dedent("""
        def price(amount, member):
            if member:
                return discount(amount)
            return amount

        def discount(amount):
            return amount * 0.9
    """))
    inner.makeconftest("import shop.prices  # imported early, still instrumented\n")
    inner.makepyfile(test_shop="""
        from shop.prices import price
        from ascope.testing import assert_called, assert_tree

        def test_member_price(ascope_events):
            assert price(100, member=True) == 90
            assert_called(ascope_events, "shop.prices:discount", times=1,
                          parent="shop.prices:price")
            assert_tree(ascope_events, {"shop.prices:price": {"shop.prices:discount": {}}})
            branches = ascope_events.filter("branch_execution", function="price")
            assert [event.data["branch_taken"] for event in branches] == [True]
    """)
    inner.runpytest().assert_outcomes(passed=1)


def test_tests_without_the_fixture_capture_nothing(inner: pytest.Pytester) -> None:
    """Only tests that ask for ``ascope_events`` switch capture on."""
    inner.makepyfile(test_off="""
        import pytest
        import ascope

        def test_plain():
            assert not ascope.enabled()

        def test_with(ascope_events):
            assert ascope.enabled()
    """)
    inner.runpytest().assert_outcomes(passed=2)


def test_async_flush_and_raw_view(inner: pytest.Pytester) -> None:
    """``await ascope_events.flushed()`` reads without blocking the loop; ``raw()`` keeps
    the runner's own tasks that the default view leaves out."""
    inner.makepyfile(test_raw="""
        import pytest
        import pytest_asyncio
        from ascope import runtime as rt

        @pytest_asyncio.fixture
        async def first_on_the_loop():
            rt.report_event("fixture_ran", {})  # sets the loop up: later tasks are tracked

        @pytest.mark.asyncio
        async def test_flushed(first_on_the_loop, ascope_events):
            cid = rt.report_function_entry("m", "f")
            rt.report_function_exit(cid)
            snapshot = await ascope_events.flushed()
            assert snapshot.kinds() == ["fixture_ran", "function_entry", "function_exit"]
            raw_kinds = ascope_events.raw().kinds()
            assert "task_spawn" in raw_kinds
            assert "task_spawn" not in ascope_events.kinds()
    """)
    inner.runpytest().assert_outcomes(passed=1)


XDIST_TESTS = "\n".join(textwrap.dedent(f"""
        @pytest.mark.asyncio
        async def test_{i}(ascope_events):
            ascope.enable()  # as ascope.install(app) does: capture on, into the sinks
            for _ in range(3):
                cid = rt.report_function_entry("tests.x", "f{i}")
                await asyncio.sleep(0.001)
                rt.report_function_exit(cid)
            assert {{n.name for n in ascope_events.calls()}} == {{"tests.x:f{i}"}}
            assert len(ascope_events.calls()) == 3
    """) for i in range(8))


def test_xdist_workers_stay_apart(inner: pytest.Pytester) -> None:
    """Under pytest-xdist (two worker processes) each test sees exactly its own events,
    and code switching capture on globally writes no store file (none is configured)."""
    pytest.importorskip("xdist")
    inner.makepyfile(test_xdist="import asyncio\nimport pytest\nimport ascope\n"
                     "from ascope import runtime as rt\n" + XDIST_TESTS)
    result = inner.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=8)
    assert sorted(p.name for p in inner.path.iterdir() if "ascope" in p.name) == []


def test_session_sinks_per_xdist_worker(inner: pytest.Pytester) -> None:
    """``ascope_sinks`` with ``{worker}`` gives each xdist worker its own file: every
    event is written once, by the worker that ran the test."""
    pytest.importorskip("xdist")
    _ini(inner, "ascope_sinks = jsonl:events-{worker}.jsonl")
    inner.makepyfile(test_xdist="import asyncio\nimport pytest\nimport ascope\n"
                     "from ascope import runtime as rt\n" + XDIST_TESTS)
    result = inner.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=8)
    files = sorted(inner.path.glob("events-*.jsonl"))
    assert [f.name for f in files] == ["events-gw0.jsonl", "events-gw1.jsonl"]
    entries = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    calls = [e["data"]["function"] for e in entries if e["kind"] == "function_entry"]
    assert sorted(calls) == sorted(f"f{i}" for i in range(8) for _ in range(3))


ROOT = Path(__file__).resolve().parent.parent


def _doc_modules() -> dict[str, str]:
    """The Python blocks of docs/testing.md, by the file name on their first line."""
    text = (ROOT / "docs" / "testing.md").read_text()
    modules = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        first, _, body = block.partition("\n")
        assert re.fullmatch(r"# test_\w+\.py", first), f"unnamed docs block: {first!r}"
        modules[first[2:-3]] = body
    return modules


def test_docs_examples_run(inner: pytest.Pytester) -> None:
    """Every code block of docs/testing.md is a test module; they all pass, next to the
    example service."""
    modules = _doc_modules()
    assert len(modules) >= 6
    inner.makepyfile(service=(ROOT / "examples" / "service.py").read_text(), **modules)
    result = inner.runpytest()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= len(modules), result.stdout.str()
    result.assert_outcomes(passed=outcomes["passed"])


def test_example_test_file_runs(inner: pytest.Pytester) -> None:
    """``examples/test_example_service.py``, copied as a user would, passes."""
    inner.makepyfile(
        service=(ROOT / "examples" / "service.py").read_text(),
        test_example_service=(ROOT / "examples" / "test_example_service.py").read_text())
    inner.runpytest().assert_outcomes(passed=6)
