"""``ascope.integrations.enable`` / ``disable``: names, idempotence, exact undo, laziness."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import ascope.integrations as integrations
import pytest

import ascope
from ascope.testing import capture

asyncpg = pytest.importorskip("asyncpg")
httpx = pytest.importorskip("httpx")
sqlalchemy = pytest.importorskip("sqlalchemy")
aiosqlite = pytest.importorskip("aiosqlite")

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402


@pytest.fixture(autouse=True)
def _all_off() -> Iterator[None]:
    integrations.disable()
    yield
    integrations.disable()


def originals() -> dict[str, Any]:
    """Everything an integration replaces, as it is right now."""
    return {
        "sqlite3.connect": sqlite3.connect,
        "sqlite3.dbapi2.connect": sqlite3.dbapi2.connect,
        "aiosqlite._execute": aiosqlite.core.Connection.__dict__["_execute"],
        "asyncpg.fetch": asyncpg.connection.Connection.__dict__["fetch"],
        "asyncpg.execute": asyncpg.connection.Connection.__dict__["execute"],
        "asyncpg.prepared.fetch": asyncpg.prepared_stmt.PreparedStatement.__dict__["fetch"],
        "httpx.sync": httpx.HTTPTransport.__dict__["handle_request"],
        "httpx.async": httpx.AsyncHTTPTransport.__dict__["handle_async_request"],
    }


def sqlalchemy_listening() -> bool:
    from ascope.integrations import sqlalchemy as integration

    return event.contains(Engine, "before_cursor_execute", integration._before_cursor_execute)


def test_enable_without_names_turns_on_every_installed_integration() -> None:
    """``enable()`` switches on all integrations whose library is importable and says so."""
    assert integrations.known() == ("asyncpg", "httpx", "sqlalchemy", "sqlite")
    assert integrations.available() == integrations.known()
    assert integrations.enable() == frozenset(integrations.known())
    assert integrations.enabled() == frozenset(integrations.known())
    assert sqlalchemy_listening()


def test_disable_restores_every_original_exactly() -> None:
    """After enable + disable, each patched function is the very object it was before
    and the SQLAlchemy listeners are gone."""
    before = originals()
    integrations.enable()
    during = originals()
    assert all(during[name] is not before[name] for name in before)
    assert integrations.disable() == frozenset()
    after = originals()
    assert all(after[name] is before[name] for name in before)
    assert not sqlalchemy_listening()


def test_enabling_twice_wraps_once() -> None:
    """A second ``enable`` changes nothing: each function is wrapped once, and one
    ``disable`` restores the original."""
    before = originals()
    integrations.enable("sqlite", "httpx", "asyncpg")
    once = originals()
    integrations.enable("sqlite", "httpx", "asyncpg")
    integrations.enable()
    twice = originals()
    assert all(twice[name] is once[name] for name in once)
    assert all(getattr(once[name], "__ascope_original__", None) is before[name]
               for name in once)
    integrations.disable()
    assert originals() == before


def test_disable_by_name_leaves_the_others_on() -> None:
    """``disable("httpx")`` turns off httpx only."""
    before = originals()
    integrations.enable("httpx", "sqlite")
    assert integrations.disable("httpx") == frozenset({"sqlite"})
    now = originals()
    assert now["httpx.async"] is before["httpx.async"]
    assert now["sqlite3.connect"] is not before["sqlite3.connect"]


@pytest.mark.parametrize("call", [integrations.enable, integrations.disable])
def test_unknown_names_raise_configuration_error(call: Any) -> None:
    """A misspelt name raises ``ascope.ConfigurationError`` naming the known ones, and
    nothing is switched on or off."""
    integrations.enable("sqlite")
    with pytest.raises(ascope.ConfigurationError, match=r"'sqlitee'.*asyncpg, httpx"):
        call("httpx", "sqlitee")
    assert integrations.enabled() == frozenset({"sqlite"})


def test_a_wrapper_stacked_on_top_is_not_torn_down() -> None:
    """If another library wraps a method after ascope did, ``disable`` keeps their
    wrapper (and ours beneath it, switched off): nothing is recorded any more, and
    their wrapper still runs."""
    integrations.enable("sqlite")
    ours = sqlite3.connect
    calls = []

    def theirs(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return ours(*args, **kwargs)

    sqlite3.connect = theirs
    try:
        integrations.disable("sqlite")
        assert sqlite3.connect is theirs
        with capture() as captured:
            connection = sqlite3.connect(":memory:")
            connection.execute("SELECT 1")
            connection.close()
        assert calls and [e for e in captured.events if e.kind == "query_start"] == []
    finally:
        sqlite3.connect = ours.__ascope_original__  # type: ignore[attr-defined]
        sqlite3.dbapi2.connect = sqlite3.connect


def test_importing_ascope_imports_no_integrated_library() -> None:
    """Integration modules load only when enabled: ``import ascope.integrations`` pulls in
    none of the libraries they wrap."""
    code = ("import sys, ascope, ascope.integrations; "
            "print(sorted(m for m in ('sqlalchemy', 'asyncpg', 'httpx', 'aiosqlite') "
            "if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    assert output.strip() == "[]"


_LAZY = """
import json, logging, sys
import ascope.integrations as registry
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
libraries = ("sqlalchemy", "asyncpg", "httpx")
on = registry.enable()
report = {"enabled": sorted(on), "imported": [m for m in libraries if m in sys.modules]}
registry.disable("asyncpg")
import sqlalchemy  # the program imports it: installed now
report["installed after import"] = sorted(registry._enabled)
def broken():
    raise AttributeError("moved")
