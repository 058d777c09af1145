"""How records become points, and how points become InfluxDB line protocol."""

from __future__ import annotations

import pytest

from gridwatch.record import Record
from gridwatch.serving.points import MeasurementRule, PointMaker, PointRules
from gridwatch.sinks.influxdb.sink import line_of


def record(**kw: object) -> Record:
    defaults: dict[str, object] = {"producer": "ei", "type": "hadoop", "timestamp": 1000, "id": "x"}
    return Record(**{**defaults, **kw})  # type: ignore[arg-type]


def test_idb_tags_and_fields_decide_like_monit() -> None:
    point = PointMaker(PointRules()).point(
        record(
            data={"host": "ai01", "dead": 2, "state": "ok", "seq": 4},
            idb_tags=["host"],
            idb_fields=["dead", "state"],
        )
    )
    assert point.measurement == "ei_hadoop"
    assert point.tags == {"host": "ai01"}
    assert point.fields == {"dead": 2, "state": "ok"}
    assert point.replaces_by_time


def test_agg_records_use_their_group_keys_as_tags() -> None:
    point = PointMaker(PointRules()).point(
        record(
            type_prefix="agg",
            data={"site": "CERN", "state": "running", "jobs": 12, "window_start": 5, "ok": True},
        )
    )
    assert point.tags == {"site": "CERN", "state": "running"}
    assert point.fields == {"jobs": 12, "ok": True}
    assert point.replaces_by_time


def test_raw_records_without_rules_have_numeric_fields_and_no_tags() -> None:
    point = PointMaker(PointRules()).point(record(data={"site": "CERN", "cpu": 1.5, "seq": 1}))
    assert (point.tags, point.fields, point.replaces_by_time) == ({}, {"cpu": 1.5}, False)


def test_a_measurement_rule_wins_over_the_record() -> None:
    rules = PointRules(measurements={"ei_hadoop": MeasurementRule(tags=["site"], fields=["cpu"])})
    point = PointMaker(rules).point(
        record(data={"site": "CERN", "cpu": 3, "mem": 4}, idb_tags=["mem"])
    )
    assert (point.tags, point.fields) == ({"site": "CERN"}, {"cpu": 3})


def test_a_record_without_values_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="ei_hadoop: the record has no field values"):
        PointMaker(PointRules()).point(record(data={"site": "CERN", "nan": float("nan")}))


def test_line_protocol_escapes_and_types() -> None:
    point = PointMaker(PointRules()).point(
        record(
            producer="ei",
            type="web",
            data={"host": "a b,c=d", "ms": 12, "up": True, "msg": 'say "hi"\\', "f": 0.5},
            idb_tags=["host"],
            idb_fields=["ms", "up", "msg", "f"],
        )
    )
    assert line_of(point) == r'ei_web,host=a\ b\,c\=d ms=12.0,up=true,msg="say \"hi\"\\",f=0.5 1000'
    assert "ms=12i" in line_of(point, integers=True)
