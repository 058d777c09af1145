"""Record ids as keys, the in-memory id index, and the SQLite bus's id bookkeeping."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.bus import IdEntry, IdWindow, SqliteBus, idindex, open_bus
from gridwatch.bus.idindex import IdIndex
from gridwatch.bus.idkeys import fingerprints, id_key, id_keys
from gridwatch.config.pipeline import BusSettings, parse_pipeline
from gridwatch.config.problems import ConfigProblems


def random_prints(rng: np.random.Generator, count: int) -> np.ndarray:
    return fingerprints(rng.bytes(16 * count))


# -- keys -------------------------------------------------------------------------------


def test_hex_ids_are_their_own_keys_and_other_ids_are_hashed() -> None:
    hex_id = "0123456789abcdef" * 2
    assert id_keys([hex_id, hex_id]) == bytes.fromhex(hex_id) * 2
    assert id_key(hex_id.upper()) != bytes.fromhex(hex_id)  # another id
    assert id_key("x") != id_key("y") and len(id_key("x")) == 16
    mixed = ["ab" * 15, "ab" * 17, hex_id]  # lengths that add up as if all were 32
    assert id_keys(mixed) == b"".join(id_key(i) for i in mixed)
    assert id_keys(["0" * 30 + " 1"]) == id_key("0" * 30 + " 1")


def test_fingerprints_of_counting_ids_spread_over_buckets() -> None:
    counters = [f"{i:032x}" for i in range(4096)]
    homes = fingerprints(id_keys(counters)) >> np.uint64(54)
    assert len(np.unique(homes)) > 900


# -- the index --------------------------------------------------------------------------


def test_the_index_finds_what_it_took_and_nothing_else() -> None:
    rng = np.random.default_rng(1)
    index = IdIndex()
    batches = [random_prints(rng, 1000) for _ in range(300)]
    for number, prints in enumerate(batches):
        index.add(prints, number * 1000)
    for number in (0, 150, 299):
        probe = index.probe(batches[number])
        assert sorted(probe.positions.tolist()) == list(range(1000))
        assert set(probe.offsets.tolist()) == {number * 1000}
    assert index.probe(random_prints(rng, 1000)).clear
    assert index.live == 300_000


def test_forgotten_batches_no_longer_count_and_their_slots_are_reused() -> None:
    rng = np.random.default_rng(2)
    index = IdIndex()
    first = random_prints(rng, 500)
    index.add(first, 0)
    index.add(random_prints(rng, 500), 500)
    index.forget_below(500)
    assert index.probe(first).clear and index.live == 500
    size = index.nbytes
    for number in range(2, 400):  # a sliding window of 1,000 ids does not grow the table
        index.add(random_prints(rng, 500), number * 500)
        index.forget_below((number - 1) * 500)
    assert index.live == 1000
    assert index.nbytes <= 4 * size


def test_an_untaken_batch_leaves_no_trace() -> None:
    rng = np.random.default_rng(3)
    index = IdIndex()
    kept = random_prints(rng, 100)
    index.add(kept, 0)
    dropped = random_prints(rng, 100)
    index.reserve(100)
    taken = index.take(index.probe(dropped), 100)
    assert not index.probe(dropped).clear
    index.untake(taken)
    assert index.probe(dropped).clear
    assert len(index.probe(kept).positions) == 100
    index.add(dropped, 100)  # the same offset again
    assert set(index.probe(dropped).offsets.tolist()) == {100}


def test_repeats_within_a_batch_are_found() -> None:
    prints = np.array([5, 7, 5, 9, 7, 5], dtype=np.uint64)
    assert IdIndex().probe(prints).repeats.tolist() == [2, 4, 5]


def test_crowded_buckets_overflow_into_the_next_and_are_still_found() -> None:
    index = IdIndex()
    # Fingerprints that all share one home bucket: they spill over many buckets.
    crowded = (np.arange(1, 60, dtype=np.uint64) << np.uint64(40)) | np.uint64(7)
    for number, prints in enumerate(np.array_split(crowded, 6)):
        index.add(prints, number)
    probe = index.probe(crowded)
    assert sorted(probe.positions.tolist()) == list(range(len(crowded)))
    index.reserve(10**5)  # growing keeps them findable
    assert len(index.probe(crowded).positions) == len(crowded)


def test_batch_numbers_are_renumbered_before_they_run_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(idindex, "MAX_BATCHES", 50)
    rng = np.random.default_rng(4)
    index = IdIndex()
    batches = [random_prints(rng, 10) for _ in range(200)]
    for number, prints in enumerate(batches):
        index.add(prints, number * 10)
        index.forget_below(max(0, number - 20) * 10)
    assert set(index.probe(batches[-1]).offsets.tolist()) == {1990}
    assert index.probe(batches[0]).clear
    assert index.live == 21 * 10


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(1, 300), min_size=1, max_size=40),  # keys of a batch
            st.integers(0, 3),  # how many of the oldest batches to forget after it
        ),
        max_size=40,
    )
)
def test_the_index_agrees_with_a_dictionary(steps: list[tuple[list[int], int]]) -> None:
    index = IdIndex()
    model: dict[int, int] = {}
    offsets: list[int] = []
    forgotten = 0
    for number, (keys, forget) in enumerate(steps):
        prints = np.unique(np.array(keys, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        probe = index.probe(prints)
        found = {int(prints[p]): o for p, o in zip(probe.positions, probe.offsets, strict=True)}
        assert found == {int(p): model[int(p)] for p in prints if int(p) in model}
        new = np.array([p for p in prints if int(p) not in model], dtype=np.uint64)
        offset = number * 100
        index.add(new, offset)
        model.update({int(p): offset for p in new})
        offsets.append(offset)
        if forget:
            forgotten = offsets[min(len(offsets) - 1, offsets.index(forgotten) + forget)]
            index.forget_below(forgotten)
            model = {p: o for p, o in model.items() if o >= forgotten}
        assert index.live == len(model)


# -- the SQLite bus ---------------------------------------------------------------------


OLD_SCHEMA = """
CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0, next_offset INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE batches(topic_id INTEGER NOT NULL, base_offset INTEGER NOT NULL,
    count INTEGER NOT NULL, appended_ms INTEGER NOT NULL, origin TEXT NOT NULL,
    payload BLOB NOT NULL, PRIMARY KEY(topic_id, base_offset));
