"""One record a sink cannot write never jams it: the batch is split around it, the record goes
to the dead letters with the sink's reason, and everything else is written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from gridwatch.bus import open_bus
from gridwatch.components import Batch, Context, Sink, SinkConfig, WriteResult
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, decode_lines, encode_lines
from gridwatch.record.deadletter import TOPIC as DEADLETTER
from gridwatch.runtime.consume import SinkStrategy, Stopping, consume
from gridwatch.runtime.reader import BusReader
from gridwatch.sinks.parquet_archive import ParquetArchiveSink

T0 = 1_709_251_200


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"x": value}
    return value


def drain(sink: Sink, context: Context) -> None:
    """Run the one consume loop until the sink has caught up, then stop it."""

    async def run() -> None:
        stopping = Stopping(asyncio.Event(), drain_s=30.0)
        reader = BusReader(context.bus, f"sink.{sink.id}", ["src"], 1000)
        strategy = SinkStrategy(sink, context.bus, context.metrics, lambda state: None)
        task = asyncio.create_task(consume(strategy, reader, stopping, 0.05))
        for _ in range(600):
            if await reader.lag() == 0 and not reader.uncommitted:
                break
            await asyncio.sleep(0.05)
        stopping.stop.set()
        await task

    asyncio.run(run())


def append(context: Context, payloads: list[dict[str, Any]]) -> None:
    """Put records on the bus as a producer with looser limits (or an older gridwatch) might."""
    envelopes = [
        {"producer": "panda", "type": "jobs", "timestamp": T0 + i, "data": p}
        for i, p in enumerate(payloads)
    ]
    records = EnvelopeDecoder(max_depth=512).decode_objects(envelopes).records
    context.bus.append([("panda_raw_jobs", "src", encode_lines(records))])


def letters(context: Context) -> list[Any]:
    return decode_lines([line for s in context.bus.read(DEADLETTER, 0, 100) for line in s.lines])


def test_a_record_too_deep_for_the_archive_is_a_dead_letter(tmp_path: Path) -> None:
    context = Context(tmp_path, Metrics(), open_bus(None, tmp_path), EnvelopeDecoder(), host="a1")
    payloads = [{"n": i} for i in range(40)]
    payloads[23] = {"n": 23, "deep": nested(400)}
    append(context, payloads)
    config = ParquetArchiveSink.Config(inputs=["src"], root=tmp_path / "archive", roll_records=10)
    drain(ParquetArchiveSink("arch", config, context), context)
    written = [
        n
        for f in sorted((tmp_path / "archive").rglob("*.parquet"))
        for n in pq.read_table(f).column("data").combine_chunks().field("n").to_pylist()
    ]
    assert sorted(written) == [n for n in range(40) if n != 23]
    (letter,) = letters(context)
    assert letter.data["component"] == "arch"
    kept = letter.data["record"]  # as text: it nests deeper than a record may be decoded
    assert isinstance(kept, str) and json.loads(kept)["data"]["n"] == 23
    assert "Recursion" in letter.data["reason"]
    assert context.metrics.value("arch", "dropped") == 1


class Fussy(Sink):
    """Fails whole batches holding a record with ``bad``; a passing error on the first try."""

    Config = SinkConfig
    written: list[int]
    calls = 0

    def open(self, state: Any) -> None:
        self.written = []

    def write(self, batch: Batch) -> WriteResult:
        Fussy.calls += 1
        if Fussy.calls == 1:
            raise OSError("the disk is not mounted yet")  # passing: retried whole
        if any("bad" in r.data for r in batch.records):
            raise ValueError("cannot store a bad record")
        self.written += [r.data["n"] for r in batch.records]
        return WriteResult()


def test_passing_errors_retry_the_batch_and_others_isolate_the_records(tmp_path: Path) -> None:
    context = Context(tmp_path, Metrics(), open_bus(None, tmp_path), EnvelopeDecoder())
    payloads: list[dict[str, Any]] = [{"n": i} for i in range(100)]
    for i in (0, 57, 58, 99):
        payloads[i] = {"n": i, "bad": True}
    append(context, payloads)
    config = SinkConfig(inputs=["src"], retry_initial_s=0.01)
    sink = Fussy("fussy", config, context)
    drain(sink, context)
    assert sorted(sink.written) == [n for n in range(100) if n not in (0, 57, 58, 99)]
    found = sorted(letter.data["record"]["data"]["n"] for letter in letters(context))
    assert found == [0, 57, 58, 99]
    assert all(
        letter.data["reason"] == "ValueError: cannot store a bad record"
        for letter in letters(context)
    )
    assert context.bus.committed("sink.fussy").offsets == {"panda_raw_jobs": 100}
