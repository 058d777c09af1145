"""Pages to envelope lines: the lines the source builds directly equal encoded Records."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal

import msgspec

from gridwatch.record import EncodedRecords, Record, decode_lines, encode, encode_lines
from gridwatch.runtime.publish import by_topic
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from gridwatch.sources.sql_incremental.database import Fetched
from gridwatch.sources.sql_incremental.rows import RowConverter
from gridwatch.sources.sql_incremental.values import Kind, TimeAxis

NAMES = ["PandaID", "hs06sec", "ratio", "site", "modificationtime", "starttime", "big"]
ROWS = [
    (
        Decimal("4000000001"),
        Decimal("16.125"),
        1.45678886e16,
        "CERN-PROD",
        datetime(2024, 3, 31, 3, 30),  # noqa: DTZ001 - a database's naive timestamp
        None,
        Decimal("123456789012345678901234567890"),
    ),
    (
        Decimal("4000000002"),
        Decimal("0.500"),
        0.25,
        'quote " and \\ and ünïcode',
        datetime(2024, 3, 31, 3, 30),  # noqa: DTZ001
        datetime(2024, 3, 31, 1, 0),  # noqa: DTZ001
        None,
    ),
]


def converter(**options: object) -> RowConverter:
    cfg = SqlIncrementalConfig(
        url="postgresql+psycopg://u@h/d",
        query="SELECT * FROM jobs WHERE modificationtime >= :committed_value",
        key_columns=["pandaid"],
        version="2",
        **options,  # type: ignore[arg-type]
    )
    return RowConverter(cfg, TimeAxis(Kind.NAIVE_TIME, "Europe/Zurich"))


def page(names: list[str] = NAMES) -> Fetched:
    return Fetched(names, list(ROWS), [0, 3, None, None, None, None, None])


def test_lines_are_the_encoded_records_exactly() -> None:
    converted = converter().convert(page())
    records = converted.build()
    assert converted.lines == [encode(r) for r in records]
    first, second = records
    assert first.data["pandaid"] == 4000000001 and isinstance(first.data["pandaid"], int)
    assert first.data["hs06sec"] == msgspec.Raw(b"16.125")
    assert b'"ratio":14567888600000000' in converted.lines[0]
    assert b'"big":123456789012345678901234567890' in converted.lines[0]
    # 03:30 in Zurich on 2024-03-31 is 01:30 UTC; the commit value is the envelope time
    assert first.timestamp == first.data["modificationtime"] == 1711848600000
    # 01:00 is still winter time (UTC+1)
    assert second.data["starttime"] == 1711843200000 and first.data["starttime"] is None
    assert second.data["site"] == 'quote " and \\ and ünïcode'
    assert (first.version, first.type_prefix, first.producer) == ("2", "raw", "panda")
    # the id is the 128-bit hash of producer, type, key and commit value
    expected = hashlib.blake2b(digest_size=16)
    for part in (b"panda", b"all", b"4000000001"):
        expected.update(len(part).to_bytes(8, "little") + part)
    expected.update(b"2024-03-31T03:30:00")
    assert first.id == expected.hexdigest()
    assert decode_lines(converted.lines)[1].data["site"] == second.data["site"]


def test_repeated_column_names_keep_the_last_value_like_a_dict() -> None:
    names = [*NAMES[:-1], "site"]
    converted = converter(lowercase_columns=False).convert(page(names))
    (data, _) = [r.data for r in decode_lines(converted.lines)]
    assert data["site"] == 123456789012345678901234567890
    assert list(data) == names[:-1]
    assert converted.lines == [encode(r) for r in converted.build()]


def test_encoded_records_hand_over_lines_and_build_records_on_demand() -> None:
    converted = converter().convert(page())
    only_second = converted.records([1])
    assert isinstance(only_second, EncodedRecords) and len(only_second) == 1
    assert encode_lines(only_second) == [converted.lines[1]]
    assert by_topic("panda", only_second) == [("panda_raw_all", "panda", [converted.lines[1]])]
    (record,) = list(only_second)
    assert record.data["pandaid"] == 4000000002 and record is only_second[0]
    decoded = EncodedRecords("panda_raw_all", converted.lines)  # no builder: decoded lines
    assert [r.id for r in decoded] == [r.id for r in converted.build()]
    assert all(isinstance(r, Record) for r in decoded[0:2])


def test_keys_and_versions_are_made_per_row() -> None:
    converted = converter().convert(page())
    assert converted.key(-1) == (Decimal("4000000002"),)
    assert [key for _, key in converted.versions()] == [
        (Decimal("4000000001"),),
        (Decimal("4000000002"),),
    ]
