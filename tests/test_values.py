"""Captured values: bounded, JSON-exact snapshots of anything, taken at capture time.

The property: whatever a program hands ascope — objects whose ``__repr__`` raises or
returns a non-string, cycles, deep nesting, huge strings and ints, bytes, non-string keys,
nan/inf, sets, containers whose ``__len__``/``__iter__`` raise — capturing never raises
and the recorded value is bounded and survives an orjson round trip unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ascope
from ascope import _values
from ascope import runtime as rt
from ascope.testing import capture

# -- hostile objects ---------------------------------------------------------------------------


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class NonStrRepr:
    def __repr__(self) -> Any:
        return 42


class RecursiveRepr:
    def __repr__(self) -> str:
        return repr(self)


class HugeRepr:
    def __repr__(self) -> str:
        return "r" * 1_000_000


class BadLen(list):  # type: ignore[type-arg]
    def __len__(self) -> int:
        raise RuntimeError("no len")


class BadIter(list):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iter")


class BadItems(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("no items")


class BadHash:
    """Hashable by identity, but ordering and equality raise."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("no lt")

    __hash__ = object.__hash__


class NegativeLen(list):  # type: ignore[type-arg]
    def __len__(self) -> int:
        return -5


def cyclic_list() -> list[Any]:
    value: list[Any] = [1, "a"]
    value.append(value)
    return value


def cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"x": 1}
    value["self"] = value
    value["list"] = [value, {"again": value}]
    return value


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_LEAVES = [
    RaisingRepr(), NonStrRepr(), RecursiveRepr(), HugeRepr(), BadLen([1, 2]), BadIter([1]),
    BadItems(a=1), NegativeLen([1]), {BadHash(), BadHash()}, cyclic_list(), cyclic_dict(),
    deep_list(10_000), "x" * 1_000_000, b"\x00\xff" * 100_000, bytearray(b"abc"),
    memoryview(b"xyz"), 10**5000, -(2**200), 2**63, -(2**63) - 1, float("nan"),
    float("inf"), float("-inf"), -0.0, {1, 2, 3}, frozenset({"a", "b"}), {(1, 2): "tuple key"},
    {None: 1, 2.5: 2, ("a",): 3, RaisingRepr(): 4}, {10**5000: "huge key"}, range(10),
    type("N" * 10_000, (), {})(), object(), object, len, Ellipsis, NotImplemented, 1j,
    ValueError("boom"), iter([1, 2]), (x for x in range(3)),
]

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50),
    st.binary(max_size=50),
    # By index: hypothesis reprs sampled_from's elements, and some of these refuse.
    st.integers(0, len(HOSTILE_LEAVES) - 1).map(lambda index: HOSTILE_LEAVES[index]),
)
keys = st.one_of(st.text(max_size=20), st.integers(), st.none(), st.floats(allow_nan=False),
                 st.tuples(st.integers()), st.booleans().map(lambda flag: RaisingRepr() if flag
                                                              else NonStrRepr()))
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=40),
        st.lists(children, max_size=10).map(tuple),
        st.dictionaries(keys, children, max_size=40),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=40),
    ),
    max_leaves=80,
)


def recorded(value: Any) -> Any:
    """What an event records for ``value``: the hot-path snapshot, finished by the writer."""
    return _values.normalize(_values.capture(value))


def round_trips(record: Any) -> bool:
    """The record is JSON-compatible and comes back from orjson equal to itself."""
    return bool(orjson.loads(orjson.dumps(record)) == record)


def contains_nan(record: Any) -> bool:
    if isinstance(record, float):
        return math.isnan(record)
    if isinstance(record, list):
        return any(contains_nan(item) for item in record)
    if isinstance(record, dict):
        return any(contains_nan(item) for item in record.values())
    return False


# -- the property ------------------------------------------------------------------------------


@given(values)
def test_any_value_gives_a_bounded_json_exact_record(value: Any) -> None:
    """Capturing never raises; the record survives orjson unchanged and stays bounded."""
    record = recorded(value)
    assert not contains_nan(record)
    assert round_trips(record)
    assert len(orjson.dumps(record)) < 1_000_000


