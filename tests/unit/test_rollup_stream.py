"""The rollup job's stream logic: input bins that are not usable are dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridwatch.jobs.rollup.job import RollupConfig, RollupJob
from gridwatch.record import Record, encode, record_id
from tests.unit.bin_reference import Acc
from tests.unit.jobs_support import published, started

DAY = 86_400_000
T0 = 1_714_521_600_000  # a day boundary


def child(start: int, acc: Any, **extra: Any) -> bytes:
    data = {"window_start": start, "window_end": start + 600_000, "site": "CERN"}
    data.update({"revision": 1, "_acc": acc, **extra})
    rid = record_id("xrootd", "stats_10m", start, data)
    return encode(Record("xrootd", "stats_10m", start, rid, type_prefix="agg", data=data))


def test_unusable_input_bins_are_dead_letters_and_the_rest_rolls_up(tmp_path: Path) -> None:
    config = RollupConfig(
        inputs=["stats_10m"],
        producer="xrootd",
        output_type="stats_1d",
        group_by=["site"],
        aggregates={"bytes": "sum(bytes)"},
    )
    job = started(RollupJob, "daily", config, tmp_path)
    good = Acc(2, 10, 2, {"bytes": 40}, {"bytes": 2}).to_json()
    broken = [1, 2, 3]  # not an accumulator
    lines = [child(T0, good), child(T0 + 600_000, broken), child(T0 + 1_200_000, good)]
    job.process("t", lines)
    job.windows.observe(T0 + 2 * DAY)
    out = published(job)
    reasons = [d.data["reason"] for d in out["gridwatch_raw_deadletter"]]
    assert len(reasons) == 1 and reasons[0].startswith("daily: not a bin with its state")
    assert [(r.data["window_start"], r.data["bytes"]) for r in out["xrootd_agg_stats_1d"]] == [
        (T0, 80)
    ]
