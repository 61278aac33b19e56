"""Capturing values at the moment of an event.

A captured value is always JSON-compatible and survives an orjson round trip unchanged,
so an event read back from a store equals the one a memory sink received:

- ``None``, ``bool``, 64-bit ``int``, finite ``float`` and short ``str`` are kept as they are;
- lists, tuples, sets and dicts become bounded copies (lists and string-keyed dicts), so a
  later mutation of the original does not change what was recorded;
- anything else becomes a marker dict ``{"$type": "Name", "$repr": "..."}`` built from a
  guarded, bounded ``repr``: a ``__repr__`` that raises or recurses yields a marker, never
  an exception.

Markers (all keys start with ``$``): ``$type``/``$repr`` for objects, ``$str`` + ``$len`` for
a truncated string, ``$truncated`` (how many items were left out) as the last item of a
cut container, ``$cycle`` for a container that contains itself, ``$depth`` for a container
past the depth limit, ``$int`` / ``$float`` for numbers JSON cannot hold exactly.
Values under sensitive keys become ``REDACTED``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REDACTED = "[redacted]"

DEFAULT_REDACT = ("password", "passwd", "token", "secret", "authorization", "cookie", "api_key",
                  "apikey", "session", "credential", "private_key")

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ValueLimits:
    """Bounds applied to every captured value."""

    max_depth: int = 4
    max_length: int = 32  # items kept from one container
    max_string: int = 512  # characters kept from one string
    max_repr: int = 256  # characters kept from one repr()
    max_items: int = 512  # items kept from one whole value, all levels together
    redact: tuple[str, ...] = field(default=DEFAULT_REDACT)


class _Settings:
    __slots__ = ("limits", "max_length", "max_string", "redact_pattern", "sensitive_cache")

    def __init__(self) -> None:
        self.limits = ValueLimits()
        self.max_string = self.limits.max_string
        self.max_length = self.limits.max_length
        self.redact_pattern: re.Pattern[str] | None = None
        self.sensitive_cache: dict[str, bool] = {}
        self.apply(self.limits)

    def apply(self, limits: ValueLimits) -> None:
        self.limits = limits
        self.max_string = limits.max_string
        self.max_length = limits.max_length
        words = [re.escape(w.lower()) for w in limits.redact if w]
        self.redact_pattern = re.compile("|".join(words)) if words else None
        self.sensitive_cache = {}


SETTINGS = _Settings()


def set_limits(limits: ValueLimits) -> None:
    SETTINGS.apply(limits)


def is_sensitive(key: str) -> bool:
    """Whether a mapping key or parameter name names a secret (cached per key)."""
    cache = SETTINGS.sensitive_cache
    hit = cache.get(key)
    if hit is None:
        pattern = SETTINGS.redact_pattern
        hit = pattern is not None and pattern.search(key.lower()) is not None
        if len(cache) < 4096:
            cache[key] = hit
    return hit


# Immutable scalars are safe to keep by reference: the value cannot change before the
# writer sees it, so bounding huge ints and non-finite floats can wait for ``normalize``
# (off the loop). Strings are cut here so the ring never pins a huge one.
_SCALARS = frozenset({int, float, bool, type(None)})


def capture(value: Any) -> Any:
    """Snapshot one value on the hot path; never raises."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= SETTINGS.max_string else _cut_string(value)
    if kind in _SCALARS:
        return value
    try:
        return _Snapshot(SETTINGS.limits).take(value, 0)
    except Exception as error:  # a hostile object beat the guards: still record something
        return {"$type": _type_name(value), "$error": _type_name(error)}


def capture_args(args: Any) -> Any:
    """Snapshot call arguments: a sequence becomes a list, a mapping a redacted dict.

    A tuple of scalars is kept as it is (immutable); ``normalize`` makes it a list.
    """
    kind = type(args)
    if kind is tuple:
        settings = SETTINGS
        if len(args) > settings.max_length:
            return capture(args)  # the bounded snapshot, ending with its $truncated marker
        for arg in args:
            arg_kind = type(arg)
            if arg_kind is int or arg is None or arg_kind is bool or arg_kind is float:
                continue
            if arg_kind is not str or len(arg) > settings.max_string:
                break
        else:
            return args
        return [snapshot(a) for a in args]
    if kind is list and len(args) > SETTINGS.max_length:
        return capture(args)
    if kind is list:
        return [snapshot(a) for a in args]
    if kind is dict:
        return _capture_flat_dict(args)
    return capture(args)


