"""``ascope.instrument_packages``: the import hook, its patterns, exclusions and reports.

The sample application lives in tests/instrument_samples/ (put on sys.path per test);
every test imports it fresh and removes the hook and the modules afterwards.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import py_compile
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ascope
from ascope import _config
from ascope.instrument import (
    AlreadyImportedWarning,
    _hook,
    instrument_packages,
    uninstall_import_hook,
)
from ascope.instrument._decorator import is_instrumented
from ascope.testing import capture

SAMPLES = Path(__file__).parent / "instrument_samples"
APP = "ascope_sample_app"


def forget(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def samples_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(SAMPLES))
    forget(APP)
    yield
    uninstall_import_hook()
    forget(APP)


def entries(events: list[ascope.Event]) -> list[str]:
    return [e.data["function"] for e in events if e.kind == "function_entry"]


def test_plain_name_instruments_package_and_submodules() -> None:
    """"pkg" matches the package and every submodule: their functions, async functions,
    methods, class/static methods, properties and nested classes are instrumented."""
    handle = instrument_packages([APP])
    billing = importlib.import_module(f"{APP}.services.billing")
    services = importlib.import_module(f"{APP}.services")

    async def main() -> int:
        return await billing.charge(5)

    with capture() as captured:
        assert asyncio.run(main()) == 10
        ledger = billing.Ledger.empty()
        assert billing.Ledger.currency() == "EUR"
        assert ledger.doubled == 0
        assert billing.Ledger.Line().amount() == 1
        assert list(billing.lines(2)) == [0, 1]
        assert services.package_level() == "services"
    assert entries(captured.events) == [
        "charge", "Ledger.__init__", "Ledger.add",
        "Ledger.empty", "Ledger.__init__", "Ledger.currency", "Ledger.doubled",
        "Ledger.Line.amount", "lines", "lines", "lines", "package_level",
    ]
    assert set(handle.instrumented) >= {APP, f"{APP}.services", f"{APP}.services.billing"}
    assert handle.already_imported == ()


def test_glob_matches_only_what_it_names() -> None:
    """"pkg.services.*" instruments the submodules of pkg.services but neither that
    package's __init__ nor modules outside it."""
    instrument_packages(f"{APP}.services.*")
    billing = importlib.import_module(f"{APP}.services.billing")
    views = importlib.import_module(f"{APP}.views")
    services = importlib.import_module(f"{APP}.services")
    assert is_instrumented(billing.charge)
    assert not is_instrumented(views.render)
    assert not is_instrumented(services.package_level)


def test_decorators_above_receive_the_instrumented_function() -> None:
    """The hook adds its decorator closest to the def, so a registry decorator above it
    stores the instrumented function, and module code run at import calls instrumented
    functions too."""
    instrument_packages([APP])
    with capture() as at_import:
        views = importlib.import_module(f"{APP}.views")
    assert entries(at_import.events) == ["register", "render"]
    app = importlib.import_module(APP)
    assert app.REGISTRY["checkout"] is views.checkout
    assert is_instrumented(app.REGISTRY["checkout"])
    with capture() as captured:
        assert asyncio.run(app.REGISTRY["checkout"](1)) == {"total": 2}
    assert entries(captured.events)[:2] == ["checkout", "charge"]


def test_nested_functions_dunders_and_explicit_decorators() -> None:
    """Functions nested in functions and dunders such as __repr__ are left alone; a
    function with its own @instrument keeps that one (no second wrapper)."""
    instrument_packages([APP])
    views = importlib.import_module(f"{APP}.views")
    billing = importlib.import_module(f"{APP}.services.billing")
    with capture() as captured:
        assert views.with_helper(1) == 2
        assert repr(billing.Ledger()) == "Ledger(0)"
        assert views.explicit(3) == 3
    assert entries(captured.events) == ["with_helper", "Ledger.__init__", "views.explicit"]


