"""The embedded SQLite bus: offsets, origins, groups, atomic positions, retention."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.bus.base import JoinedLines
from gridwatch.bus.sqlite import CHECKPOINT_BYTES, PAGE_SIZE


def lines(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


@pytest.fixture
def bus(tmp_path: Path) -> SqliteBus:
    return SqliteBus(tmp_path / "bus.db")


def test_offsets_count_lines_across_batches(bus: SqliteBus) -> None:
    bus.append([("t", "src", lines("a", 3))])
    bus.append([("t", "src", lines("b", 2))])
    assert bus.topics()["t"].end == 5
    (first, second) = bus.read("t", 0, 100)
    assert (first.offset, first.lines) == (0, [b"a0", b"a1", b"a2"])
    assert (second.offset, second.end) == (3, 5)
    (middle, _) = bus.read("t", 1, 100)
    assert (middle.offset, middle.lines) == (1, [b"a1", b"a2"])
    assert bus.read("t", 5, 100) == []
    assert bus.read("missing", 0, 100) == []


def test_read_stops_near_max_lines(bus: SqliteBus) -> None:
    for i in range(10):
        bus.append([("t", "src", lines(str(i), 10))])
    got = bus.read("t", 0, 25)
    assert sum(len(s.lines) for s in got) == 30  # whole batches, just past the limit


def test_origins_are_kept_per_batch(bus: SqliteBus) -> None:
    bus.append([("t", "one", [b"x"]), ("t", "two", [b"y"]), ("u", "two", [b"z"])])
    assert [s.origin for s in bus.read("t", 0, 10)] == ["one", "two"]
    assert bus.topics_from(["two"]) == ["t", "u"]
    assert bus.topics_from(["one"]) == ["t"]


def test_groups_commit_offsets_and_state_and_report_lag(bus: SqliteBus) -> None:
    bus.append([("t", "s", lines("a", 10)), ("u", "s", lines("b", 4))])
    assert bus.committed("g").offsets == {}
    assert bus.lag("g", ["t", "u"]) == 14
    bus.commit("g", {"t": 7}, {"files": ["x"]})
    state = bus.committed("g")
    assert state.offsets == {"t": 7} and state.state == {"files": ["x"]}
    assert bus.lag("g", ["t", "u"]) == 7
    assert bus.lag("g", ["t"]) == 3
    assert bus.committed("other").offsets == {}


def test_position_and_commit_are_atomic_with_the_append(bus: SqliteBus) -> None:
    bus.append(
        [("t", "s", [b"x"])], position=("src", {"cursor": 5}), commit=("job", {"in": 3}, {"n": 1})
    )
    assert bus.position("src") == {"cursor": 5}
    assert bus.committed("job").offsets == {"in": 3}

    with pytest.raises(TypeError):  # the position is not JSON: the whole append fails
        bus.append([("t", "s", [b"y"]), ("new", "s", [b"z"])], position=("src", object()))
    assert bus.topics()["t"].end == 1  # nothing of the failed append is visible
    assert "new" not in bus.topics()
    assert bus.position("src") == {"cursor": 5}
    bus.append([("new", "s", [b"again"])])  # caches were reset after the rollback
    assert bus.read("new", 0, 10)[0].lines == [b"again"]


def test_retention_by_age_and_size(bus: SqliteBus) -> None:
    for _ in range(5):
        bus.append([("t", "s", [b"x" * 100] * 10)])
    bus.commit("g", {"t": 0})
    assert bus.enforce_retention(None, 2500) == 30  # keeps the two newest batches (2,000 B)
    info = bus.topics()["t"]
    assert (info.start, info.end, info.bytes) == (30, 50, 2018)
    assert bus.read("t", 0, 100)[0].offset == 30  # a lagging group resumes at the oldest
    assert bus.lag("g", ["t"]) == 20
    time.sleep(0.01)
    assert bus.enforce_retention(0.001, None) == 20
    assert bus.topics()["t"].start == 50


def _append_many(path: str, worker: int) -> None:
    bus = SqliteBus(path)
    for i in range(50):
        bus.append([("t", f"w{worker}", [f"{worker}-{i}".encode()])])


def test_several_processes_append_without_losing_offsets(tmp_path: Path) -> None:
    path = str(tmp_path / "bus.db")
    SqliteBus(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    bus = SqliteBus(path)
    got = [line for s in bus.read("t", 0, 1000) for line in s.lines]
    assert len(got) == 150 and len(set(got)) == 150
    assert bus.topics()["t"].end == 150


def test_joined_lines_are_stored_as_they_are_and_offsets_stay_consecutive(
    bus: SqliteBus,
) -> None:
    joined = JoinedLines(b"j0\nj1\nj2", 3)
    assert len(joined) == 3 and joined[1] == b"j1" and list(joined) == [b"j0", b"j1", b"j2"]
    bus.append([("t", "src", lines("a", 2))])  # first append of a topic: a transaction
    bus.append([("t", "src", joined)])  # known topic and origin: one statement
    bus.append([("t", "src", lines("b", 1)), ("u", "src", JoinedLines(b"u0", 1))])
    bus.append([("t", "src", JoinedLines(b"", 0))])  # nothing to append
    bus.append([("t", "src", lines("c", 2))], position=("src", {"cursor": 9}))
    got = bus.read("t", 0, 100)
    assert [(s.offset, s.lines) for s in got] == [
        (0, [b"a0", b"a1"]),
        (2, [b"j0", b"j1", b"j2"]),
        (5, [b"b0"]),
        (6, [b"c0", b"c1"]),
    ]
    topics = bus.topics()
    assert (topics["t"].start, topics["t"].end) == (0, 8)
    assert topics["t"].bytes == len(b"a0\na1") + len(b"j0\nj1\nj2") + len(b"b0") + len(b"c0\nc1")
    assert (topics["u"].end, topics["u"].bytes) == (1, 2)
    assert bus.position("src") == {"cursor": 9}


def test_a_second_bus_on_the_same_file_continues_the_offsets(tmp_path: Path) -> None:
    first = SqliteBus(tmp_path / "bus.db")
    first.append([("t", "src", lines("a", 2))])
    first.append([("t", "src", lines("b", 2))])
    second = SqliteBus(tmp_path / "bus.db")
    second.append([("t", "src", lines("c", 2))])
    first.append([("t", "src", lines("d", 2))])
    got = [(s.offset, s.lines[0]) for s in second.read("t", 0, 100)]
    assert got == [(0, b"a0"), (2, b"b0"), (4, b"c0"), (6, b"d0")]
    assert first.topics()["t"].end == 8


def test_new_bus_files_use_large_pages(bus: SqliteBus) -> None:
    bus.append([("t", "src", lines("a", 1))])
    with sqlite3.connect(bus.path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert bus._conn().execute("PRAGMA wal_autocheckpoint").fetchone() == (
        CHECKPOINT_BYTES // PAGE_SIZE,
    )
