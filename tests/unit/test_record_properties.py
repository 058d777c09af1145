"""Properties of the envelope decoder over generated input: it only ever accepts or rejects.

Whatever the bytes, values, nesting or numbers, decoding returns accepted records and
rejections (or refuses a malformed body with ``RecordError``); accepted records round-trip
through the bus encoding, and every rejection makes a dead letter.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gridwatch.record import (
    DecodeResult,
    EnvelopeDecoder,
    RecordError,
    TimePolicy,
    decode_lines,
    decode_one,
    encode_lines,
)
from gridwatch.record.deadletter import dead_letter, original_of
from gridwatch.record.envelope import MAX_MS, MIN_MS, TYPED_LEVELS

NOW_S = 1_800_000_000.0
MAX_DEPTH = 6
DECODER = EnvelopeDecoder(
    TimePolicy(max_future_s=1e30, max_past_s=1e30), clock=lambda: NOW_S, max_depth=MAX_DEPTH
)
FIELDS = ["producer", "type", "type_prefix", "timestamp", "host", "_id", "version", "data"]

numbers = (
    st.integers()  # unbounded: far past 64 bits
    | st.floats()  # with nan, inf and huge ones
    | st.integers(min_value=-(2**70), max_value=2**70)
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
names = st.sampled_from(["panda", "jobs", "fts", "Panda", "panda\n", "", "a" * 65]) | st.text(
    max_size=8
)
timestamps = (
    numbers
    | st.text(max_size=30)
    | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(["1e17", "-1e17", "99999-01-01T00:00:00", "0001-01-01T00:00:00+01:00"])
)
envelopes = st.fixed_dictionaries(
    {"producer": names, "type": names},
    optional={
        "timestamp": timestamps,
        "type_prefix": st.sampled_from(["raw", "enr", "agg", "cooked"]),
        "host": st.text(max_size=8) | st.integers(),
        "_id": st.text(max_size=8),
        "version": st.text(max_size=4) | st.integers(),
        "data": json_values,
        "idb_tags": st.lists(st.text(max_size=4), max_size=3) | json_values,
        "unknown": json_values,
    },
)


def deep(levels: int, kind: str) -> str:
    """``levels`` nested arrays or objects as JSON text (json.dumps would recurse)."""
    if kind == "[":
        return "[" * levels + "]" * levels
    return '{"k": ' * levels + "1" + "}" * levels


def check(result: DecodeResult, count: int | None = None) -> None:
    """Every accepted record round-trips, every rejection has a reason and a dead letter."""
    for record in result.records:
        assert decode_lines(encode_lines([record])) == [record]
        assert MIN_MS <= record.timestamp <= MAX_MS
    for rejection in result.rejected:
        assert rejection.reason.startswith(f"$[{rejection.index}]")
        letter = decode_one(
            dead_letter(rejection.raw, rejection.reason, "test", max_depth=MAX_DEPTH + 1)
        )
        assert letter.data["reason"] == rejection.reason
    if count is not None:
        assert len(result.records) + len(result.rejected) == count
        assert sorted(r.index for r in result.rejected) == [r.index for r in result.rejected]


def decode_json_or_refuse(body: bytes) -> DecodeResult | None:
    try:
        return DECODER.decode_json(body)
    except RecordError:
        return None


@given(st.binary(max_size=300))
def test_any_bytes_are_accepted_rejected_or_refused(body: bytes) -> None:
    result = decode_json_or_refuse(body)
    if result is not None:
        check(result)
    check(DECODER.decode_ndjson(body))


@given(json_values)
def test_any_json_value_is_accepted_rejected_or_refused(value: Any) -> None:
    body = json.dumps(value).encode()
    result = decode_json_or_refuse(body)
    if result is not None:
        check(result, len(value) if isinstance(value, list) else 1)
    assert DECODER.decode_objects([value]).rejected or isinstance(value, dict)


@given(st.lists(envelopes, min_size=1, max_size=5))
def test_envelopes_are_each_accepted_or_rejected_alone(items: list[dict[str, Any]]) -> None:
    try:
        body = json.dumps(items, allow_nan=False).encode()
    except ValueError:
        assume(False)  # NaN and infinities are not JSON (msgspec would store them as null)
    as_array = DECODER.decode_json(body)
    check(as_array, len(items))
    as_lines = DECODER.decode_ndjson(b"\n".join(json.dumps(i).encode() for i in items))
    check(as_lines, len(items))
    as_objects = DECODER.decode_objects(items)
    check(as_objects, len(items))
    # The three ways agree on which records are taken.
    taken = [r.index for r in as_array.rejected]
    assert [r.index for r in as_lines.rejected] == taken
    assert [r.index for r in as_objects.rejected] == taken


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.integers(min_value=1, max_value=20_000),
    st.sampled_from(["[", "{"]),
    st.sampled_from(["data", "unknown", "body", "array"]),
    st.sampled_from([MAX_DEPTH, TYPED_LEVELS + 5]),  # bounded by msgspec, or by the walk
)
def test_any_nesting_is_a_rejection_or_a_refusal_never_an_error(
    levels: int, kind: str, where: str, max_depth: int
) -> None:
    decoder = EnvelopeDecoder(clock=lambda: NOW_S, max_depth=max_depth)
    nested = deep(levels, kind)
    good = '{"producer": "panda", "type": "jobs"}'
    if where == "data":
        body = f'[{good}, {{"producer": "panda", "type": "jobs", "data": {{"a": {nested}}}}}]'
    elif where == "unknown":
        body = f'[{good}, {{"producer": "panda", "type": "jobs", "x": {nested}}}]'
    elif where == "body":
        body = nested
    else:
        body = f"[{good}, {nested}]"
    try:
        result = decoder.decode_json(body.encode())
    except RecordError:
        return
    check(result)
    if where == "data":
        accepted_deep = len(result.records) == 2
        assert accepted_deep == (levels + 1 <= max_depth)  # data, then the nested value
    for rejection in result.rejected:
        letter = dead_letter(rejection.raw, "r", "test", max_depth=max_depth + 1)
        if levels > max_depth + 1:
            kept = original_of(decode_one(letter))
            assert kept == rejection.raw.decode()  # too deep to keep as an object


@given(timestamps)
def test_any_timestamp_is_accepted_in_range_or_rejected_alone(timestamp: Any) -> None:
    items = [
        {"producer": "panda", "type": "jobs"},
        {"producer": "panda", "type": "jobs", "timestamp": timestamp},
    ]
    try:
        body = json.dumps(items, allow_nan=True).encode()
    except ValueError:
        return
    result = decode_json_or_refuse(body)  # NaN and Infinity are not JSON: refused whole
    if result is None:
        return
    check(result, 2)
    assert result.records[0].producer == "panda"
    assert [r.index for r in result.rejected] in ([], [1])
