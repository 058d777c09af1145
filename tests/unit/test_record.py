"""The envelope: decoding, normalisation, rejection reasons and identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.config.pipeline import parse_pipeline
from gridwatch.config.problems import ConfigProblems
from gridwatch.record import (
    EnvelopeDecoder,
    Record,
    RecordError,
    TimePolicy,
    decode_lines,
    encode_joined,
    encode_lines,
    format_ms,
    is_name,
    record_id,
    to_epoch_ms,
)

NOW_S = 1_800_000_000.0


def decoder(max_depth: int = 64, **policy: float) -> EnvelopeDecoder:
    return EnvelopeDecoder(TimePolicy(**policy), clock=lambda: NOW_S, max_depth=max_depth)


def env(**fields: object) -> dict[str, object]:
    return {"producer": "panda", "type": "jobs", "timestamp": NOW_S, "data": {"a": 1}} | fields


def test_seconds_and_milliseconds_are_detected() -> None:
    assert to_epoch_ms(1_700_000_000) == 1_700_000_000_000
    assert to_epoch_ms(1_700_000_000.5) == 1_700_000_000_500
    assert to_epoch_ms(1_700_000_000_123) == 1_700_000_000_123
    assert to_epoch_ms("1700000000") == 1_700_000_000_000


def test_iso_8601_with_and_without_zone() -> None:
    assert to_epoch_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert to_epoch_ms("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert to_epoch_ms("2023-11-14T22:13:20") == 1_700_000_000_000  # naive means UTC


@pytest.mark.parametrize("bad", ["yesterday", "", float("nan"), float("inf"), True])
def test_bad_times_are_rejected(bad: object) -> None:
    with pytest.raises(RecordError):
        to_epoch_ms(bad)  # type: ignore[arg-type]


def test_batch_keeps_good_records_and_explains_bad_ones() -> None:
    body = json.dumps(
        [
            env(),
            env(producer=42),
            env(producer="Panda"),
            env(type_prefix="cooked"),
            env(data=[1, 2]),
            {"type": "jobs"},
            env(extra=1),
            env(timestamp=NOW_S + 7200),
            env(timestamp="never"),
        ]
    ).encode()
    result = decoder().decode_json(body)
    assert len(result.records) == 1
    reasons = {r.index: r.reason for r in result.rejected}
    assert reasons[1] == "$[1].producer: Expected `str`, got `int`"
    assert reasons[2].startswith("$[2].producer: 'Panda' is not a lowercase name")
    assert reasons[3] == "$[3].type_prefix: Invalid enum value 'cooked' (expected raw, enr or agg)"
    assert reasons[4] == "$[4].data: Expected `object`, got `array`"
    assert reasons[5] == "$[5]: Object missing required field `producer`"
    assert reasons[6] == "$[6]: Object contains unknown field `extra`"
    assert "in the future" in reasons[7] and reasons[7].startswith("$[7].timestamp")
    assert reasons[8].startswith("$[8].timestamp: expected epoch or ISO 8601 time")
    assert json.loads(result.rejected[0].raw)["producer"] == 42  # the input is kept
    assert json.loads(result.rejected[1].raw) == env(producer="Panda")  # exactly as sent


def test_ndjson_rejects_malformed_lines_alone() -> None:
    lines = [json.dumps(env()), "{not json", "", json.dumps(env(type="transfers"))]
    result = decoder().decode_ndjson("\n".join(lines).encode())
    assert [r.type for r in result.records] == ["jobs", "transfers"]
    assert len(result.rejected) == 1
    assert result.rejected[0].index == 1
    assert result.rejected[0].raw == b"{not json"


def test_malformed_body_is_one_clear_error() -> None:
    with pytest.raises(RecordError, match="malformed JSON"):
        decoder().decode_json(b"[{")
    with pytest.raises(RecordError, match="expected a JSON object or array"):
        decoder().decode_json(b"42")


def test_time_policy_bounds() -> None:
    strict = decoder(max_future_s=10, max_past_s=60)
    ok = strict.decode_objects([env(timestamp=NOW_S + 5), env(timestamp=NOW_S - 59)])
    bad = strict.decode_objects([env(timestamp=NOW_S + 11), env(timestamp=NOW_S - 61)])
    assert len(ok.records) == 2 and not ok.rejected
    assert len(bad.rejected) == 2 and not bad.records


def test_missing_timestamp_is_the_receive_time() -> None:
    (record,) = decoder().decode_objects([{"producer": "p", "type": "t"}]).records
    assert record.timestamp == round(NOW_S * 1000)
    assert record.data == {}


def test_id_is_deterministic_and_given_ids_are_kept() -> None:
    a, b, c = decoder().decode_objects([env(), env(), env(_id="mine")]).records
    assert a.id == b.id and len(a.id) == 32
    assert c.id == "mine"


def test_id_depends_on_keys_and_values_not_on_key_order() -> None:
    base = record_id("p", "t", 1, {"foo": "bar"})
    assert base != record_id("p", "t", 1, {"bar": "foo"})
    assert record_id("p", "t", 1, {"x": 1, "y": 2}) == record_id("p", "t", 1, {"y": 2, "x": 1})
    assert base != record_id("p", "t", 2, {"foo": "bar"})
    assert base != record_id("p", "u", 1, {"foo": "bar"})


def test_topic_follows_the_envelope() -> None:
    record = Record("panda", "all", 0, "x", type_prefix="enr")
    assert record.topic == "panda_enr_all"


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=20)
            | st.floats(allow_nan=False, allow_infinity=False),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=6,
    )
)
def test_encoding_round_trips_any_payload(data: dict[str, object]) -> None:
    (record,) = decoder().decode_objects([env(data=data)]).records
    (back,) = decode_lines(encode_lines([record]))
    assert back == record
    assert back.data == data


def test_encode_joined_is_the_lines_joined_by_newlines() -> None:
    records = decoder().decode_objects([env(data={"n": i, "s": "é\n"}) for i in range(3)]).records
    assert encode_joined(records) == b"\n".join(encode_lines(records))
    assert encode_joined([]) == b""


def test_array_fast_path_matches_the_general_path() -> None:
    """Records decoded from a JSON array (common case inline) equal one-by-one decoding."""
    ms = int(NOW_S * 1000)
    envelopes = [
        env(timestamp=ms),  # epoch milliseconds
        env(timestamp=int(NOW_S) - 5),  # epoch seconds
        env(producer="atlas", type="transfers", timestamp=ms + 1),  # names not seen yet
        env(timestamp=NOW_S + 0.5),  # a float
        env(timestamp="2027-01-15T08:00:00Z"),  # a string
        env(timestamp=ms + 10 * 3600 * 1000),  # too far in the future
        env(producer="Bad Name", timestamp=ms),
        env(timestamp=ms, _id="given"),
        env(timestamp=None),
    ]
    body = json.dumps(envelopes).encode()
    fast = decoder().decode_json(body)
    one_by_one = [decoder().decode_json(json.dumps(e).encode()) for e in envelopes]
    assert fast.records == [r for result in one_by_one for r in result.records]
    assert [(r.index, r.reason) for r in fast.rejected] == [
        (5, one_by_one[5].rejected[0].reason.replace("$[0]", "$[5]")),
        (6, one_by_one[6].rejected[0].reason.replace("$[0]", "$[6]")),
    ]
    assert [json.loads(r.raw) for r in fast.rejected] == [envelopes[5], envelopes[6]]
    assert fast.records[0].timestamp == ms and fast.records[1].timestamp == (int(NOW_S) - 5) * 1000


def nested(levels: int, leaf: object = 1) -> object:
    """``levels`` levels of objects and arrays, alternating, around ``leaf``."""
    value = leaf
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


def test_data_may_nest_up_to_max_depth_and_no_deeper() -> None:
    shallow = env(data={"a": nested(63)})  # data itself is level 1
    deep = env(data={"a": nested(64)})
    for decode in (
        lambda items: decoder(max_depth=64).decode_json(json.dumps(items).encode()),
        lambda items: decoder(max_depth=64).decode_ndjson(
            "\n".join(json.dumps(i) for i in items).encode()
        ),
        lambda items: decoder(max_depth=64).decode_objects(items),
    ):
        result = decode([env(), shallow, deep, env()])
        assert len(result.records) == 3
        assert [(r.index, r.reason) for r in result.rejected] == [
            (2, "$[2].data: nested deeper than 64 levels")
        ]
    assert decoder(max_depth=2).decode_json(json.dumps(env(data={"a": [1]})).encode()).records
    single = decoder(max_depth=2).decode_json(json.dumps(env(data={"a": [[1]]})).encode())
    assert [r.reason for r in single.rejected] == ["$[0].data: nested deeper than 2 levels"]


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_records_nested_past_the_recursion_limit_are_rejected_alone(depth: int) -> None:
    deep_data = '{"a": ' + "[" * depth + "]" * depth + "}"
    deep_line = json.dumps(env(data={"a": 1})).replace('{"a": 1}', deep_data)
    result = decoder().decode_ndjson(f"{json.dumps(env())}\n{deep_line}".encode())
    assert len(result.records) == 1
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "$[1].data: nested deeper than 64 levels")
    ]
    assert result.rejected[0].raw == deep_line.encode()
    single = decoder().decode_json(deep_line.encode())
    assert [r.reason for r in single.rejected] == ["$[0].data: nested deeper than 64 levels"]


def test_an_array_too_deep_to_split_is_refused_as_a_whole() -> None:
    body = b"[" + json.dumps(env()).encode() + b"," + b"[" * 5000 + b"]" * 5000 + b"]"
    with pytest.raises(RecordError, match="nests too deeply to be split"):
        decoder().decode_json(body)
    with pytest.raises(RecordError, match="nests too deeply to be split"):
        decoder().decode_json(b"[" * 5000 + b"]" * 5000)


def test_dead_letters_keep_deep_originals_as_text_without_recursing() -> None:
    from gridwatch.record import decode_one
    from gridwatch.record.deadletter import dead_letter, original_of

    shallow = json.dumps(env(data={"a": [1]})).encode()
    assert original_of(decode_one(dead_letter(shallow, "r", "in"))) == json.loads(shallow)
    for depth in (70, 5_000, 100_000):
        deep = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
        letter = decode_one(dead_letter(deep, "too deep", "in"))
        assert original_of(letter) == deep.decode()
        assert letter.data["reason"] == "too deep"
    assert original_of(decode_one(dead_letter(b"[[1]]", "r", "in", max_depth=1))) == "[[1]]"


@pytest.mark.parametrize(
    "timestamp",
    [
        1e17,
        -1e17,
        10**30,
        -(10**30),
        1e300,
        "1e17",
        "99999-01-01T00:00:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_timestamps_outside_years_1_to_9999_are_rejected_alone(timestamp: object) -> None:
    wide = decoder(max_future_s=1e30, max_past_s=1e30)  # the policy alone would allow them
    envelopes = [env(), env(timestamp=timestamp), env()]
    for result in (
        wide.decode_json(json.dumps(envelopes).encode()),
        wide.decode_objects(envelopes),
    ):
        assert len(result.records) == 2
        (rejection,) = result.rejected
        assert rejection.index == 1
        assert rejection.reason.startswith("$[1].timestamp: ")


def test_the_years_1_and_9999_themselves_are_accepted_when_the_policy_allows() -> None:
    wide = decoder(max_future_s=1e30, max_past_s=1e30)
    first, last = wide.decode_objects(
        [env(timestamp="0001-01-01T00:00:00Z"), env(timestamp="9999-12-31T23:59:59.999Z")]
    ).records
    assert (first.timestamp, last.timestamp) == (-62_135_596_800_000, 253_402_300_799_999)
    assert format_ms(first.timestamp) == "0001-01-01T00:00:00Z"
    assert format_ms(10**30) == f"{10**30} ms"


@pytest.mark.parametrize("name", ["panda\n", "panda\nx", "\npanda", "panda\r", "pan da", ""])
def test_names_must_match_to_their_very_end(name: str) -> None:
    for field in ("producer", "type"):
        result = decoder().decode_json(json.dumps([env(**{field: name})]).encode())
        assert not result.records
        assert result.rejected[0].reason.startswith(f"$[0].{field}: ")
    assert not is_name(name)
    assert is_name("panda") and is_name("a" * 64) and not is_name("a" * 65)


def test_configs_with_a_name_pattern_refuse_a_final_newline(tmp_path: Path) -> None:
    """``NAME_PATTERN`` is also a pydantic ``pattern``: its engine must not let "\\n" pass."""
    text = """