sys.modules["ascope.integrations.httpx"] = type(sys)("stand-in")
sys.modules["ascope.integrations.httpx"].install = broken
import httpx  # its integration fails to install: logged, the import goes on
import asyncpg  # disabled before its import: nothing installed
report["finally"] = sorted(registry._enabled)
report["on"] = sorted(registry.enabled())
print(json.dumps(report))
"""


def test_enable_without_names_installs_each_integration_when_its_library_is_imported(
) -> None:
    """``enable()`` imports no library the program has not imported: each integration is
    installed when the program imports its library, unless disabled before; one that
    fails to install then is logged, and the program's import goes on."""
    import json

    done = subprocess.run([sys.executable, "-c", _LAZY], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    *logs, last = done.stdout.strip().splitlines()
    report = json.loads(last)
    assert report["enabled"] == ["asyncpg", "httpx", "sqlalchemy", "sqlite"]
    assert report["imported"] == []
    assert report["installed after import"] == ["sqlalchemy", "sqlite"]
    assert report["finally"] == ["sqlalchemy", "sqlite"]
    assert report["on"] == ["sqlalchemy", "sqlite"]
    assert any("'httpx' could not be enabled" in line for line in logs), logs


_RACE = """
import sys, threading
sys.setswitchinterval(1e-6)  # thread switches as often as they can come
import ascope.integrations as registry
def depth():
    import httpx
    handle, n = httpx.HTTPTransport.__dict__["handle_request"], 0
    while hasattr(handle, "__ascope_original__"):
        n, handle = n + 1, handle.__ascope_original__
    return n
registry.enable()
importer = threading.Thread(target=lambda: __import__("httpx"))
importer.start()  # its import runs the hook, which installs the integration
while "httpx" in registry._waiting:  # until the hook takes it up
    pass
registry.enable("httpx")  # by name, meanwhile
importer.join()
print(depth(), sorted(registry.disable()), depth())
"""


def test_an_import_racing_a_named_enable_installs_once_and_disables_cleanly() -> None:
    """The post-import hook and a named ``enable()`` in another thread install the
    integration once (a second install would wrap it twice and record every request
    twice), with no deadlock between their import locks; ``disable()`` undoes it.

    The race is a matter of timing: a helper's review showed the earlier code wrapping
    twice in 74 of 200 runs made 8 at a time; these 4 processes run at once, for the same
    contention."""
    runs = [subprocess.Popen([sys.executable, "-c", _RACE], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for run in runs:  # a fresh process each: the race is on the first import
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        assert out.split("\n")[0] == "1 [] 0", out + err
        assert "could not be enabled" not in out + err


_LATE = """
import importlib, sys, wrapt
import ascope.integrations as registry
register = wrapt.register_post_import_hook
def late(hook, name):  # another thread's import lands between the look and the hook
    importlib.import_module(name)
    return register(hook, name)  # the library is there: wrapt runs the hook at once
wrapt.register_post_import_hook = late
registry.enable()
print(sorted(registry._enabled))
"""


def test_a_library_imported_while_enable_looks_is_installed_without_a_deadlock() -> None:
    """wrapt runs a hook at once when its library is already imported; ``enable()``
    registers hooks without holding the lock the hook takes."""
    done = subprocess.run([sys.executable, "-c", _LATE], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['asyncpg',", "'httpx',", "'sqlalchemy',", "'sqlite']"]


def test_an_integration_that_cannot_install(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """One that fails to install (its library's internals moved) raises
    ConfigurationError when named, and is logged and skipped by ``enable()`` — the others
    are enabled and the service starts."""
    import ascope.integrations.httpx as integration

    def broken() -> None:
        raise AttributeError("HTTPTransport has no attribute handle_request")

    monkeypatch.setattr(integration, "install", broken)
    with pytest.raises(ascope.ConfigurationError, match="'httpx' could not be enabled"):
        integrations.enable("httpx")
    assert integrations.enabled() == frozenset()
    with caplog.at_level("WARNING", logger="ascope"):
        assert integrations.enable() == frozenset({"asyncpg", "sqlalchemy", "sqlite"})
    assert "integration 'httpx' could not be enabled" in caplog.text
