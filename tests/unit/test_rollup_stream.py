"""The rollup job's stream logic: unusable input bins are dead letters, revised ones replace
their earlier revision, chains of rollups agree with one rollup, old checkpoints load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gridwatch.batch import run_batch
from gridwatch.bus.sqlite import state_json
from gridwatch.jobs.rollup.job import RollupConfig, RollupJob
from gridwatch.record import Record, decode_one, encode, record_id
from tests.unit.bin_reference import Acc
from tests.unit.jobs_support import published, started

DAY = 86_400_000
T0 = 1_714_521_600_000  # a day boundary
GOLDEN_10M = Path(__file__).resolve().parents[1] / "data" / "jobs" / "expected_stats_10m.jsonl"
KEYS = ["src_domain", "dst_domain", "user_protocol", "is_remote_access", "is_transfer", "activity"]


def child(start: int, acc: Any, **extra: Any) -> bytes:
    """A ten-minute input bin; its id is its start's (the same for every revision)."""
    data = {"window_start": start, "window_end": start + 600_000, "site": "CERN"}
    data.update({"revision": 1, "_acc": acc, **extra})
    rid = record_id("xrootd", "stats_10m", start, {})
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


def rollup(window_s: int, group_by: list[str], aggregates: dict[str, str], **extra: Any) -> Any:
    return RollupConfig(
        inputs=["stats_10m"],
        producer="xrootd",
        output_type=f"stats_{window_s}",
        window_s=window_s,
        group_by=group_by,
        aggregates=aggregates,
        allowed_lateness_s=10 * DAY / 1000,
        **extra,
    )


def stream(config: RollupConfig, lines: list[bytes], tmp_path: Path) -> list[Record]:
    """Everything a rollup publishes for the input bins fed in small batches, then all bins
    closed; checkpointed and restored from JSON after every batch."""
    job = started(RollupJob, "r", config, tmp_path)
    out: list[Record] = []
    for start in range(0, len(lines), 37):
        job.process("t", lines[start : start + 37])
        out += published(job).get(f"xrootd_agg_{config.output_type}", [])
        state = json.loads(state_json(job.checkpoint()))
        job = started(RollupJob, "r", config, tmp_path)
        job.restore(state)
    job.windows.observe(T0 + 100 * DAY)
    return out + published(job).get(f"xrootd_agg_{config.output_type}", [])


def latest(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Each bin's last revision, without the revision number."""
    bins = {}
    for record in records:
        bins[record.id] = {k: v for k, v in record.data.items() if k != "revision"}
    return bins


def test_a_chain_of_rollups_gives_the_bins_of_one_rollup(tmp_path: Path) -> None:
    tens = [line for line in GOLDEN_10M.read_bytes().split(b"\n") if line]
    # Hourly bins name only the bytes; their _acc still carries the sketches the daily needs.
    hourly = rollup(3600, KEYS, {"bytes": "sum(bytes)"}, rollup_state=True)
    daily_measures = {"bytes": "sum(bytes)", "p50": "p50(bytes)", "p95": "p95(bytes)"}
    daily = rollup(86400, ["src_domain", "activity"], daily_measures)
    hours = stream(hourly, tens, tmp_path / "h")
    assert all(h.data["_acc"][7] for h in hours if h.data["ended"])
    chained = latest(stream(daily, [encode(h) for h in hours], tmp_path / "d"))
    direct = latest(stream(daily, tens, tmp_path / "direct"))
    assert chained == direct
    assert any(d["p50"] is not None for d in direct.values())
    # The batch layer gives the same bins from every revision of the hourly bins, as a jsonl
    # sink holds them: the last revision of each bin counts.
    assert len({h.id for h in hours}) < len(hours)  # some hourly bins were revised
    path = tmp_path / "hours.jsonl"
    path.write_bytes(b"\n".join(encode(h) for h in hours) + b"\n")
    batch = run_batch(daily, [str(path)], T0 - DAY, T0 + 10 * DAY)
    assert latest(batch.records) == direct
    # Every byte of the ten-minute bins is in the daily ones.
    total = sum(json.loads(line)["data"]["bytes"] for line in tens)
    assert sum(d["bytes"] for d in direct.values()) == total


def test_a_revised_input_bin_replaces_its_earlier_revision(tmp_path: Path) -> None:
    config = rollup(86400, ["site"], {"bytes": "sum(bytes)", "top": "max(rate)"})
    job = started(RollupJob, "daily", config, tmp_path)
    first = Acc(2, 10, 2, {"bytes": 40}, {"bytes": 2}, {"rate": 1.0}, {"rate": 9.0}).to_json()
    revised = Acc(3, 10, 3, {"bytes": 50}, {"bytes": 3}, {"rate": 1.0}, {"rate": 5.0}).to_json()
    other = Acc(1, 1, 1, {"bytes": 7}, {"bytes": 1}).to_json()
    job.process("t", [child(T0, first), child(T0 + 600_000, other)])
    job.windows.observe(T0 + DAY)
    assert [(r.data["bytes"], r.data["top"]) for r in out_bins(job)] == [(47, 9.0)]
    job.process("t", [child(T0, revised, revision=2)])
    assert [(r.data["bytes"], r.data["top"], r.data["revision"]) for r in out_bins(job)] == [
        (57, 5.0, 2)
    ]
    # An older revision changes nothing, though its parent is published again.
    job.process("t", [child(T0, first)])
    assert [(r.data["bytes"], r.data["revision"]) for r in out_bins(job)] == [(57, 3)]


def test_a_checkpoint_of_the_earlier_per_bin_form_loads(tmp_path: Path) -> None:
    config = rollup(86400, ["site"], {"bytes": "sum(bytes)"}, rollup_state=True)
    one = Acc(2, 10, 2, {"bytes": 40, "other": 3}, {"bytes": 2, "other": 1}).to_json()
    cid = decode_one(child(T0, one)).id
    old = {
        "windows": {"max_event_ms": T0 + DAY, "bins": [[T0, ["CERN"], one, 1, False]]},
        "children": [[T0, ["CERN"], {cid: [1, one]}]],
    }
    job = started(RollupJob, "daily", config, tmp_path)
    job.restore(json.loads(json.dumps(old)))
    more = Acc(1, 0, 1, {"bytes": 2}, {"bytes": 1}).to_json()
    job.process("t", [child(T0 + 600_000, more)])
    (parent,) = out_bins(job)
    assert (parent.data["bytes"], parent.data["count"], parent.data["revision"]) == (42, 3, 2)
    # The field no measure names is still carried for a further rollup.
    assert parent.data["_acc"][3] == {"bytes": 42, "other": 3}


def out_bins(job: RollupJob) -> list[Record]:
    return published(job).get(f"xrootd_agg_{job.config.output_type}", [])
