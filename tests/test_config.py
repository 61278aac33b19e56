"""``ascope.configure`` and the ``ASCOPE_*`` environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ascope
from ascope import _config, _pipeline, _values
from ascope import _context as _c
from ascope import runtime as rt
from ascope.sinks import JsonlSink, MemorySink, SqliteSink
from ascope.store import open_store
from ascope.testing import capture


def snapshot_settings() -> tuple[Any, ...]:
    settings = _pipeline.SETTINGS
    return (settings.ring_size, settings.overflow, settings.high_water,
            settings.drain_interval, _values.SETTINGS.limits,
            [type(sink) for sink in _config.configured_sinks()], _c.STATE.sample_rate)


# -- configure -----------------------------------------------------------------------------------


def test_configure_sets_sinks_from_urls_and_objects(tmp_path: Path) -> None:
    """Sinks come from URL strings and sink objects, in the order given."""
    mine = MemorySink()
    ascope.configure(sinks=["memory:", f"jsonl:{tmp_path / 'a.jsonl'}",
                            f"sqlite:{tmp_path / 'a.db'}", mine])
    sinks = _config.configured_sinks()
    assert [type(sink) for sink in sinks] == [MemorySink, JsonlSink, SqliteSink, MemorySink]
    assert sinks[3] is mine


def test_configured_sinks_receive_events() -> None:
    """After configure(sinks=[sink]) + enable(), events reach that sink; None clears."""
    sink = MemorySink()
    ascope.configure(sinks=[sink])
    ascope.enable()
    rt.report_event("configured", {"a": 1})
    assert _pipeline.flush_blocking()
    assert [e.kind for e in sink.events] == ["configured"]
    ascope.configure(sinks=None)
    rt.report_event("configured", {"a": 2})
    assert _pipeline.flush_blocking()
    assert len(sink.events) == 1


def test_configure_changes_only_what_it_is_given() -> None:
    """Each call changes the settings it names and keeps the others."""
    ascope.configure(ring_size=128)
    ascope.configure(overflow="drop_newest")
    assert _pipeline.SETTINGS.ring_size == 128
    assert _pipeline.SETTINGS.overflow == "drop_newest"
    ascope.configure(max_depth=2, redact=["pin"])
    ascope.configure(max_string=10)
    limits = _values.SETTINGS.limits
    assert (limits.max_depth, limits.max_string, limits.redact) == (2, 10, ("pin",))


def test_ring_settings_apply_to_existing_rings() -> None:
    """A new ring size and policy reach rings that already exist."""
    import asyncio

    async def main() -> tuple[int, bool]:
        async with capture():
            rt.report_event("first", {})
            ascope.configure(ring_size=16, overflow="drop_newest")
            ring = _pipeline.current_ring()
            assert ring is not None
            return ring.capacity, ring.drop_newest

    assert asyncio.run(main()) == (16, True)


def test_value_limits_apply_to_captures() -> None:
    """max_string / max_length / max_depth bound what is captured."""
    ascope.configure(max_string=5, max_length=2, max_depth=1)
    with capture() as captured:
        rt.report_expression_value(None, "v", ["abcdefgh", [1], 3], 0)
    value = captured.events[0].data["value"]
    assert value[0] == {"$str": "abcde", "$len": 8}
    assert value[1] == {"$depth": "list", "$len": 1}
    assert value[2] == {"$truncated": 1}


BAD_SETTINGS: list[tuple[str, Any]] = [
    ("ring_size", 0), ("ring_size", -1), ("ring_size", 1.5), ("ring_size", "10"),
    ("ring_size", True), ("ring_size", None),
    ("overflow", "drop_all"), ("overflow", None), ("overflow", 1),
    ("high_water", 0), ("high_water", 1.5), ("high_water", -0.1), ("high_water", "0.5"),
    ("high_water", True),
    ("drain_interval", 0), ("drain_interval", -1), ("drain_interval", "1"),
    ("drain_interval", float("nan")), ("drain_interval", False),
    ("max_depth", 0), ("max_length", -3), ("max_string", 2.0), ("max_repr", "9"),
    ("max_items", None),
    ("redact", [1, 2]), ("redact", 5), ("redact", [b"password"]),
    ("sinks", "nosuch:x"), ("sinks", ["memory", "memory:"]), ("sinks", [object()]),
    ("sinks", 42), ("sinks", ["jsonl:"]),
    ("sample_rate", 1.5), ("sample_rate", -0.1), ("sample_rate", "0.5"),
    ("sample_rate", True), ("sample_rate", None),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS,
                         ids=[f"{n}={v!r}" for n, v in BAD_SETTINGS])
def test_bad_values_raise_configuration_error(name: str, value: Any) -> None:
    """A bad value raises ConfigurationError naming the setting."""
    with pytest.raises(ascope.ConfigurationError) as raised:
        ascope.configure(**{name: value})
    assert raised.value.setting == name
    assert name in str(raised.value)
    assert isinstance(raised.value, ascope.AscopeError)


def test_a_bad_call_leaves_every_old_setting_in_force() -> None:
    """One bad value among good ones: nothing at all is applied."""
    sink = MemorySink()
    ascope.configure(sinks=[sink], ring_size=256, max_depth=3)
    before = snapshot_settings()
    with pytest.raises(ascope.ConfigurationError):
        ascope.configure(sinks=["memory:"], ring_size=512, overflow="drop_newest",
                         max_depth=5, redact=["x"], high_water=7)
    assert snapshot_settings() == before
    assert _config.configured_sinks() == [sink]


def test_sink_objects_need_write_and_close() -> None:
    """An object with write() but no close() is refused."""
    class WriteOnly:
        def write(self, events: Any) -> None:
            pass

    with pytest.raises(ascope.ConfigurationError):
        ascope.configure(sinks=[WriteOnly()])


# -- environment -----------------------------------------------------------------------------


def test_settings_from_environment() -> None:
    """ASCOPE_* variables map to configure() keywords; ASCOPE_SINKS alone switches on."""
    options, turn_on = _config.settings_from_environment({
        "ASCOPE_SINKS": "memory:,jsonl:/tmp/x.jsonl",
        "ASCOPE_RING_SIZE": "1024",
        "ASCOPE_OVERFLOW": " drop_newest ",
        "ASCOPE_HIGH_WATER": "0.25",
        "ASCOPE_DRAIN_INTERVAL": "0.5",
        "ASCOPE_MAX_DEPTH": "3",
        "ASCOPE_MAX_STRING": "100",
        "ASCOPE_REDACT": "pin,ssn",
        "ASCOPE_SAMPLE_RATE": "0.1",
        "UNRELATED": "1",
    })
    assert turn_on is True
    assert options["sinks"] == "memory:,jsonl:/tmp/x.jsonl"
    assert options["ring_size"] == 1024
    assert options["overflow"] == "drop_newest"
    assert options["high_water"] == 0.25
    assert options["drain_interval"] == 0.5
    assert options["max_depth"] == 3 and options["max_string"] == 100
    assert options["redact"] == "pin,ssn"
    assert options["sample_rate"] == 0.1


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"ASCOPE_RING_SIZE": "10"}, False),
    ({"ASCOPE_ENABLED": "1"}, True),
    ({"ASCOPE_ENABLED": "yes"}, True),
    ({"ASCOPE_ENABLED": "0", "ASCOPE_SINKS": "memory:"}, False),
    ({"ASCOPE_ENABLED": "off", "ASCOPE_SINKS": "memory:"}, False),
    ({"ASCOPE_SINKS": "memory:"}, True),
])
def test_environment_switch(environ: dict[str, str], expected: bool) -> None:
    """Capture is switched on by ASCOPE_ENABLED=1 or by ASCOPE_SINKS being set."""
    assert _config.settings_from_environment(environ)[1] is expected


@pytest.mark.parametrize("environ", [
    {"ASCOPE_RING_SIZE": "lots"}, {"ASCOPE_HIGH_WATER": "half"},
    {"ASCOPE_ENABLED": "maybe"}, {"ASCOPE_MAX_DEPTH": "1.5"},
])
def test_bad_environment_raises(environ: dict[str, str]) -> None:
    """An unparsable ASCOPE_* value raises ConfigurationError naming the variable."""
    with pytest.raises(ascope.ConfigurationError) as raised:
        _config.settings_from_environment(environ)
    assert next(iter(environ)) in str(raised.value)


@pytest.mark.parametrize("environ", [
    {"ASCOPE_RING_SIZE": "0"}, {"ASCOPE_OVERFLOW": "sometimes"},
    {"ASCOPE_SINKS": "ftp:x"}, {"ASCOPE_SAMPLE_RATE": "2"},
])
def test_bad_environment_values_are_checked_by_configure(environ: dict[str, str]) -> None:
    """Parsable but bad values fail in configure, with nothing applied or switched on."""
    before = snapshot_settings()
    with pytest.raises(ascope.ConfigurationError):
        _config.configure_from_environment(environ)
    assert snapshot_settings() == before
    assert ascope.enabled() is False


def test_configure_from_environment_applies_and_enables() -> None:
    """configure_from_environment(dict) configures and switches capture on."""
    assert _config.configure_from_environment({"ASCOPE_SINKS": "memory:",
                                               "ASCOPE_RING_SIZE": "2048",
                                               "ASCOPE_REDACT": "pin"}) is True
    assert ascope.enabled() is True
    assert _pipeline.SETTINGS.ring_size == 2048
    assert _values.SETTINGS.limits.redact == ("pin",)
    assert [type(sink) for sink in _config.configured_sinks()] == [MemorySink]


def run_with_environment(code: str, **variables: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASCOPE_")}
    environment.update(variables)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=60, check=False)


UNCHANGED_PROGRAM = """
import asyncio
import ascope.runtime as rt

