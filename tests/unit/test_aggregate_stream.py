"""The aggregate job's stream logic: watermark, revisions, corrections, derived fields."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gridwatch.bus.base import JoinedLines
from gridwatch.config import load_pipeline
from gridwatch.jobs.aggregate.job import AggregateConfig, AggregateCore, AggregateJob
from gridwatch.record import Record, encode, record_id
from tests.unit.jobs_support import FixedClock, published, started

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "xrootd-transfers.yaml"
MIN = 60_000
T0 = 1_714_600_800_000  # a multiple of 10 minutes


def transfer(start: int, end: int | None, size: int, **extra: Any) -> bytes:
    data = {"start_time": start, "end_time": end, "bytes": size, "site": "CERN", **extra}
    stamp = end if end is not None else start
    return encode(
        Record(
            "xrootd", "transfers", stamp, record_id("xrootd", "transfers", stamp, data), data=data
        )
    )


@pytest.fixture
def job(tmp_path: Path) -> AggregateJob:
    config = AggregateConfig(
        inputs=["feed"],
        producer="xrootd",
        output_type="stats",
        window_s=600,
        fields={"bytes": "BIGINT", "start_time": "BIGINT", "end_time": "BIGINT"},
        start_field="start_time",
        end_field="end_time",
        group_by=["site"],
        aggregates={"bytes": "sum(bytes)"},
        spread=["bytes"],
        allowed_lateness_s=1200,
    )
    return started(AggregateJob, "stats", config, tmp_path)


def test_bins_close_with_the_watermark_and_late_records_revise_them(job: AggregateJob) -> None:
    job.process("t", [transfer(T0 + 5 * MIN, T0 + 15 * MIN, 1000)])
    first = published(job)["xrootd_agg_stats"]
    # The watermark is at the record's end (T0 + 15 min): only the first bin is closed.
    assert [(r.data["window_start"], r.data["bytes"], r.data["revision"]) for r in first] == [
        (T0, 500, 1)
    ]
    assert first[0].data["active"] == 0.5 and first[0].data["ended"] == 0
    job.process("t", [transfer(T0 + 20 * MIN, T0 + 31 * MIN, 11)])
    second = published(job)["xrootd_agg_stats"]
    assert [(r.data["window_start"], r.data["bytes"], r.data["revision"]) for r in second] == [
        (T0 + 10 * MIN, 500, 1),
        (T0 + 20 * MIN, 10, 1),
    ]
    # A late record into the closed bin [10, 20) min (the horizon is 31 - 20 = 11 min): same
    # _id, revision 2, counted as late.
    job.process("t", [transfer(T0 + 12 * MIN, T0 + 13 * MIN, 7)])
    third = published(job)["xrootd_agg_stats"]
    assert [(r.data["window_start"], r.data["bytes"], r.data["revision"]) for r in third] == [
        (T0 + 10 * MIN, 507, 2)
    ]
    assert third[0].id == second[0].id
    assert job.context.metrics.value("stats", "late") == 1


def test_records_past_the_allowed_lateness_go_to_the_correction_topic(job: AggregateJob) -> None:
    job.process("t", [transfer(T0 + 60 * MIN, T0 + 61 * MIN, 5)])
    published(job)
    # Horizon: 61 min - 20 min lateness = 41 min; a record starting in the bin [30, 40) is
    # too late, even if it ends in an open bin: nothing of it is applied.
    late = transfer(T0 + 35 * MIN, T0 + 62 * MIN, 99)
    job.process("t", [late])
    out = published(job)
    corrections = out["xrootd_raw_stats_late"]
    assert [c.data["record"]["data"]["bytes"] for c in corrections] == [99]
    assert "allowed_lateness_s=1200" in corrections[0].data["reason"]
    assert "xrootd_agg_stats" not in out
    assert job.context.metrics.value("stats", "too_late") == 1


def test_bad_intervals_are_dead_letters_and_open_ones_end_at_the_timestamp(
    job: AggregateJob,
) -> None:
    backwards = transfer(T0 + 5 * MIN, T0 + 1 * MIN, 3)
    open_ended = transfer(T0 + 2 * MIN, None, 40)
    job.process("t", [backwards, open_ended, transfer(T0 + 30 * MIN, T0 + 30 * MIN, 0)])
    out = published(job)
    dead = out["gridwatch_raw_deadletter"]
    assert [d.data["reason"] for d in dead] == ["stats: interval ends before it starts"]
    # The open interval [2 min, timestamp = 2 min) is zero-length: all 40 bytes in bin 0.
    bins = {r.data["window_start"]: r.data for r in out["xrootd_agg_stats"]}
    assert bins[T0]["bytes"] == 40 and bins[T0]["active_time_ms"] == 0


def test_values_beyond_exact_sums_are_dead_letters_and_the_rest_counts(
    job: AggregateJob,
) -> None:
    huge = transfer(T0 + MIN, T0 + 2 * MIN, 2**60)
    # Many values at the limit fill a bin without wrapping its 64-bit sum.
    fine = [transfer(T0 + MIN, T0 + 2 * MIN, 2**53) for _ in range(1000)]
    job.process("t", [huge, *fine])
    job.windows.observe(T0 + 20 * MIN)
    out = published(job)
    dead = out["gridwatch_raw_deadletter"]
    assert [d.data["reason"] for d in dead] == [
        "stats: bytes is beyond ±9.0072e+15, the range of exact sums"
    ]
    assert [r.data["bytes"] for r in out["xrootd_agg_stats"]] == [1000 * 2**53]


@pytest.mark.parametrize("joined", [False, True], ids=["list", "bus buffer"])
def test_a_line_that_is_not_json_is_a_dead_letter_and_the_batch_counts(
    job: AggregateJob, joined: bool
) -> None:
    good = [transfer(T0 + MIN, T0 + 2 * MIN, 5), transfer(T0 + 3 * MIN, T0 + 4 * MIN, 7)]
    lines = [good[0], b'{"producer": "xrootd", "ty', good[1], b""]
    job.process("t", JoinedLines(b"\n".join(lines), len(lines)) if joined else lines)
    job.windows.observe(T0 + 20 * MIN)
    out = published(job)
    reasons = [d.data["reason"] for d in out["gridwatch_raw_deadletter"]]
    assert reasons == ["stats: not valid JSON", "stats: not valid JSON"]
    assert [r.data["bytes"] for r in out["xrootd_agg_stats"]] == [12]


def test_a_record_from_a_clock_far_ahead_is_a_dead_letter_not_a_watermark(
    job: AggregateJob,
) -> None:
    now = (int(time.time() * 1000) // (10 * MIN)) * 10 * MIN
    job.process("t", [transfer(now - 30 * MIN, now - 25 * MIN, 5)])
    year_ahead = now + 365 * 86_400_000
    job.process(
        "t", [transfer(year_ahead, year_ahead, 7), transfer(now - 9 * MIN, now - 8 * MIN, 3)]
    )
    out = published(job)
    reasons = [d.data["reason"] for d in out["gridwatch_raw_deadletter"]]
    assert reasons == ["stats: event time more than max_future_s=3600 ahead of this host's clock"]
    # The watermark stayed with the honest clocks: the later record is not too late.
    assert "xrootd_agg_stats_late" not in out
    assert job.windows.max_event_ms == now - 8 * MIN
    assert job.context.metrics.value("stats", "too_early") == 1


def test_the_future_guard_reads_the_clock_the_job_is_given(tmp_path: Path) -> None:
    config = AggregateConfig(
        inputs=["feed"],
        producer="xrootd",
        output_type="stats",
        fields={"bytes": "BIGINT", "start_time": "BIGINT", "end_time": "BIGINT"},
        start_field="start_time",
        end_field="end_time",
        aggregates={"bytes": "sum(bytes)"},
    )
    at = FixedClock(T0 / 1000)  # a host whose clock says 2024-05-01
    job = started(AggregateJob, "stats", config, tmp_path, clock=at)
    job.process("t", [transfer(T0, T0 + 30 * MIN, 5), transfer(T0, T0 + 2 * 60 * MIN, 7)])
    out = published(job)
    reasons = [d.data["reason"] for d in out["gridwatch_raw_deadletter"]]
    assert reasons == ["stats: event time more than max_future_s=3600 ahead of this host's clock"]
    assert job.windows.max_event_ms == T0 + 30 * MIN


def test_infinite_values_from_a_division_by_zero_stay_out_of_the_sketches(
    tmp_path: Path,
) -> None:
    config = AggregateConfig(
        inputs=["feed"],
        producer="xrootd",
        output_type="rates",
        fields={"bytes": "BIGINT", "start_time": "BIGINT", "end_time": "BIGINT"},
        derive={"rate": "bytes / ((end_time - start_time) / 1000)"},
        start_field="start_time",
        end_field="end_time",
        group_by=["site"],
        aggregates={"p50": "p50(rate)", "top": "max(rate)"},
    )
    job = started(AggregateJob, "rates", config, tmp_path)
    steady = [transfer(T0 + MIN, T0 + 2 * MIN, 60 * n, site=f"S{n % 2}") for n in range(1, 21)]
    instant = [transfer(T0 + 3 * MIN, T0 + 3 * MIN, 500, site=s) for s in ("S0", "S1", "S2")]
    job.process("t", [*instant, *steady])
    job.windows.observe(T0 + 20 * MIN)
    bins = {r.data["site"]: r.data for r in published(job)["xrootd_agg_rates"]}
    # rates 1..20 bytes/s: S1 holds the odd ones, S0 the even ones; the value at rank 4.5 of
    # ten is the fifth (9 and 10), to 1 %, as if the infinite rates were not there
    assert abs(bins["S1"]["p50"] - 9) < 0.09 and abs(bins["S0"]["p50"] - 10) < 0.1
    assert bins["S2"]["p50"] is None  # only an infinite rate: nothing to rank


def test_a_nan_key_is_one_group_across_batches(tmp_path: Path) -> None:
    config = AggregateConfig(
        inputs=["feed"],
        producer="xrootd",
        output_type="ratio",
        fields={"bytes": "BIGINT", "start_time": "BIGINT", "end_time": "BIGINT"},
        derive={"share": "bytes / 0.0 * 0.0"},  # NaN: inf times zero
        start_field="start_time",
        end_field="end_time",
        group_by=["share"],
        aggregates={"bytes": "sum(bytes)"},
    )
    job = started(AggregateJob, "ratio", config, tmp_path)
    job.process("t", [transfer(T0 + MIN, T0 + 2 * MIN, 5)])
    job._aggregate_pending()
    job.process("t", [transfer(T0 + 3 * MIN, T0 + 4 * MIN, 7)])
    job.windows.observe(T0 + 20 * MIN)
    bins = published(job)["xrootd_agg_ratio"]
    assert [(b.data["share"], b.data["bytes"]) for b in bins] == [(None, 12)]


def test_checkpoint_round_trip_keeps_open_bins(job: AggregateJob, tmp_path: Path) -> None:
    job.process("t", [transfer(T0 + 5 * MIN, T0 + 15 * MIN, 1000)])
    published(job)
    state = job.checkpoint()
    again = AggregateJob("stats", job.config, job.context)
    again.restore(state)
    again.process("t", [transfer(T0 + 25 * MIN, T0 + 26 * MIN, 1)])
    bins = {r.data["window_start"]: r.data["bytes"] for r in published(again)["xrootd_agg_stats"]}
    assert bins == {T0 + 10 * MIN: 500}


def example_keys(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    config = load_pipeline(EXAMPLE).components["stats_10m"].config
    core = AggregateCore(config)
    lines = [transfer(T0, T0 + MIN, 0, **row) for row in rows]
    columns, _, rejected = core.on_lines(lines)
    assert rejected == []
    return list(zip(*(k.to_pylist() for k in columns.keys), strict=True))


def test_seed_001_derived_fields() -> None:
    keys = example_keys(
        [
            # read at CERN from CERN: local, a whole file
            {
                "client_domain": "cern.ch",
                "server_domain": "cern.ch",
                "user_protocol": "root",
                "read_bytes": 10,
                "written_bytes": 0,
                "file_size": 10,
            },
            # written from BNL to CERN: remote, partial
            {
                "client_domain": "bnl.gov",
                "server_domain": "cern.ch",
                "user_protocol": "root",
                "write_bytes_at_close": 4,
                "read_bytes_at_close": 0,
                "file_size": 10,
            },
            # read by KIT from CERN: data flows server -> client
            {
                "client_domain": "kit.edu",
                "server_domain": "cern.ch",
                "user_protocol": "https",
                "read_bytes": 7,
                "written_bytes": 0,
                "file_size": 7,
            },
            # opened and closed without moving data
            {
                "client_domain": "kit.edu",
                "server_domain": "cern.ch",
                "user_protocol": "https",
                "read_bytes": 0,
                "written_bytes": 0,
                "file_size": 7,
            },
        ]
    )
    # (src_domain, dst_domain, user_protocol, is_remote_access, is_transfer, activity)
    assert keys == [
        ("cern.ch", "cern.ch", "root", 0, 1, "r"),
        ("bnl.gov", "cern.ch", "root", 1, 0, "w"),
        ("cern.ch", "kit.edu", "https", 1, 1, "r"),
        ("cern.ch", "kit.edu", "https", 1, 0, "u"),
    ]
