"""The ``filter`` transform keeps records by producer, type, prefix and payload values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridwatch.bus import open_bus
from gridwatch.components import Context
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, Record
from gridwatch.transforms.filter import Filter


def rec(producer: str, type_: str, data: dict[str, Any], prefix: str = "raw") -> Record:
    return Record(producer, type_, 1, f"{producer}-{type_}-{data}", type_prefix=prefix, data=data)  # type: ignore[arg-type]


def make(tmp_path: Path, **config: Any) -> Filter:
    context = Context(tmp_path, Metrics(), open_bus(None, tmp_path), EnvelopeDecoder())
    return Filter("f", Filter.Config(inputs=["src"], **config), context)


RECORDS = [
    rec("panda", "jobs", {"cloud": "CERN", "job": {"site": "CERN-PROD"}}),
    rec("panda", "jobs", {"cloud": "DE", "job": {"site": "FZK"}}),
    rec("panda", "tasks", {"cloud": "CERN"}),
    rec("xrootd", "transfers", {"server_domain": "cern.ch"}),
    rec("panda", "jobs", {"job": "not an object"}, prefix="enr"),
]


def test_every_condition_must_hold(tmp_path: Path) -> None:
    kept = make(tmp_path, producers=["pan*"], types=["jobs"], fields={"cloud": ["CERN", "US"]})
    assert [r.data for r in kept.process(RECORDS)] == [RECORDS[0].data]


def test_dotted_paths_reach_into_objects_and_a_missing_field_does_not_match(
    tmp_path: Path,
) -> None:
    kept = make(tmp_path, fields={"job.site": ["FZK", "CERN-PROD"]}).process(RECORDS)
    assert [r.data["cloud"] for r in kept] == ["CERN", "DE"]


def test_exclude_keeps_the_others_and_filtered_records_are_counted(tmp_path: Path) -> None:
    transform = make(tmp_path, type_prefixes=["raw"], exclude=True)
    assert transform.process(RECORDS) == [RECORDS[4]]
    assert transform.context.metrics.value("f", "filtered") == 4


def test_no_condition_keeps_everything_and_the_input_is_not_changed(tmp_path: Path) -> None:
    before = list(RECORDS)
    assert make(tmp_path).process(RECORDS) == before
    assert before == RECORDS