async def main():
    for n in range(100):
        cid = rt.report_function_entry("prog", "work", (n,))
        await asyncio.sleep(0)
        rt.report_function_exit(cid, n)

asyncio.run(main())
"""


def test_a_program_is_captured_through_the_environment_alone(tmp_path: Path) -> None:
    """ASCOPE_SINKS=sqlite:PATH captures a program that never calls enable() or configure()."""
    store = tmp_path / "env.db"
    completed = run_with_environment(UNCHANGED_PROGRAM, ASCOPE_SINKS=f"sqlite:{store}")
    assert completed.returncode == 0, completed.stderr
    with open_store(store) as opened:
        assert opened.count("function_entry") == 100
        assert opened.count("function_exit") == 100


def test_without_environment_nothing_is_captured(tmp_path: Path) -> None:
    """No ASCOPE_* variables: capture stays off and no store file appears."""
    completed = subprocess.run([sys.executable, "-c", UNCHANGED_PROGRAM], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60, check=False,
                               env={k: v for k, v in os.environ.items()
                                    if not k.startswith("ASCOPE_")})
    assert completed.returncode == 0, completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_environment_is_a_clear_error_at_import() -> None:
    """A bad ASCOPE_* value is reported as a ConfigurationError naming the variable."""
    completed = run_with_environment("import ascope", ASCOPE_RING_SIZE="lots")
    assert completed.returncode != 0
    assert "ConfigurationError" in completed.stderr
    assert "ASCOPE_RING_SIZE" in completed.stderr


def test_configure_returns_once_the_writer_has_the_new_sinks() -> None:
    # An event emitted after configure() returns must reach the new sinks: the writer's
    # idle sweep of the thread ring does not wait for its queue, so the swap must be done
    # by then (it was queued only, and a sweep in between delivered to the old sinks).
    for _ in range(20):
        sink = MemorySink()
        ascope.configure(sinks=[sink])
        assert [slot.sink for slot in _pipeline.WRITER.sinks] == [sink]
    ascope.configure(sinks=[])
    assert _pipeline.WRITER.sinks == []
