"""W3C trace-context ``traceparent`` headers: reading them and making them.

    traceparent: 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>

Only the parts ascope uses are parsed; anything malformed (wrong lengths, non-hex, the
all-zero ids, the reserved version ``ff``) is ignored as the specification asks, and the
request starts a new trace instead. The outgoing-HTTP integration uses ``format`` to pass
the trace on.
"""

from __future__ import annotations

from typing import NamedTuple

from ascope import _context as _c

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# Trace and span ids need to be unique, not secret: a random.Random's getrandbits is
# several times cheaper than secrets/os.urandom (a syscall) on the per-request path. The
# generator is ascope's own (ascope/_context.py: not the program's, reseeded after fork).
_bits = _c._random_bits


class TraceParent(NamedTuple):
    """The parts of a valid ``traceparent`` header."""

    trace_id: str  # 32 lowercase hex digits
    parent_id: str  # 16 lowercase hex digits: the caller's span
    flags: str  # 2 hex digits; "01" = sampled


def parse(value: str | bytes | None) -> TraceParent | None:
    """The trace id, parent span id and flags of a header value, or None if invalid."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = value.strip().lower()
    parts = value.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, parent_id, flags = parts[0], parts[1], parts[2], parts[3]
    if len(version) != 2 or version == "ff" or not _HEX.issuperset(version):
        return None
    if version == "00" and len(parts) != 4:  # version 00 has exactly four fields
        return None
    if len(trace_id) != 32 or trace_id == _ZERO_TRACE or not _HEX.issuperset(trace_id):
        return None
    if len(parent_id) != 16 or parent_id == _ZERO_SPAN or not _HEX.issuperset(parent_id):
        return None
    if len(flags) != 2 or not _HEX.issuperset(flags):
        return None
    return TraceParent(trace_id, parent_id, flags)


new_trace_id = _c.new_trace_id  # time-ordered: see ascope/_context.py


def new_span_id() -> str:
    """A fresh span id: 16 lowercase hex digits, never all zero."""
    return f"{_bits(64) or 1:016x}"


def format(trace_id: str, span_id: str, flags: str = "01") -> str:
    """A ``traceparent`` header value for an outgoing call."""
    return f"00-{trace_id}-{span_id}-{flags}"
