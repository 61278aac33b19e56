"""Internals shared by the report functions (``ascope.runtime`` and its sections).

Hot-path names are bound once at import; frame positions are written as literals in the
hottest code (0 cid, 1 parent id, 2 parent frame, 3 task, 4 trace, 5 enabled, 6 scope,
7 start, 8 ring): a global constant lookup per field would cost more than the read.
"""

from __future__ import annotations

import itertools
import logging
import time
import traceback as _traceback
from typing import Any

from . import _context as _c
from . import _pipeline, _values

logger = logging.getLogger("ascope")

_now = time.perf_counter_ns
_current = _c.current
_STATE = _c.STATE
_ROOT = _c.ROOT
_emit = _pipeline.emit_event
_capture = _values.capture
_capture_args = _values.capture_args
_SCALARS = _values._SCALARS

_logged_internal_error = False


def _internal_error() -> None:
    global _logged_internal_error
    _STATE.internal_errors += 1
    if not _logged_internal_error:
        _logged_internal_error = True
        logger.exception("ascope: a report call failed inside ascope; the caller was not "
                         "affected. Further failures are only counted in stats().")


def _active() -> _c.Frame | None:
    frame = _current.get()
    return frame if frame[5] else None


def _start(kind: str, payload: tuple[Any, ...], correlation_id: Any = None,
           trace_id: str | None = None) -> int | None:
    """Open an operation: new frame (made current), one start event; returns its id."""
    parent = _current.get()
    if not parent[5]:
        return None
    cid = next(_c.ids) if correlation_id is None else correlation_id
    now = _now()
    frame = (cid, parent[0], parent, parent[3], trace_id or parent[4], True, parent[6], now,
             parent[8])
    _current.set(frame)
    _emit(kind, now, frame, payload)
    return cid


def _pop(correlation_id: Any) -> _c.Frame:
    """Close operation ``correlation_id``: restore the frame current before it started.

    Returns the operation's frame. If it is not on this context's stack (closed from
    another task, or twice) the context is left alone and a detached frame is returned.
    """
    frame = _current.get()
    if frame[0] == correlation_id:
        _current.set(frame[2] or _ROOT)
        return frame
    found = frame[2]
    for _ in range(256):
        if found is None:
            break
        if found[0] == correlation_id:
            _current.set(found[2] or _ROOT)
            return found  # type: ignore[no-any-return]
        found = found[2]
    return (correlation_id, None, None, frame[3], frame[4], True, frame[6], 0, frame[8])


def _frame_for(correlation_id: Any) -> _c.Frame | None:
    """The frame a point event belongs to, or None when capture is off for it."""
    frame = _current.get()
    if not frame[5]:
        return None
    if correlation_id is None or frame[0] == correlation_id:
        return frame
    return (correlation_id, None, None, frame[3], frame[4], True, frame[6], 0, frame[8])


def _since(frame: _c.Frame, now: int) -> int | None:
    return now - frame[7] if frame[7] else None


def _text(value: Any) -> Any:
    """A name, path or label: kept if it is a short string, else a bounded snapshot."""
    if type(value) is str and len(value) <= 512:
        return value
    return _capture(value) if not callable(value) else _callable_name(value)


def _callable_name(value: Any) -> str:
    module = getattr(value, "__module__", None)
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if isinstance(name, str):
        return f"{module}.{name}" if isinstance(module, str) else name
    return _values.guarded_repr(value)


def _error_fields(error: Any, message: Any = None) -> tuple[Any, Any]:
    """(type name, message) of an exception, an exception type, or anything else."""
    if isinstance(error, BaseException):
        return type(error).__qualname__, (_str_or_repr(error) if message is None
                                          else _capture(message))
    if isinstance(error, type) and issubclass(error, BaseException):
        return error.__qualname__, _capture(message)
    return _text(error), _capture(message)


def _str_or_repr(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        return _values.guarded_repr(error)
    limit = _values.SETTINGS.max_string
    return text if len(text) <= limit else text[:limit] + "..."


def _traceback_of(error: Any, given: Any) -> Any:
    if given is not None:
        if isinstance(given, str):
            return _capture(given)
        tb = given
    elif isinstance(error, BaseException):
        tb = error.__traceback__
    else:
        return None
    if tb is None:
        return None
    try:
        # From the frames themselves, not traceback.extract_tb: that reads each file's
        # source lines through linecache (file I/O on the loop) for text never recorded.
        return [[frame.f_code.co_filename, line, frame.f_code.co_name]
                for frame, line in itertools.islice(_traceback.walk_tb(tb), 32)]
    except Exception:
        return _values.guarded_repr(tb)


def _diff(old: Any, new: Any) -> Any:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return None if old == new else {"before": old, "after": new}
    changed = {key: [old.get(key), new[key]] for key in new if key in old and old[key] != new[key]}
    return {
        "added": {key: new[key] for key in new if key not in old},
        "removed": {key: old[key] for key in old if key not in new},
        "changed": changed,
    }


def _point(kind: str, build: Any) -> None:
    if not _STATE.on:
        return
    try:
        frame = _active()
        if frame is not None:
            _emit(kind, _now(), frame, build())
    except Exception:
        _internal_error()


def _finish(correlation_id: Any, kind: str, build: Any) -> None:
    if correlation_id is None:
        return
    try:
        frame = _pop(correlation_id)
        if _STATE.on:
            now = _now()
            _emit(kind, now, frame, build(frame, now))
    except Exception:
        _internal_error()