def json_safe(value: Any) -> Any:
    """``value`` with every string made valid UTF-8 (lone surrogates, as ``os.fsdecode``
    makes them, become backslash escapes). The sinks' slow path when encoding fails."""
    kind = type(value)
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if kind is list or kind is tuple:
        return [json_safe(item) for item in value]
    if kind is dict:
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    return value


def snapshot(value: Any) -> Any:
    """``capture`` for a value nested in something ascope builds: fully normalized.

    ``capture`` already normalizes what it builds (containers, markers); only the scalars
    it passes through by reference are left to finish here."""
    captured = capture(value)
    kind = type(captured)
    return normalize(captured) if kind is int or kind is float else captured


def normalize(value: Any) -> Any:
    """Finish a value off the loop so it is plain, bounded JSON: JSON-exact numbers, tuples
    as lists, string keys, and anything else (a value a report function was given in a
    position meant for a scalar, say) as a ``$type``/``$repr`` marker."""
    kind = type(value)
    if kind is bool or value is None:
        return value
    if kind is str:
        return value if len(value) <= SETTINGS.max_string else _cut_string(value)
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else {"$int": _bounded_int_text(value)}
    if kind is float:
        return value if value - value == 0.0 else {"$float": repr(value)}
    if kind is dict or kind is list or kind is tuple:
        flat = _normalize_flat(value, kind)
        if flat is not None:
            return flat
    if kind is Later:
        try:
            return normalize(value.function(*value.args))
        except Exception as error:  # this value is lost, not the event
            return {"$type": "Later", "$error": _type_name(error)}
    return _Normalizer(SETTINGS.limits).walk(value, 0)


class Later:
    """A value derived from values already captured, left for the writer to compute: the
    hot path records the inputs, the writer (``normalize``) calls ``function(*args)``."""

    __slots__ = ("args", "function")

    def __init__(self, function: Any, *args: Any) -> None:
        self.function = function
        self.args = args


def _normalize_flat(value: Any, kind: type) -> Any:
    """A short container of plain scalars (most of what the hot path captured), copied
    without a walk; None when it needs one. The result is what the walk would give."""
    if len(value) > SETTINGS.max_length + 1:
        return None
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return None
        items = value.values()
    else:
        items = value
    max_string = SETTINGS.max_string
    for item in items:
        item_kind = type(item)
        if item_kind is str:
            if len(item) > max_string:
                return None
        elif item_kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return None
        elif item_kind is float:
            if item - item != 0.0:
                return None
        elif item_kind is not bool and item is not None:
            return None
    return dict(value) if kind is dict else list(value)