def test_instrumented_module_keeps_source_lines_and_signatures() -> None:
    """inspect.getsource, first line numbers, signatures and string annotations (with
    `from __future__ import annotations`) are those of the file."""
    instrument_packages([APP])
    views = importlib.import_module(f"{APP}.views")
    source = (SAMPLES / APP / "views.py").read_text().splitlines()
    first_line = views.checkout.__wrapped__.__code__.co_firstlineno
    assert source[first_line - 1] == "@register"
    assert inspect.getsource(views.render).startswith("def render(name: str) -> str:")
    assert str(inspect.signature(views.checkout)) == "(amount: 'int') -> 'dict[str, int]'"
    assert inspect.iscoroutinefunction(views.checkout)
    assert views.checkout.__globals__ is vars(views)


def test_modules_imported_before_are_reported() -> None:
    """Matching modules imported before the call are named in an AlreadyImportedWarning
    and in already_imported, and are not instrumented."""
    views = importlib.import_module(f"{APP}.views")
    with pytest.warns(AlreadyImportedWarning, match=rf"{APP}\.views"):
        handle = instrument_packages([APP])
    assert f"{APP}.views" in handle.already_imported
    assert f"{APP}.services.billing" in handle.already_imported
    assert not is_instrumented(views.render)


def test_stdlib_and_site_packages_are_skipped_by_globs() -> None:
    """A wildcard pattern never instruments the standard library, site-packages or
    ascope; those decisions are made per module."""
    site_module = next((name for name in ("pygments", "idna", "certifi", "h11", "sniffio")
                        if importlib.util.find_spec(name) is not None), None)
    assert site_module is not None
    site_origin = importlib.util.find_spec(site_module).origin  # type: ignore[union-attr]
    assert not _hook._allowed(site_module, "*", site_origin)
    assert not _hook._allowed("colorsys", "*", None)
    assert not _hook._allowed("ascope.store", "*", ascope.store.__file__)
    assert _hook._allowed(APP, "*", str(SAMPLES / APP / "__init__.py"))
    assert _hook._allowed(site_module, site_module, site_origin)  # named explicitly
    assert _hook._allowed("colorsys", "colors*", None) is False  # top level is a glob
    assert _hook._allowed("ascope.integrations.asgi", "ascope.integrations", None)


def test_wildcard_import_of_stdlib_module_is_not_instrumented() -> None:
    """With "*" installed, importing a standard-library module leaves it untouched."""
    saved = sys.modules.pop("colorsys", None)
    try:
        with pytest.warns(AlreadyImportedWarning):  # the test's own modules match "*"
            instrument_packages("*")
        import colorsys
        assert not is_instrumented(colorsys.rgb_to_hsv)
    finally:
        uninstall_import_hook()
        sys.modules.pop("colorsys", None)
        if saved is not None:
            sys.modules["colorsys"] = saved


def test_stdlib_module_named_explicitly_is_instrumented() -> None:
    """Naming a standard-library module explicitly instruments it."""
    saved = sys.modules.pop("colorsys", None)
    try:
        instrument_packages(["colorsys"])
        import colorsys
        assert is_instrumented(colorsys.rgb_to_hsv)
        with capture() as captured:
            colorsys.rgb_to_hsv(1.0, 0.0, 0.0)
        assert entries(captured.events) == ["rgb_to_hsv"]
    finally:
        uninstall_import_hook()
        sys.modules.pop("colorsys", None)
        if saved is not None:
            sys.modules["colorsys"] = saved


def test_ascope_itself_cannot_be_named() -> None:
    """ascope's own modules are refused (ascope recording itself would recurse)."""
    with pytest.raises(ValueError, match="its own modules"):
        instrument_packages(["ascope"])
    with pytest.raises(ValueError, match="its own modules"):
        instrument_packages(["ascope.runtime"])
    with pytest.raises(TypeError):
        instrument_packages([""])


