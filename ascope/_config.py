"""``ascope.configure`` and the ``ASCOPE_*`` environment variables.

``configure`` changes only the settings it is given and checks them all before applying
any, so a bad call raises ``ConfigurationError`` and leaves the old settings in force.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from . import _context as _c
from . import _pipeline, _values
from ._exceptions import ConfigurationError
from ._ring import OVERFLOW_POLICIES
from .sinks import Sink, sink_from_url

DEFAULT_SINKS = ("sqlite:ascope.db",)

_configured_sinks: list[Any] | None = None

_UNSET: Any = object()


def configure(
    *,
    sinks: Sequence[str | Sink] | str | None = _UNSET,
    ring_size: int = _UNSET,
    overflow: str = _UNSET,
    high_water: float = _UNSET,
    drain_interval: float = _UNSET,
    max_backlog: int = _UNSET,
    max_depth: int = _UNSET,
    max_length: int = _UNSET,
    max_string: int = _UNSET,
    max_repr: int = _UNSET,
    max_items: int = _UNSET,
    redact: Iterable[str] = _UNSET,
    sample_rate: float = _UNSET,
) -> None:
    """Change ascope's settings; only those given change.

    - ``sinks``: sink URLs (``"memory:"``, ``"jsonl:PATH"``, ``"sqlite:PATH"``) or sink
      objects (anything with ``write(events)`` and ``close()``); a string may hold several
      URLs separated by commas. ``None`` or ``[]`` means no sinks.
    - ``ring_size`` (events per loop), ``overflow`` (``"drop_oldest"`` or ``"drop_newest"``),
      ``high_water`` (fraction of the ring that wakes the drainer), ``drain_interval`` (s),
      ``max_backlog`` (events the writer may fall behind before batches are dropped).
    - value limits: ``max_depth``, ``max_length``, ``max_string``, ``max_repr``,
      ``max_items``; ``redact``: substrings of key names whose values are redacted
      (replaces the default list; ``[]`` turns redaction off).
    - ``sample_rate``: the share of HTTP requests and websocket connections the ASGI
      middleware records, from 0 to 1 (default 1: all). The others run with capture off
      for their whole task: nothing inside them is recorded. A request that carries a
      ``traceparent`` is decided by its trace id, so services with the same rate agree.
    """
    pipeline = _pipeline.SETTINGS
    new_ring = {
        "ring_size": pipeline.ring_size if ring_size is _UNSET
        else _positive_int("ring_size", ring_size),
        "overflow": pipeline.overflow if overflow is _UNSET else _overflow(overflow),
        "high_water": pipeline.high_water if high_water is _UNSET
        else _fraction("high_water", high_water),
        "drain_interval": pipeline.drain_interval if drain_interval is _UNSET
        else _positive_float("drain_interval", drain_interval),
        "max_backlog": pipeline.max_backlog if max_backlog is _UNSET
        else _positive_int("max_backlog", max_backlog),
    }
    limits = _values.SETTINGS.limits
    changes: dict[str, Any] = {}
    for name, value in (("max_depth", max_depth), ("max_length", max_length),
                        ("max_string", max_string), ("max_repr", max_repr),
                        ("max_items", max_items)):
        if value is not _UNSET:
            changes[name] = _positive_int(name, value)
    if redact is not _UNSET:
        changes["redact"] = _words("redact", redact)
    new_sinks: list[Any] | None = None if sinks is _UNSET else _build_sinks(sinks)
    new_rate = None if sample_rate is _UNSET else _fraction("sample_rate", sample_rate, zero=True)

    # Everything checked: apply.
    ring_changed = any(getattr(pipeline, key) != value for key, value in new_ring.items())
    for key, new_value in new_ring.items():
        setattr(pipeline, key, new_value)
    if ring_changed:
        _pipeline.resize_rings()
    if changes:
        _values.set_limits(replace(limits, **changes))
    if new_rate is not None:
        _c.STATE.sample_rate = new_rate
    if new_sinks is not None:
        global _configured_sinks
        _configured_sinks = new_sinks
        _pipeline.WRITER.set_sinks(new_sinks)


def ensure_sinks() -> None:
    """Give the writer the default sinks if none were ever configured."""
    global _configured_sinks
    if _configured_sinks is None:
        _configured_sinks = _build_sinks(list(DEFAULT_SINKS))
        _pipeline.WRITER.set_sinks(_configured_sinks)


def configured_sinks() -> list[Any]:
    return list(_configured_sinks or [])


def _build_sinks(sinks: Any) -> list[Any]:
    if sinks is None:
        return []
    if isinstance(sinks, str):
        sinks = [part for part in sinks.split(",") if part.strip()]
    if not isinstance(sinks, Iterable):
        raise ConfigurationError("sinks", f"expected a list of sink URLs or sinks, got {sinks!r}")
    built = []
    for sink in sinks:
        if isinstance(sink, str):
            built.append(sink_from_url(sink))
        elif callable(getattr(sink, "write", None)) and callable(getattr(sink, "close", None)):
            built.append(sink)
        else:
            raise ConfigurationError("sinks", f"{sink!r} is neither a sink URL nor an object "
                                     "with write(events) and close()")
    return built


def _positive_int(name: str, value: Any) -> int:
    if type(value) is not int or value < 1:
        raise ConfigurationError(name, f"expected a positive int, got {value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(name, f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _fraction(name: str, value: Any, zero: bool = False) -> float:
    """A number in (0, 1], or [0, 1] when ``zero`` is allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        in_range = False
    else:
        in_range = (0 <= value <= 1) if zero else (0 < value <= 1)
    if not in_range:
        interval = "[0, 1]" if zero else "(0, 1]"
        raise ConfigurationError(name, f"expected a number in {interval}, got {value!r}")
    return float(value)