@pytest.mark.parametrize("value", HOSTILE_LEAVES, ids=lambda v: type(v).__name__)
def test_each_hostile_value_alone(value: Any) -> None:
    """Every hostile value on its own, at the top level: never raises, round trips."""
    record = recorded(value)
    assert round_trips(record)
    assert len(orjson.dumps(record)) < 600_000


@given(values)
def test_small_limits_bound_the_record_tightly(value: Any) -> None:
    """With small limits, any record is a few kilobytes at most."""
    limits = _values.ValueLimits(max_depth=3, max_length=5, max_string=20, max_repr=20,
                                 max_items=30)
    previous = _values.SETTINGS.limits
    _values.set_limits(limits)
    try:
        record = recorded(value)
    finally:
        _values.set_limits(previous)
    assert round_trips(record)
    assert len(orjson.dumps(record)) < 8_000


def test_values_through_a_real_event_equal_the_direct_record() -> None:
    """The value an event carries (through ring, writer and sink) is the same record."""
    sample = [v for v in HOSTILE_LEAVES if not isinstance(v, (Iterator,))]
    with capture() as captured:
        for index, value in enumerate(sample):
            rt.report_expression_value(None, str(index), value, 0)
    assert len(captured.events) == len(sample)
    for event, value in zip(captured.events, sample, strict=True):
        assert round_trips(event.data["value"])
        assert event.data["value"] == recorded(value)


def test_scalars_are_stored_as_they_are() -> None:
    """None, bools, 64-bit ints, finite floats and short strings are kept unchanged."""
    for value in (None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, "", "héllo"):
        record = recorded(value)
        assert record == value and type(record) is type(value)


def test_markers_for_what_json_cannot_hold() -> None:
    """Huge ints, non-finite floats, long strings, cycles and depth get marker dicts."""
    assert recorded(2**70) == {"$int": str(2**70)}
    assert recorded(float("nan")) == {"$float": "nan"}
    assert recorded(float("inf")) == {"$float": "inf"}
    long = recorded("y" * 10_000)
    assert long == {"$str": "y" * 512, "$len": 10_000}
    cycle = recorded(cyclic_list())
    assert cycle[:2] == [1, "a"] and cycle[2] == {"$cycle": "list"}
    deep = recorded(deep_list(10))
    assert "$depth" in str(deep)
    assert recorded(RaisingRepr())["$repr"].startswith("<")
    assert recorded(NonStrRepr())["$repr"].startswith("<")
    assert recorded([1] * 100)[-1] == {"$truncated": 100 - 32}


def test_capture_never_raises_even_when_the_guards_are_beaten() -> None:
    """A value that fails inside the snapshot walk still yields a marker."""
    record = recorded(BadIter([1, 2]))
    assert isinstance(record, dict) and round_trips(record)


# -- snapshots at capture time -------------------------------------------------------------------


def test_mutating_after_capture_does_not_change_the_record() -> None:
    """Lists, dicts, sets and nested containers are copied when the event happens."""
    items = [1, 2, {"k": [3]}]
    mapping = {"a": [1], "b": {"c": 2}}
    numbers = {1, 2}
    args = ([1, 2], {"x": [1]})
    with capture() as captured:
        cid = rt.report_function_entry("m", "f", args)
        rt.report_expression_value(None, "items", items, 1)
        rt.report_ast_variable_snapshot(None, {"mapping": mapping, "numbers": numbers}, 2,
                                        "m:f:2:assign")
        rt.report_function_exit(cid, items)
        items.append(4)
        items[2]["k"].append(99)  # type: ignore[index]
        mapping["a"].append(2)
        mapping["new"] = 1
        numbers.add(3)
        args[0].append(3)
        args[1]["x"].append(2)
    entry, value, snapshot, exit_ = captured.events
    assert entry.data["args"] == [[1, 2], {"x": [1]}]
    assert value.data["value"] == [1, 2, {"k": [3]}]
    assert snapshot.data["variables"] == {"mapping": {"a": [1], "b": {"c": 2}},
                                          "numbers": [1, 2]}
    assert exit_.data["result"] == [1, 2, {"k": [3]}]


def test_keyword_args_mapping_is_snapshotted() -> None:
    """Arguments given as a name -> value mapping are copied too."""
    kwargs = {"a": [1]}
    with capture() as captured:
        rt.report_function_entry("m", "f", kwargs)
        kwargs["a"].append(2)
        kwargs["b"] = [3]
    assert captured.events[0].data["args"] == {"a": [1]}