def test_uninstall_stops_instrumenting_new_imports() -> None:
    """After uninstall() the finder leaves sys.meta_path and new imports are plain;
    modules instrumented before stay instrumented."""
    handle = instrument_packages([APP])
    billing = importlib.import_module(f"{APP}.services.billing")
    assert any(isinstance(f, _hook._Finder) for f in sys.meta_path)
    handle.uninstall()
    assert not any(isinstance(f, _hook._Finder) for f in sys.meta_path)
    views = importlib.import_module(f"{APP}.views")
    assert is_instrumented(billing.charge)
    assert not is_instrumented(views.render)


def test_reload_instruments_again() -> None:
    """importlib.reload of an instrumented module gives instrumented functions."""
    instrument_packages([APP])
    views = importlib.import_module(f"{APP}.views")
    views = importlib.reload(views)
    assert is_instrumented(views.render)


def test_no_bytecode_is_cached_for_instrumented_modules() -> None:
    """Instrumented modules are compiled from source and never written to __pycache__,
    so a later plain import cannot pick up instrumented bytecode (or the reverse)."""
    cache = SAMPLES / APP / "services" / "__pycache__"
    for stale in cache.glob("billing.*.pyc"):
        stale.unlink()
    instrument_packages([APP])
    importlib.import_module(f"{APP}.services.billing")
    assert list(cache.glob("billing.*.pyc")) == []


def test_sourceless_module_is_instrumented_after_it_runs(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A module with no source (a bare .pyc) has its namespace instrumented after it ran."""
    source = tmp_path / "src" / "ascope_sourceless.py"
    source.parent.mkdir()
    source.write_text("def double(x):\n    return 2 * x\n\n"
                      "class Box:\n    def get(self):\n        return 1\n")
    py_compile.compile(str(source), cfile=str(tmp_path / "ascope_sourceless.pyc"))
    monkeypatch.syspath_prepend(str(tmp_path))
    instrument_packages(["ascope_sourceless"])
    try:
        module: Any = importlib.import_module("ascope_sourceless")
        assert isinstance(module.__spec__.loader._loader, importlib.machinery.SourcelessFileLoader)
        with capture() as captured:
            assert module.double(2) == 4
            assert module.Box().get() == 1
        assert entries(captured.events) == ["double", "Box.get"]
    finally:
        forget("ascope_sourceless")


def test_environment_variable_installs_the_hook() -> None:
    """ASCOPE_INSTRUMENT (comma-separated patterns) applied by configure_from_environment
    installs the hook; ASCOPE_INSTRUMENT_AST=1 asks for ast=True."""
    assert _config.configure_from_environment(
        {"ASCOPE_INSTRUMENT": f" {APP}.views , other.pkg.* "}) is False
    views = importlib.import_module(f"{APP}.views")
    assert is_instrumented(views.render)
    registration = _hook._registrations[-1]
    assert registration.patterns == (f"{APP}.views", "other.pkg.*")
    assert registration.options.ast is False
    handle = _hook.instrument_from_environment({"ASCOPE_INSTRUMENT": "x.y",
                                                "ASCOPE_INSTRUMENT_AST": "1"})
    assert handle is not None and handle.options.ast is True
    assert _hook.instrument_from_environment({"ASCOPE_INSTRUMENT": " , "}) is None


@pytest.mark.skipif(importlib.util.find_spec("ascope.instrument._ast_rewrite") is None,
                    reason="the AST rewriter is not in this checkout yet")
def test_ast_true_through_the_hook() -> None:
    """instrument_packages(..., ast=True) gives every function of the module the AST
    instrumentation: line events inside the call, file line numbers unchanged."""
    instrument_packages([APP], ast=True)
    views = importlib.import_module(f"{APP}.views")
    with capture() as captured:
        assert views.with_helper(1) == 2
    entry = captured.events[0]
    assert entry.data["function"] == "with_helper"
    lines = [e.data["line"] for e in captured.events
             if e.kind == "line_execution" and e.correlation_id == entry.correlation_id]
    source = (SAMPLES / APP / "views.py").read_text().splitlines()
    assert "return helper(x)" in {source[line - 1].strip() for line in lines}