INSERT INTO topics(id, name, next_offset, bytes) VALUES (1, 't', 2, 5);
INSERT INTO batches VALUES (1, 0, 2, 0, 'src', X'6f6c640a3f');
"""


def test_a_bus_file_from_before_ids_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    bus = SqliteBus(path)
    assert [list(s.lines) for s in bus.read("t", 0, 10)] == [[b"old", b"?"]]
    bus.append([IdEntry("t", "src", [b"a", b"b"], ["1", "2"])])
    assert bus.append([IdEntry("t", "src", [b"a"], ["1"])]).refused == (1,)
    assert SqliteBus(path).append([IdEntry("t", "src", [b"b"], ["2"])]).refused == (1,)
    assert bus.topics()["t"].end == 4


def test_the_fast_path_gives_way_when_another_process_appended(tmp_path: Path) -> None:
    mine, other = SqliteBus(tmp_path / "bus.db"), SqliteBus(tmp_path / "bus.db")
    mine.append([IdEntry("t", "src", [b"a"], ["a"])])
    mine.append([IdEntry("t", "src", [b"b"], ["b"])])  # one statement: topic and ids known
    other.append([IdEntry("t", "src", [b"c"], ["c"])])
    assert mine.append([IdEntry("t", "src", [b"c again"], ["c"])]).refused == (1,)
    assert mine.append([IdEntry("t", "src", [b"d"], ["d"])]).appended == (1,)
    assert [line for s in mine.read("t", 0, 10) for line in s.lines] == [b"a", b"b", b"c", b"d"]


def test_ids_are_forgotten_with_records_that_retention_deleted(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db")
    for name in ("a", "b", "c"):
        bus.append([IdEntry("t", "src", [name.encode() * 100], [name])])
    bus.enforce_retention(None, 250)  # keeps the two newest records
    assert bus.append([IdEntry("t", "src", [b"a"], ["a"])]).appended == (1,)
    assert bus.append([IdEntry("t", "src", [b"c"], ["c"])]).refused == (1,)


def test_open_bus_follows_the_settings(tmp_path: Path) -> None:
    settings = BusSettings(path=Path("elsewhere/my.db"), durability="normal", dedup_window_ids=0)
    bus = open_bus(settings, tmp_path)
    assert isinstance(bus, SqliteBus) and bus.path == tmp_path / "elsewhere" / "my.db"
    assert bus.id_window == IdWindow(7 * 86400.0, 0) and not bus.id_window.enabled
    default = open_bus(None, tmp_path)
    assert isinstance(default, SqliteBus) and default.path == tmp_path / "bus.db"
    assert default.id_window.enabled


def pipeline_with_bus(bus: str) -> str:
    return f"""
sources:
  grid: {{type: http}}
sinks:
  out: {{type: jsonl, inputs: [grid], directory: out}}
bus: {bus}
"""


def test_the_bus_is_chosen_in_the_pipeline_file(tmp_path: Path) -> None:
    pipeline = parse_pipeline(
        pipeline_with_bus("{type: sqlite, path: b.db, dedup_window_s: 60, dedup_window_ids: 5}"),
        "p.yaml",
        tmp_path,
    )
    assert pipeline.bus.type == "sqlite" and pipeline.bus.path == Path("b.db")
    assert pipeline.bus.id_window() == IdWindow(60.0, 5)
    for wrong in ("{type: kafka}", "{type: sqlite, brokers: x}", "{dedup_window_ids: -1}"):
        with pytest.raises(ConfigProblems):
            parse_pipeline(pipeline_with_bus(wrong), "p.yaml", tmp_path)


def test_ids_numbered_by_counters_in_either_half_have_distinct_fingerprints() -> None:
    from gridwatch.bus.idkeys import fingerprints, id_keys

    shapes = [
        lambda a, b: f"{a:016x}{b:016x}",  # a request counter, then a record counter
        lambda a, b: f"{0:016x}{a * 100_000 + b:016x}",
        lambda a, b: f"{a * 100_000 + b:016x}{0:016x}",
    ]
    for shape in shapes:
        ids = [shape(a, b) for a in range(300) for b in range(300)]
        assert len(set(fingerprints(id_keys(ids)).tolist())) == len(ids)
