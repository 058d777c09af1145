"""The accounting job's stream logic: a producer's clock far ahead does not move its clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gridwatch.jobs.accounting.job import AccountingConfig, AccountingJob
from gridwatch.record import Record, encode, record_id
from tests.unit.jobs_support import published, started

MIN = 60_000


def update(pandaid: int, at_ms: int, status: str) -> bytes:
    data: dict[str, Any] = {"pandaid": pandaid, "modificationtime": at_ms, "jobstatus": status}
    return encode(
        Record("panda", "jobs", at_ms, record_id("panda", "jobs", at_ms, data), data=data)
    )


def test_an_update_from_a_clock_far_ahead_is_a_dead_letter(tmp_path: Path) -> None:
    config = AccountingConfig(
        inputs=["feed"],
        producer="panda",
        output_type="jobs_snapshot",
        fields={"pandaid": "BIGINT", "modificationtime": "BIGINT", "jobstatus": "VARCHAR"},
        entity_field="pandaid",
        version_field="modificationtime",
        state_field="jobstatus",
        snapshot_interval_s=600,
    )
    job = started(AccountingJob, "acct", config, tmp_path)
    now = (int(time.time() * 1000) // (10 * MIN)) * 10 * MIN
    year_ahead = now + 365 * 86_400_000
    job.process("t", [update(1, now - 25 * MIN, "running"), update(2, year_ahead, "running")])
    job.process("t", [update(3, now - 5 * MIN, "running")])
    out = published(job)
    reasons = [d.data["reason"] for d in out["gridwatch_raw_deadletter"]]
    assert reasons == ["acct: version more than max_future_s=3600 ahead of this host's clock"]
    # The snapshot clock stayed with the honest updates: one snapshot, of entity 1.
    snapshots = out["panda_agg_jobs_snapshot"]
    assert [(s.data["snapshot_time"], s.data["count"]) for s in snapshots] == [(now - 10 * MIN, 1)]
    assert job.context.metrics.value("acct", "too_early") == 1
