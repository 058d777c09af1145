"""The duplicate filter: 128-bit, order-aware hashes and a window that survives restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, Record
from gridwatch.transforms.dedup.transform import Dedup, Window, record_digest


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context(tmp_path, Metrics(), SqliteBus(tmp_path / "bus.db"), EnvelopeDecoder())


def rec(data: dict[str, Any], ts: int = 1, host: str | None = None) -> Record:
    return Record("panda", "jobs", ts, id=f"id{ts}", data=data, host=host)


def dedup(context: Context, **config: Any) -> Dedup:
    t = Dedup("dd", Dedup.Config(type="dedup", inputs=["s"], **config), context)
    t.open()
    return t


def test_keys_and_values_are_not_interchangeable() -> None:
    # Java's Map.hashCode XORs key and value hashes: these two collide there (seed 000).
    a = record_digest(rec({"foo": "bar"}), [], True)
    b = record_digest(rec({"bar": "foo"}), [], True)
    assert a != b
    assert len(a) == 16, "128-bit digests, never 32-bit"
    assert a == record_digest(rec({"foo": "bar"}, ts=99), [], True), "envelope not hashed"
    assert record_digest(rec({"x": 1, "y": 2}), [], True) == record_digest(
        rec({"y": 2, "x": 1}), [], True
    ), "key order does not matter"
    assert record_digest(rec({"x": 1}), [], True) != record_digest(rec({"x": 1.0}), [], True)


def test_drops_duplicates_within_the_window_and_counts_them(context: Context) -> None:
    t = dedup(context, window_records=3)
    batch = [rec({"n": n}) for n in (1, 2, 1, 3, 2)]
    assert [r.data["n"] for r in t.process(batch)] == [1, 2, 3]
    assert context.metrics.value("dd", "dropped") == 2
    # 4 pushes 1 out of a window of 3, so 1 is new again; 3 is still remembered.
    assert [r.data["n"] for r in t.process([rec({"n": 4}), rec({"n": 1}), rec({"n": 3})])] == [
        4,
        1,
    ]


def test_envelope_fields_take_part_when_chosen(context: Context) -> None:
    t = dedup(context, envelope_fields=["host"])
    out = t.process([rec({"a": 1}, host="a"), rec({"a": 1}, host="b"), rec({"a": 1}, host="a")])
    assert [r.host for r in out] == ["a", "b"]


def test_window_survives_restart(context: Context) -> None:
    first = dedup(context, window_records=1000)
    assert len(first.process([rec({"n": n}) for n in range(500)])) == 500
    first.commit()
    first.close()
    second = dedup(context, window_records=1000)
    out = second.process([rec({"n": n}) for n in range(490, 510)])
    assert [r.data["n"] for r in out] == list(range(500, 510))
    smaller = dedup(context, window_records=10)
    assert len(smaller.window.hashes) == 10, "a shrunk window keeps the newest hashes"


def test_checkpoint_holds_only_committed_batches(context: Context) -> None:
    t = dedup(context, checkpoint_interval_s=0)
    t.process([rec({"n": 1})])
    t.commit()  # the runtime: this batch is on the bus
    t.process([rec({"n": 2})])
    reloaded = Window(100)
    reloaded.load(t.path.read_bytes())
    assert len(reloaded.hashes) == 1


def test_a_batch_that_never_reached_the_bus_is_forgotten(context: Context) -> None:
    t = dedup(context)
    assert len(t.process([rec({"n": 1})])) == 1
    t.commit()
    assert len(t.process([rec({"n": 2}), rec({"n": 1})])) == 1
    t.rollback()  # the append failed: the sender will retry
    retried = t.process([rec({"n": 2}), rec({"n": 1})])
    assert [r.data["n"] for r in retried] == [2]


def test_the_publish_path_rolls_back_when_the_bus_refuses_a_batch(context: Context) -> None:
    from gridwatch.runtime.publish import Publisher

    t = dedup(context)
    publisher = Publisher(context.bus, context.metrics)
    publisher.rewire({"dd": t}, {"dd": ["src"]}, ["dd"])
    bus = context.bus
    unstorable_position = object()  # not JSON: the real append fails and rolls back
    with pytest.raises(TypeError):
        publisher.publish("src", [rec({"n": 1})], position=unstorable_position)
    assert bus.topics() == {}
    publisher.publish("src", [rec({"n": 1})], position={"next": 1})  # the retry
    (piece,) = bus.read("panda_raw_jobs", 0, 10)
    assert len(piece.lines) == 1 and piece.origin == "dd"
