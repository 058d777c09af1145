"""The ``jsonl`` sink writes each line once: a restart cuts files back to their last commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridwatch.bus import open_bus
from gridwatch.components import Batch, Context
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.sinks.jsonl import JsonlSink


def sink(tmp_path: Path, state: Any) -> JsonlSink:
    context = Context(tmp_path, Metrics(), open_bus(None, tmp_path), EnvelopeDecoder())
    made = JsonlSink("out", JsonlSink.Config(inputs=["src"], directory=tmp_path / "out"), context)
    made.open(state)
    return made


def lines(n: int, start: int = 0) -> list[bytes]:
    return [b'{"n":%d}' % i for i in range(start, start + n)]


def test_a_restart_drops_what_was_written_after_the_last_commit(tmp_path: Path) -> None:
    first = sink(tmp_path, None)
    first.write(Batch("t", lines(3)))
    state = first.prepare_commit()
    first.write(Batch("t", lines(2, 3)))  # written, never committed: the bus has them again
    first.files["t"].write(b'{"n":5, "torn')  # and a torn line from a SIGKILL
    first.files["t"].flush()
    second = sink(tmp_path, state)
    second.write(Batch("t", lines(3, 3)))
    second.prepare_commit()
    second.close()
    assert (tmp_path / "out" / "t.jsonl").read_bytes().splitlines() == lines(6)


def test_without_stored_sizes_only_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.jsonl").write_bytes(b"\n".join(lines(70_000)) + b'\n{"n":70000, "to')
    again = sink(tmp_path, None)
    again.write(Batch("t", lines(1, 70_000)))
    again.close()
    assert (out / "t.jsonl").read_bytes().splitlines() == lines(70_001)


def test_a_topic_first_written_after_the_last_commit_starts_empty(tmp_path: Path) -> None:
    first = sink(tmp_path, None)
    first.write(Batch("a", lines(1)))
    state = first.prepare_commit()
    first.write(Batch("b", lines(2)))  # a new topic, never committed
    second = sink(tmp_path, state)
    second.write(Batch("b", lines(2)))
    second.close()
    assert (tmp_path / "out" / "b.jsonl").read_bytes().splitlines() == lines(2)
