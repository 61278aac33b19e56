"""The per-task capture context.

One module-level ContextVar holds the current *frame*: an immutable tuple, so a task
that inherits it (asyncio copies the context into every task) shares a snapshot and
never leaks changes back to its parent. A frame is a node of a linked stack:

    (correlation_id, parent_id, parent_frame, task_id, trace_id, enabled, scope, start_ns,
     ring)

``ring`` is the ring of the loop the task runs on: frames of tasks created by ascope's
task factory (and every frame derived from them) carry it, so the hot path appends
without looking the running loop up (``asyncio._get_running_loop()`` costs ~170 ns here,
more than the rest of an event). Frames without one take the slow path.

Frames are plain tuples rather than objects because building one is on the hot path
of every operation start (~80 ns for the tuple here, ~310 ns for a slotted object).
The global switch lives in ``STATE`` so that every module reads the same flag.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import secrets
import time
from contextvars import ContextVar
from typing import Any

# Trace and span ids come from a generator of ascope's own: one the program seeds
# (random.seed) would repeat them, and taking them from its stream would change the numbers
# the program draws. Seeded from os.urandom, and again in a forked child (reseed_ids).
_random = random.Random()
_random_bits = _random.getrandbits

# Frame field positions.
CID = 0
PARENT_ID = 1
PARENT = 2
TASK = 3
TRACE = 4
ENABLED = 5
SCOPE = 6
START = 7
RING = 8

Frame = tuple[Any, ...]

ROOT: Frame = (None, None, None, None, None, True, None, 0, None)

current: ContextVar[Frame] = ContextVar("ascope.frame", default=ROOT)


class _State:
    """Process-wide switches read on the hot path."""

    __slots__ = ("global_sinks", "internal_errors", "on", "sample_rate", "scoped_captures")

    def __init__(self) -> None:
        self.on = False  # capture happens when this is true and the frame is enabled
        self.global_sinks = False  # events go to the configured sinks (enable() was called)
        self.scoped_captures = 0  # open ascope.testing.capture() blocks
        self.internal_errors = 0  # failures inside ascope that were swallowed
        self.sample_rate = 1.0  # share of requests and connections the middleware records

    def recompute(self) -> None:
        self.on = self.global_sinks or self.scoped_captures > 0


STATE = _State()


def _id_counter() -> itertools.count[int]:
    # Ids are 63-bit ints: a random 23-bit prefix per process and a 40-bit counter, so
    # workers writing one store practically never collide, at the cost of one next().
    prefix = secrets.randbits(23) or 1
    return itertools.count((prefix << 40) + 1)


ids = _id_counter()
task_ids = _id_counter()


_after_reseed: list[Any] = []


def reseed_ids() -> None:
    """Give a forked child its own id space (registered with os.register_at_fork)."""
    global ids, task_ids
    ids = _id_counter()
    task_ids = _id_counter()
    _random.seed()
    for rebind in _after_reseed:
        rebind()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reseed_ids)


def load_speedups() -> Any:
    """``ascope._speedups`` (the compiled hot path), or None where it was not built or
    ``ASCOPE_NO_EXTENSIONS`` is set: then the same code runs as pure Python.

    A module built from another version of ``_speedups.pyx`` than the one beside it (an
    editable install whose source changed since) is not used, nor one that fails to load:
    both with a warning, once.
    """
    global _speedups_checked
    if extensions_disabled():
        return None
    try:
        from . import _speedups
    except ImportError:  # not built here (no compiler, not Linux)
        return None
    except Exception as error:  # built, but it does not load against this source
        _warn_once(f"ascope: the compiled module does not load ({error!r}); "
                   "running pure Python. Rebuild it: pip install -e .")
        return None
    if _speedups_checked is None:
        _speedups_checked = _matches_source(_speedups)
        if not _speedups_checked:
            _warn_once("ascope: the compiled module was built from another version of "
                       "_speedups.pyx; running pure Python. Rebuild it: pip install -e .")
    return _speedups if _speedups_checked else None


def extensions_disabled() -> bool:
    """``ASCOPE_NO_EXTENSIONS`` is set to anything but empty, ``0``, ``false`` or ``no``
    (setup.py reads it the same way, without importing ascope)."""
    return os.environ.get("ASCOPE_NO_EXTENSIONS", "").lower() not in ("", "0", "false", "no")


_speedups_checked: bool | None = None
_warned = False


def _matches_source(module: Any) -> bool:
    source = os.path.join(os.path.dirname(__file__), "_speedups.pyx")
    try:
        with open(source, "rb") as file:
            digest = hashlib.sha256(file.read()).hexdigest()
    except OSError:  # installed without its source: nothing to compare with
        return True
    return getattr(module, "SOURCE_HASH", None) == digest


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        import logging

        logging.getLogger("ascope").warning(message)


def new_trace_id() -> str:
    """A W3C trace-context trace id: 32 lowercase hex digits, never all zero.

    The first 12 digits are the time in milliseconds (as in a UUIDv7 or an X-Ray trace
    id), the other 20 random: ids made close in time sort close together (the store finds
    traces by fingerprint, so it no longer depends on that, but a listing sorted by id
    is in time order). 80 random bits per millisecond keep them unique; ascope's own
    ``random.Random`` because they need to be unique, not secret, and it is several times
    cheaper than ``os.urandom`` (reseeded in a forked child: ``reseed_ids``).
    """
    # One 128-bit int, as 16 bytes in hex: half the cost of formatting it with "032x".
    return ((time.time_ns() // 1_000_000) << 80 | _random_bits(80)).to_bytes(16, "big").hex()


#: The Python ``new_trace_id``; ascope.runtime puts the compiled one (ascope._speedups: the
#: same layout, the random part from a splitmix64 sequence seeded from os.urandom and
#: reseeded in forked children) in its place where it is built.
PURE_NEW_TRACE_ID = new_trace_id