# -- redaction -----------------------------------------------------------------------------------


SECRETS = {"password": "hunter2", "api_key": "k", "Authorization": "Bearer x",
           "session_token": "t", "client_secret": "s", "Cookie": "c", "user": "alice"}


def snapshot_of(variables: dict[str, Any]) -> dict[str, Any]:
    with capture() as captured:
        rt.report_variable_snapshot(None, variables, 1)
        rt.report_function_entry("m", "login", variables)
        rt.report_expression_value(None, "nested", {"outer": variables}, 1)
    snapshot, entry, nested = captured.events
    assert entry.data["args"] == snapshot.data["variables"]
    assert nested.data["value"] == {"outer": snapshot.data["variables"]}
    result: dict[str, Any] = snapshot.data["variables"]
    return result


def test_sensitive_keys_are_redacted_by_default() -> None:
    """Values under password/token/secret/authorization/cookie/api_key-like keys are
    replaced, in snapshots, argument mappings and nested dicts; others are kept."""
    snapshot = snapshot_of(SECRETS)
    assert snapshot["user"] == "alice"
    for key in SECRETS.keys() - {"user"}:
        assert snapshot[key] == _values.REDACTED, key
    assert "hunter2" not in str(snapshot)


def test_redaction_list_is_configurable() -> None:
    """configure(redact=[...]) replaces the list: new words redact, old ones no longer."""
    ascope.configure(redact=["ssn", "user"])
    snapshot = snapshot_of({**SECRETS, "patient_ssn": "123"})
    assert snapshot["patient_ssn"] == _values.REDACTED
    assert snapshot["user"] == _values.REDACTED
    assert snapshot["password"] == "hunter2"


def test_redaction_can_be_turned_off() -> None:
    """configure(redact=[]) records every value as is."""
    ascope.configure(redact=[])
    assert snapshot_of(SECRETS) == SECRETS


def test_headers_are_redacted() -> None:
    """Request headers go through the same redaction (Authorization, Cookie)."""
    with capture() as captured:
        cid = rt.report_http_request_start("GET", "/x", headers={
            "authorization": "Bearer secret", "cookie": "a=b", "accept": "*/*"})
        rt.report_http_request_complete(cid, 200)
    headers = captured.events[0].data["headers"]
    assert headers == {"authorization": _values.REDACTED, "cookie": _values.REDACTED,
                       "accept": "*/*"}


@pytest.mark.parametrize("args", [tuple(range(100)), tuple(str(n) for n in range(100)),
                                  [n for n in range(100)], tuple([n] for n in range(100))],
                         ids=["int-tuple", "str-tuple", "int-list", "list-tuple"])
def test_long_argument_sequences_are_cut_with_a_marker(args: Any) -> None:
    """Call arguments are bounded like any container: max_length items, then a
    $truncated marker saying how many were left out."""
    with capture() as captured:
        rt.report_function_entry("m", "f", args)
    recorded_args = captured.events[0].data["args"]
    assert len(recorded_args) == 33
    assert recorded_args[-1] == {"$truncated": 68}
    assert recorded_args[:32] == recorded(list(args))[:32]


flat_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.text(max_size=600))
flat_containers = st.one_of(
    st.lists(flat_scalars, max_size=40),
    st.lists(flat_scalars, max_size=40).map(tuple),
    st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), flat_scalars, max_size=40),
)


@given(flat_containers)
def test_normalize_fast_path_gives_what_the_walk_gives(value: Any) -> None:
    """The writer's shortcut for short flat containers is exact: same record as the walk,
    and a copy (a later change to the original does not reach it)."""
    record = _values.normalize(value)
    assert record == _values._Normalizer(_values.SETTINGS.limits).walk(value, 0)
    assert record is not value


def test_a_deferred_value_that_fails_becomes_a_marker() -> None:
    """A value left for the writer to compute (``_values.Later``) that raises is recorded
    as a marker; the rest of its event stays."""
    def broken() -> Any:
        raise KeyError("x")

    assert _values.normalize(_values.Later(sorted, [3, 1, 2])) == [1, 2, 3]
    assert _values.normalize(_values.Later(broken)) == {"$type": "Later", "$error": "KeyError"}
