"""The runtime in-process: rejected records become dead letters with reason, component and
attempt count; transforms that fail on one record do not lose the others."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from gridwatch.components import (
    Batch,
    Sink,
    SinkConfig,
    Source,
    SourceBatch,
    SourceConfig,
    Transform,
    TransformConfig,
    WriteResult,
)
from gridwatch.components.registry import register
from gridwatch.config.pipeline import parse_pipeline
from gridwatch.record import decode_lines
from gridwatch.record.deadletter import TOPIC
from gridwatch.runtime.runner import Runtime
from tests.conftest import free_port

pytestmark = pytest.mark.integration
WRITTEN: list[dict[str, Any]] = []
ATTEMPTS: dict[int, int] = {}


class BatchSourceConfig(SourceConfig):
    type: Literal["test_batch"] = "test_batch"


@register("test_batch")
class BatchSource(Source):
    """One batch: five envelopes, one of them invalid."""

    Config = BatchSourceConfig

    async def batches(self) -> AsyncIterator[SourceBatch]:
        body = b"\n".join(
            [b'{"producer":"p","type":"t","data":{"n":%d}}' % n for n in range(4)]
            + [b'{"producer":"p","type":"t","data":"oops"}']
        )
        result = self.context.decoder.decode_ndjson(body)
        yield SourceBatch(result.records, result.rejected, position={"done": True})
        await asyncio.Event().wait()


class FragileConfig(TransformConfig):
    type: Literal["test_fragile"] = "test_fragile"


@register("test_fragile")
class Fragile(Transform):
    """Raises on n == 1, passes the rest."""

    Config = FragileConfig

    def process(self, records: list[Any]) -> list[Any]:
        if any(r.data["n"] == 1 for r in records):
            raise ValueError("n must not be 1")
        return records


class PickyConfig(SinkConfig):
    type: Literal["test_picky"] = "test_picky"


@register("test_picky")
class Picky(Sink):
    """Fails the first write (retryable), then rejects n == 2 and keeps the rest."""

    Config = PickyConfig

    def write(self, batch: Batch) -> WriteResult:
        ATTEMPTS[0] = ATTEMPTS.get(0, 0) + 1
        if ATTEMPTS[0] == 1:
            raise OSError("disk not mounted yet")
        rejected = [
            (i, "n == 2 is not allowed") for i, r in enumerate(batch.records) if r.data["n"] == 2
        ]
        WRITTEN.extend(r.data for i, r in enumerate(batch.records) if r.data["n"] != 2)
        return WriteResult(rejected)


def test_dead_letters_carry_reason_component_and_attempts(tmp_path: Path) -> None:
    pipeline = parse_pipeline(
        textwrap.dedent("""
        sources:
          src: {type: test_batch}
        transforms:
          fragile: {type: test_fragile, inputs: [src]}
        sinks:
          picky: {type: test_picky, inputs: [fragile], retry_initial_s: 0.05}
        """),
        "p.yaml",
        tmp_path,
    )

    async def scenario() -> None:
        runtime = Runtime(pipeline, tmp_path / "data", f"127.0.0.1:{free_port()}")
        task = asyncio.create_task(runtime.run())
        for _ in range(200):
            if WRITTEN:
                break
            await asyncio.sleep(0.05)
        runtime.stop()
        await task

    asyncio.run(scenario())
    assert sorted(d["n"] for d in WRITTEN) == [0, 3]
    from gridwatch.bus import SqliteBus

    bus = SqliteBus(tmp_path / "data" / "bus.db")
    letters = decode_lines([line for s in bus.read(TOPIC, 0, 100) for line in s.lines])
    by_component = {(d.data["component"], d.data["attempts"]): d.data for d in letters}
    assert set(by_component) == {("src", 1), ("fragile", 1), ("picky", 2)}
    assert by_component[("src", 1)]["reason"] == "$[4].data: Expected `object`, got `str`"
    assert by_component[("src", 1)]["record"]["data"] == "oops"
    assert by_component[("fragile", 1)]["reason"] == "ValueError: n must not be 1"
    assert by_component[("fragile", 1)]["record"]["data"] == {"n": 1}
    assert by_component[("picky", 2)]["record"]["data"] == {"n": 2}
    assert all(letter.producer == "gridwatch" and letter.type == "deadletter" for letter in letters)
    assert bus.position("src") == {"done": True}


def test_dead_letters_can_be_listed_and_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gridwatch.bus import SqliteBus
    from gridwatch.cli import main
    from gridwatch.record.deadletter import dead_letter

    bus = SqliteBus(tmp_path / "bus.db")
    fixed = b'{"producer":"p","type":"t","timestamp":1700000000,"data":{"n":5}}'
    bus.append(
        [
            (
                TOPIC,
                "_deadletter",
                [
                    dead_letter(fixed, "sink was down", "out", 3),
                    dead_letter(b"{broken", "malformed JSON", "ingest"),
                ],
            )
        ]
    )
    assert main(["deadletter", "--data-dir", str(tmp_path), "replay", "--as", "src"]) == 1
    (piece,) = bus.read("p_raw_t", 0, 10)
    assert piece.origin == "src"
    (record,) = decode_lines(piece.lines)
    assert record.data == {"n": 5} and record.timestamp == 1_700_000_000_000
    capsys.readouterr()
    assert main(["deadletter", "--data-dir", str(tmp_path), "--component", "ingest", "list"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    letter = json.loads(line)
    assert letter["data"]["reason"] == "malformed JSON"
    assert letter["data"]["record"] == "{broken"
