"""The sql_incremental source's pure parts: settings, statements, values, cursor codec."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from pydantic import ValidationError

from gridwatch.record import canonical_json
from gridwatch.sim.panda import panda_query
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig, start_offset_s
from gridwatch.sources.sql_incremental.cursor import Cursor
from gridwatch.sources.sql_incremental.query import (
    Page,
    page_statement,
    prepare,
    uses_text_placeholder,
)
from gridwatch.sources.sql_incremental.values import (
    Kind,
    TimeAxis,
    converter_for,
    decimal_converter,
    decode_value,
    encode_value,
)

SEED_QUERY = """SELECT * FROM (
  SELECT * FROM atlas_panda.JOBSACTIVE4 WHERE modificationtime >=
    TO_DATE(':committed_value', 'YYYY-MM-DD HH24:MI:SS')
    AND cloud != 'OSG' AND VO NOT IN ('cms','CMS')
) ORDER BY "modificationtime"
"""


def settings(**options: object) -> SqlIncrementalConfig:
    return SqlIncrementalConfig(url="sqlite:///x.db", **options)  # type: ignore[arg-type]


def test_query_must_have_the_placeholder_and_an_inclusive_comparison() -> None:
    with pytest.raises(ValidationError, match="must contain :committed_value"):
        settings(query="SELECT * FROM t")
    with pytest.raises(ValidationError, match="compare with >="):
        settings(query="SELECT * FROM t WHERE modificationtime > :committed_value")
    with pytest.raises(ValidationError, match="compare with >="):
        settings(query="SELECT * FROM t WHERE :committed_value < modificationtime")
    assert settings(query=SEED_QUERY).batch_rows == 40000
    assert settings(query="SELECT * FROM t WHERE t >= :committed_value").commit_column


def test_column_names_and_zone_are_checked() -> None:
    with pytest.raises(ValidationError, match="plain column name"):
        settings(query="x >= :committed_value", commit_column="a; DROP TABLE t")
    with pytest.raises(ValidationError, match="unknown time zone"):
        settings(query="x >= :committed_value", database_timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="must not also be"):
        settings(query="x >= :committed_value", key_columns=["modificationtime"])
    with pytest.raises(ValidationError, match="now - N"):
        settings(query="x >= :committed_value", start_value="now + 2m")
    assert start_offset_s("now - 2m") == 120.0
    assert start_offset_s("now") == 0.0


def test_the_seeds_quoted_placeholder_is_bound_as_text() -> None:
    prepared = prepare(SEED_QUERY + ";\n")
    assert uses_text_placeholder(prepared)
    assert "TO_DATE(:committed_value_text, 'YYYY-MM-DD HH24:MI:SS')" in prepared
    assert not prepared.endswith(";")


def test_page_statement_wraps_the_query_with_a_keyset() -> None:
    sql = page_statement(
        "postgresql", "SELECT 1", "modificationtime", ["pandaid"], Page(after=True, upper=True)
    )
    assert "(gw_rows.modificationtime > :gw_after_0)" in sql
    assert "(gw_rows.modificationtime = :gw_after_0 AND gw_rows.pandaid > :gw_after_1)" in sql
    assert "gw_rows.modificationtime <= :gw_upper" in sql
    assert sql.endswith("ORDER BY gw_rows.modificationtime, gw_rows.pandaid\nLIMIT :gw_limit")
    oracle = page_statement("oracle", "SELECT 1", "t", ["a", "b"], Page(after=False, upper=False))
    assert oracle.endswith("FETCH FIRST :gw_limit ROWS ONLY") and "WHERE 1 = 1" in oracle


def test_panda_query_follows_the_seed_per_dialect() -> None:
    pg = panda_query("postgresql", "atlas_panda")
    assert pg.count("UNION ALL") == 3 and "atlas_panda.jobsarchived4" in pg
    assert pg.count("cloud != 'OSG' AND VO NOT IN ('cms','CMS')") == 4
    assert "atlas_panda.JOBSWAITING4" in panda_query("mysql", "atlas_panda")


def test_decimals_are_exact_and_whole_ones_are_integers() -> None:
    convert = decimal_converter("number")
    assert convert(Decimal("896")) == 896 and isinstance(convert(Decimal("896")), int)
    assert convert(Decimal("1.45678886E+9")) == 1456788860
    raw = convert(Decimal("1456788860.5"))
    assert isinstance(raw, msgspec.Raw) and bytes(raw) == b"1456788860.5"
    assert bytes(convert(Decimal("1E-7"))) == b"0.0000001"
    assert decimal_converter("string")(Decimal("12.50")) == "12.50"
    assert decimal_converter("number", scale=0)(Decimal("4000000001")) == 4000000001
    assert convert(Decimal("NaN")) == "NaN"
    big_float = converter_for(1.45678886e16, TimeAxis(Kind.OTHER, "UTC"), "epoch_ms", "number")
    assert canonical_json({"x": big_float(1.45678886e16)}) == b'{"x":14567888600000000}'


def test_naive_times_are_read_in_the_database_zone() -> None:
    zurich = TimeAxis(Kind.NAIVE_TIME, "Europe/Zurich")
    winter = datetime(2024, 1, 15, 12, 0)  # noqa: DTZ001 - as the database returns it
    assert zurich.datetime_converter("epoch_ms")(winter) == 1705316400000  # 11:00 UTC
    assert zurich.datetime_converter("iso")(winter) == "2024-01-15T11:00:00Z"
    utc = TimeAxis(Kind.NAIVE_TIME, "UTC")
    assert utc.datetime_converter("epoch_ms")(winter) == 1705320000000
    aware = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    assert zurich.datetime_converter("epoch_ms")(aware) == 1705320000000
    text = TimeAxis(Kind.TEXT_TIME, "UTC")
    assert text.text_time_converter("epoch_ms")("2024-01-15 12:00:00.000000") == 1705320000000
    assert text.from_epoch(1705320000) == "2024-01-15 12:00:00"
    assert text.shift("2024-01-15 12:00:00", -60) == "2024-01-15 11:59:00"


def test_cursor_round_trips_through_json_exactly() -> None:
    when = datetime(2024, 1, 15, 12, 0, 0, 123456)  # noqa: DTZ001
    cursor = Cursor(value=when, key=(Decimal("4000000001"),), scanned_at=1.5)
    cursor.remember(when, (Decimal("4000000001"),))
    cursor.remember(when, (Decimal("4000000002"),))
    state = msgspec.json.decode(msgspec.json.encode(cursor.to_json()))
    back = Cursor.from_json(state)
    assert back == cursor
    assert back.was_emitted(when, (Decimal("4000000002"),))
    assert not back.was_emitted(when, (Decimal("4000000003"),))
    back.forget_before(datetime(2025, 1, 1))  # noqa: DTZ001
    assert back.seen_count == 0
    for value in (Decimal("1.50"), "text", 7, None, datetime(2024, 1, 1, tzinfo=UTC)):
        assert decode_value(encode_value(value)) == value