def _overflow(value: Any) -> str:
    if value not in OVERFLOW_POLICIES:
        raise ConfigurationError("overflow", f"expected one of {OVERFLOW_POLICIES}, "
                                 f"got {value!r}")
    return str(value)


def _words(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Iterable) or not all(isinstance(w, str) for w in value):
        raise ConfigurationError(name, f"expected a list of strings, got {value!r}")
    return tuple(w.strip() for w in value if w.strip())


# -- environment -----------------------------------------------------------------------------

_ENV_INTS = ("ring_size", "max_backlog", "max_depth", "max_length", "max_string", "max_repr",
             "max_items")
_ENV_FLOATS = ("high_water", "drain_interval", "sample_rate")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def settings_from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], bool]:
    """The ``configure`` keywords and the on/off switch the ``ASCOPE_*`` variables ask for."""
    options: dict[str, Any] = {}
    for name in _ENV_INTS:
        raw = environ.get(f"ASCOPE_{name.upper()}")
        if raw is not None:
            try:
                options[name] = int(raw)
            except ValueError:
                raise ConfigurationError(f"ASCOPE_{name.upper()}",
                                         f"expected an integer, got {raw!r}") from None
    for name in _ENV_FLOATS:
        raw = environ.get(f"ASCOPE_{name.upper()}")
        if raw is not None:
            try:
                options[name] = float(raw)
            except ValueError:
                raise ConfigurationError(f"ASCOPE_{name.upper()}",
                                         f"expected a number, got {raw!r}") from None
    if "ASCOPE_OVERFLOW" in environ:
        options["overflow"] = environ["ASCOPE_OVERFLOW"].strip()
    if "ASCOPE_REDACT" in environ:
        options["redact"] = environ["ASCOPE_REDACT"]
    if "ASCOPE_SINKS" in environ:
        options["sinks"] = environ["ASCOPE_SINKS"]
    raw_enabled = environ.get("ASCOPE_ENABLED")
    if raw_enabled is None:
        turn_on = "ASCOPE_SINKS" in environ
    elif raw_enabled.strip().lower() in _TRUE:
        turn_on = True
    elif raw_enabled.strip().lower() in _FALSE:
        turn_on = False
    else:
        raise ConfigurationError("ASCOPE_ENABLED", f"expected 1 or 0, got {raw_enabled!r}")
    return options, turn_on


def configure_from_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Apply ``ASCOPE_*`` settings; switch capture on if they ask. Returns that switch."""
    from ._switch import enable

    options, turn_on = settings_from_environment(os.environ if environ is None else environ)
    if options:
        configure(**options)
    from .instrument._hook import instrument_from_environment

    instrument_from_environment(os.environ if environ is None else environ)  # ASCOPE_INSTRUMENT
    if turn_on:
        enable()
    return turn_on