class _Normalizer:
    """A bounded walk: captured values pass unchanged, anything raw is bounded too."""

    __slots__ = ("budget", "limits")

    def __init__(self, limits: ValueLimits) -> None:
        self.limits = limits
        self.budget = 4 * limits.max_items

    def walk(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return value if len(value) <= self.limits.max_string else _cut_string(value)
        if kind is bool or value is None:
            return value
        if kind is int or kind is float:
            return normalize(value)
        if kind is list or kind is tuple or kind is dict:
            if depth > self.limits.max_depth + 1 or self.budget <= 0:
                return {"$depth": kind.__name__, "$len": len(value)}
            keep = self.limits.max_length + 1  # a captured list may end with its $truncated
            self.budget -= min(len(value), keep)
            if kind is dict:
                return {(key if type(key) is str else guarded_repr(key)):
                        self.walk(item, depth + 1)
                        for key, item in itertools.islice(value.items(), keep)}
            return [self.walk(item, depth + 1) for item in value[:keep]]
        return {"$type": _type_name(value), "$repr": guarded_repr(value)}


def _capture_flat_dict(values: dict[Any, Any]) -> Any:
    # Fast path for argument dicts: string keys, scalar values, no nesting.
    if len(values) > SETTINGS.max_length:
        return capture(values)
    out = {}
    sensitive_cache = SETTINGS.sensitive_cache
    max_string = SETTINGS.max_string
    for key, value in values.items():
        if type(key) is not str:
            return capture(values)
        sensitive = sensitive_cache.get(key)
        if sensitive is None:
            sensitive = is_sensitive(key)
        if sensitive:
            out[key] = REDACTED
            continue
        # The common scalars inline (this runs for every argument of every captured call);
        # everything else through the full snapshot.
        kind = type(value)
        if ((kind is str and len(value) <= max_string) or value is None or kind is bool
                or (kind is int and _INT_MIN <= value <= _INT_MAX)):
            out[key] = value
        else:
            out[key] = snapshot(value)
    return out


def capture_mapping(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Snapshot a mapping of names to values (variables, bindings, headers)."""
    if values is None:
        return None
    if isinstance(values, dict):
        captured = capture(values)
    else:
        try:
            as_dict = dict(values)
        except Exception:  # not a mapping (nor pairs): kept as what it is, bounded
            return {"$value": capture(values)}
        captured = capture(as_dict)
    return captured if isinstance(captured, dict) else {"$value": captured}


def _cut_string(text: str) -> dict[str, Any]:
    return {"$str": text[: SETTINGS.max_string], "$len": len(text)}


def _bounded_int_text(value: int) -> str:
    try:
        text = str(value)
    except ValueError:  # more digits than int_max_str_digits allows
        return f"<int of {value.bit_length()} bits>"
    limit = SETTINGS.max_string
    return text if len(text) <= limit else text[:limit] + "..."


def _type_name(value: Any) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or kind.__name__
    name = name if module in (None, "builtins") else f"{module}.{name}"
    return name if len(name) <= 200 else name[:200] + "..."  # a generated class may be huge


def guarded_repr(value: Any, limit: int | None = None) -> str:
    """``repr(value)`` cut to ``limit``; a marker string if it raises or is not a string."""
    limit = SETTINGS.limits.max_repr if limit is None else limit
    try:
        text = repr(value)
    except RecursionError:
        return f"<{_type_name(value)}: repr recursed>"
    except Exception as error:
        return f"<{_type_name(value)}: repr raised {_type_name(error)}>"
    if type(text) is not str:  # a __repr__ returning a non-string raises TypeError above
        return f"<{_type_name(value)}: repr returned non-str>"
    return text if len(text) <= limit else text[:limit] + "..."


class _Snapshot:
    """One bounded walk over a value; ``budget`` bounds the total items kept."""

    __slots__ = ("active", "budget", "limits")

    def __init__(self, limits: ValueLimits) -> None:
        self.limits = limits
        self.budget = limits.max_items
        self.active: set[int] = set()

    def take(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if value is None or kind is bool or kind is int or kind is str or kind is float:
            return snapshot(value)
        if kind in (list, tuple, set, frozenset, dict) or isinstance(value, (list, tuple, dict)):
            return self._container(value, depth)
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value[: self.limits.max_string])
            return {"$type": _type_name(value), "$len": len(value), "$repr": repr(raw)}
        if isinstance(value, (set, frozenset)):
            return self._container(value, depth)
        return {"$type": _type_name(value), "$repr": guarded_repr(value, self.limits.max_repr)}

    def _container(self, value: Any, depth: int) -> Any:
        marker = id(value)
        if marker in self.active:
            return {"$cycle": _type_name(value)}
        if depth >= self.limits.max_depth:
            return {"$depth": _type_name(value), "$len": _safe_len(value)}
        self.active.add(marker)
        try:
            if isinstance(value, dict):
                return self._dict(value, depth)
            items: Iterable[Any] = value
            if isinstance(value, (set, frozenset)):
                items = _sorted_if_possible(value, self.limits.max_length)
            return self._list(items, _safe_len(value), depth)
        finally:
            self.active.discard(marker)

    def _list(self, items: Iterable[Any], length: int, depth: int) -> list[Any]:
        keep = min(self.limits.max_length, max(self.budget, 0))
        out: list[Any] = []
        for index, item in enumerate(items):
            if index >= keep:
                break
            self.budget -= 1
            out.append(self.take(item, depth + 1))
        if length > len(out):
            out.append({"$truncated": length - len(out)})
        return out

    def _dict(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        keep = min(self.limits.max_length, max(self.budget, 0))
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= keep:
                out["$truncated"] = len(value) - index
                break
            self.budget -= 1
            name = key if type(key) is str else guarded_repr(key, self.limits.max_repr)
            if len(name) > self.limits.max_string:
                name = name[: self.limits.max_string] + "..."
            out[name] = REDACTED if is_sensitive(name) else self.take(item, depth + 1)
        return out


def _safe_len(value: Any) -> int:
    try:
        return len(value)
    except Exception:
        return -1


def _sorted_if_possible(values: Iterable[Any], keep: int) -> Iterable[Any]:
    # Sets have no order; sorting the kept items makes a snapshot reproducible.
    kept = list(itertools.islice(values, keep))
    try:
        return sorted(kept)
    except Exception:
        return kept
