"""Sinks: where drained events go.

A sink is any object with ``write(events)`` and ``close()``. It is called from ascope's
writer thread, never from the event loop, one batch at a time and in emission order per
loop. A sink that raises is disabled, logged once on the ``ascope`` logger and its lost
events counted in ``ascope.stats().sink_errors``; user code never sees the error.

Sinks are named by URL in ``configure(sinks=[...])`` and ``ASCOPE_SINKS``:
``"memory:"``, ``"jsonl:PATH"``, ``"sqlite:PATH"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._events import Event
from .._exceptions import ConfigurationError
from ._jsonl import JsonlSink as JsonlSink
from ._memory import MemorySink as MemorySink
from ._sqlite import SqliteSink as SqliteSink

__all__ = ["JsonlSink", "MemorySink", "Sink", "SqliteSink", "sink_from_url"]


@runtime_checkable
class Sink(Protocol):
    def write(self, events: Sequence[Event]) -> None: ...

    def close(self) -> None: ...


def sink_from_url(url: str) -> Sink:
    """Build a sink from ``memory:``, ``jsonl:PATH`` or ``sqlite:PATH``."""
    if not isinstance(url, str):
        raise ConfigurationError("sinks", f"expected a sink URL or sink object, got {url!r}")
    scheme, sep, rest = url.strip().partition(":")
    if not sep:
        raise ConfigurationError("sinks", f"{url!r} has no scheme; use memory:, jsonl:PATH "
                                 "or sqlite:PATH")
    scheme = scheme.lower()
    if scheme == "memory":
        return MemorySink()
    if scheme in ("jsonl", "sqlite"):
        path = rest.removeprefix("//")
        if not path:
            raise ConfigurationError("sinks", f"{url!r} needs a file path after '{scheme}:'")
        return JsonlSink(path) if scheme == "jsonl" else SqliteSink(path)
    raise ConfigurationError("sinks", f"unknown sink scheme {scheme!r} in {url!r}; "
                             "use memory:, jsonl:PATH or sqlite:PATH")