sources:
  gen: {type: generator}
transforms:
  stamp:
    type: set_fields
    inputs: [gen]
    envelope: {producer: PRODUCER}
sinks:
  out: {type: jsonl, inputs: [stamp], directory: out}
"""
    good = text.replace("PRODUCER", "panda")
    bad = text.replace("PRODUCER", '"panda\\n"')
    assert parse_pipeline(good, "p.yaml", tmp_path).components["stamp"].config
    with pytest.raises(ConfigProblems) as caught:
        parse_pipeline(bad, "p.yaml", tmp_path)
    assert [p.path for p in caught.value.problems] == [
        ("transforms", "stamp", "envelope", "producer")
    ]
    with pytest.raises(ConfigProblems, match="ids are letters"):
        parse_pipeline(good.replace("  stamp:", '  "stamp\\n":'), "p.yaml", tmp_path)


def test_records_nested_near_the_recursion_limit_never_escape_as_errors() -> None:
    """Around Python's recursion limit msgspec may decode a record once and fail the next time
    (from a deeper stack): every depth must still be a rejection or a whole-body RecordError."""
    for depth in range(800, 1000):
        body = json.dumps([env(), env(data={"a": "DEEP"})]).replace(
            '"DEEP"', "[" * depth + "]" * depth
        )
        try:
            result = decoder().decode_json(body.encode())
        except RecordError as exc:
            assert "nests too deeply" in str(exc)
            continue
        assert len(result.records) == 1
        assert [r.reason for r in result.rejected] == ["$[1].data: nested deeper than 64 levels"]
