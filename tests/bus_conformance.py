"""What every bus must do: the contract of :class:`gridwatch.bus.base.Bus`, as tests.

A backend's test module subclasses :class:`BusContract` and provides a ``factory`` fixture: a
:data:`BusFactory` that opens the backend's bus at a place (a fresh directory per test; every
bus opened at one place is the same bus) with an id window. The factory must be picklable (a
module-level function): some tests open the bus in other processes.

    @pytest.fixture(params=[open_my_bus])
    def factory(request): return request.param

    class TestMyBus(BusContract): ...
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import overload

import msgspec
import pytest

from gridwatch.bus import Bus, IdEntry, IdWindow, Slice
from gridwatch.record import hash128

BusFactory = Callable[[Path, IdWindow], Bus]
"""Opens the bus at a place (a directory), remembering ids over the window."""


def lines(prefix: str, count: int) -> list[bytes]:
    """``count`` distinct lines."""
    return [f"{prefix}{i}".encode() for i in range(count)]


def ids_of(batch: Sequence[bytes]) -> list[str]:
    """An id per line (32 hex digits, as gridwatch makes them), the same for the same line."""
    return [hash128(line) for line in batch]


def checked(topic: str, batch: list[bytes], origin: str = "src") -> IdEntry:
    """The lines as an entry with their ids."""
    return IdEntry(topic, origin, batch, ids_of(batch))


def read_all(bus: Bus, topic: str, offset: int = 0) -> list[Slice]:
    """Every slice from ``offset`` on, reading in small steps."""
    slices: list[Slice] = []
    while True:
        got = bus.read(topic, offset, 7)
        if not got:
            return slices
        slices += got
        offset = got[-1].end


def all_lines(bus: Bus, topic: str) -> list[bytes]:
    """Every retained line of a topic, in order."""
    return [line for piece in read_all(bus, topic) for line in piece.lines]


class Exploding(Sequence[bytes]):
    """Lines that say they are there but fail when anybody reads them."""

    def __len__(self) -> int:
        return 2

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        raise RuntimeError("cannot read these lines")

    def __iter__(self) -> Iterator[bytes]:
        raise RuntimeError("cannot read these lines")


def append_in_process(
    factory: BusFactory, place: Path, worker: int, work: tuple[list[list[bytes]], bool, Barrier]
) -> None:
    """Append the batches (with ids or not) one by one, all processes at once after the
    barrier (run in another process)."""
    batches, with_ids, start = work
    bus = factory(place, IdWindow())
    origin = f"w{worker}"
    bus.append([checked("t", [origin.encode()], origin)])  # known to this bus before the race
    start.wait(60)
    for batch in batches:
        bus.append([checked("t", batch, origin) if with_ids else ("t", origin, batch)])
    bus.close()


def run_processes(
    factory: BusFactory, place: Path, work: list[list[list[bytes]]], ids: bool
) -> None:
    """Run one appending process per list of batches, all at once; all must succeed."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(work))
    processes = [
        context.Process(target=append_in_process, args=(factory, place, w, (batches, ids, start)))
        for w, batches in enumerate(work)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0


class BusContract:
    """The tests every bus passes; subclass it with a ``factory`` fixture."""

    @pytest.fixture
    def bus(self, factory: BusFactory, tmp_path: Path) -> Iterator[Bus]:
        bus = factory(tmp_path, IdWindow())
        yield bus
        bus.close()

    # -- offsets and reads ----------------------------------------------------------------

    def test_offsets_count_lines_across_batches(self, bus: Bus) -> None:
        bus.append([("t", "src", lines("a", 3))])
        bus.append([("t", "src", lines("b", 2))])
        assert (bus.topics()["t"].start, bus.topics()["t"].end) == (0, 5)
        assert all_lines(bus, "t") == lines("a", 3) + lines("b", 2)
        (first, *_) = bus.read("t", 1, 100)
        assert (first.offset, first.lines[0]) == (1, b"a1")
        assert bus.read("t", 5, 100) == []
        assert bus.read("missing", 0, 100) == []

    def test_reads_hand_out_consecutive_offsets(self, bus: Bus) -> None:
        for i in range(6):
            bus.append([("t", "src", lines(f"{i}-", 5))])
        pieces = read_all(bus, "t")
        assert [p.offset for p in pieces] == [0, *(p.end for p in pieces[:-1])]
        assert pieces[-1].end == 30
        assert 1 <= sum(len(p.lines) for p in bus.read("t", 0, 12)) <= 30

    def test_a_second_bus_at_the_same_place_continues_the_offsets(
        self, factory: BusFactory, tmp_path: Path
    ) -> None:
        first, second = factory(tmp_path, IdWindow()), factory(tmp_path, IdWindow())
        first.append([("t", "src", lines("a", 2))])
        second.append([("t", "src", lines("b", 2))])
        first.append([("t", "src", lines("c", 2))])
        assert all_lines(second, "t") == lines("a", 2) + lines("b", 2) + lines("c", 2)

    # -- atomic appends -------------------------------------------------------------------

    def test_position_and_commit_are_stored_with_the_append(self, bus: Bus) -> None:
        result = bus.append(
            [("t", "s", [b"x"]), ("u", "s", [b"y", b"z"])],
            position=("src", {"cursor": 5}),
            commit=("job", {"in": 3}, {"n": 1}),
        )
        assert result.appended == (1, 2) and result.refused == (0, 0)
        assert bus.position("src") == {"cursor": 5}
        assert bus.position("other") is None
        assert bus.committed("job").offsets == {"in": 3}
        assert bus.committed("job").state == {"n": 1}

    def test_an_append_that_fails_leaves_nothing(self, bus: Bus) -> None:
        bus.append([("t", "s", [b"first"])], position=("src", 1), commit=("job", {"t": 1}, "a"))
        with pytest.raises(RuntimeError):
            bus.append(
                [checked("t", [b"kept?"]), ("new", "s", [b"n"]), ("u", "s", Exploding())],
                position=("src", 2),
                commit=("job", {"t": 2}, "b"),
            )
        assert all_lines(bus, "t") == [b"first"]
        assert "new" not in bus.topics() and "u" not in bus.topics()
        assert bus.position("src") == 1
        assert (bus.committed("job").offsets, bus.committed("job").state) == ({"t": 1}, "a")
        # Neither the lines nor their ids were taken: the same append goes through now.
        result = bus.append([checked("t", [b"kept?"]), ("new", "s", [b"n"])])
        assert result.appended == (1, 1)
        assert all_lines(bus, "t") == [b"first", b"kept?"]

    # -- consumer groups, origins, lag ----------------------------------------------------

    def test_groups_keep_their_own_offsets_and_state(self, bus: Bus) -> None:
        bus.append([("t", "s", lines("a", 10)), ("u", "s", lines("b", 4))])
        assert bus.committed("g").offsets == {} and bus.committed("g").state is None
        bus.commit("g", {"t": 7}, {"files": ["x"]})
        bus.commit("h", {"t": 2, "u": 4}, msgspec.Raw(b'{"raw":[1,2]}'))
        assert bus.committed("g").offsets == {"t": 7}
        assert bus.committed("g").state == {"files": ["x"]}
        assert bus.committed("h").offsets == {"t": 2, "u": 4}
        assert bus.committed("h").state == {"raw": [1, 2]}
        bus.commit("g", {"t": 9}, {"files": []})
        assert bus.committed("g").offsets == {"t": 9} and bus.committed("h").offsets["t"] == 2

    def test_origins_tell_which_topics_a_component_fed(self, bus: Bus) -> None:
        bus.append([("t", "one", [b"x"]), ("t", "two", [b"y"]), ("u", "two", [b"z"])])
        assert [s.origin for s in bus.read("t", 0, 10)] == ["one", "two"]
        assert bus.topics_from(["two"]) == ["t", "u"]
        assert bus.topics_from(["one"]) == ["t"]
        assert bus.topics_from(["nobody"]) == []

    def test_lag_counts_what_a_group_has_not_committed(self, bus: Bus) -> None:
        bus.append([("t", "s", lines("a", 10)), ("u", "s", lines("b", 4))])
        assert bus.lag("g", ["t", "u"]) == 14
        bus.commit("g", {"t": 7})
        assert bus.lag("g", ["t", "u"]) == 7
        assert bus.lag("g", ["t"]) == 3

    # -- retention ------------------------------------------------------------------------

    def test_retention_by_size_leaves_a_visible_gap(self, bus: Bus) -> None:
        for _ in range(5):
            bus.append([("t", "s", [b"x" * 100] * 10)])
        bus.commit("g", {"t": 0})
        deleted = bus.enforce_retention(None, 2500)
        info = bus.topics()["t"]
        assert deleted == info.start and 0 < info.start < 50 and info.end == 50
        assert 0 < info.bytes <= 2500
        assert bus.read("t", 0, 100)[0].offset == info.start  # a lagging group sees the gap
        assert bus.lag("g", ["t"]) == 50 - info.start

    def test_retention_by_age_deletes_what_is_older(self, bus: Bus) -> None:
        bus.append([("t", "s", lines("old", 4))])
        time.sleep(0.05)
        assert bus.enforce_retention(0.01, None) == 4
        assert (bus.topics()["t"].start, bus.topics()["t"].end) == (4, 4)
        assert bus.read("t", 0, 10) == []
        bus.append([("t", "s", lines("new", 2))])
        assert [(s.offset, s.lines[0]) for s in bus.read("t", 0, 10)] == [(4, b"new0")]

    # -- several processes ----------------------------------------------------------------

    def test_processes_appending_at_once_lose_nothing(
        self, factory: BusFactory, tmp_path: Path
    ) -> None:
        factory(tmp_path, IdWindow()).close()
        work = [[lines(f"w{w}-{i}-", 3) for i in range(30)] for w in range(3)]
        run_processes(factory, tmp_path, work, ids=False)
        bus = factory(tmp_path, IdWindow())
        pieces = read_all(bus, "t")
        got = [line for piece in pieces for line in piece.lines]
        sent = [line for w in work for batch in w for line in batch]
        assert sorted(got) == sorted([b"w0", b"w1", b"w2", *sent])
        assert [p.offset for p in pieces] == [0, *(p.end for p in pieces[:-1])]
        assert bus.topics()["t"].end == 273

    # -- idempotent appends ---------------------------------------------------------------

    def test_a_resent_batch_is_refused(self, bus: Bus) -> None:
        batch = lines("r", 5)
        assert bus.append([checked("t", batch)]).appended == (5,)
        again = bus.append([checked("t", batch)])
        assert again.appended == (0,) and again.refused == (5,) and again.duplicates == 5
        assert all_lines(bus, "t") == batch
        assert bus.duplicates_refused() == 5

    def test_only_the_new_lines_of_a_batch_go_in(self, bus: Bus) -> None:
        bus.append([checked("t", lines("a", 4))])
        mixed = [b"a1", b"new0", b"a3", b"new1"]
        result = bus.append([checked("t", mixed)])
        assert (result.appended, result.refused) == ((2,), (2,))
        pieces = read_all(bus, "t")
        assert [line for p in pieces for line in p.lines] == [*lines("a", 4), b"new0", b"new1"]
        assert bus.topics()["t"].end == 6  # refused lines take no offsets

    def test_the_first_copy_within_a_batch_wins(self, bus: Bus) -> None:
        entry = IdEntry("t", "src", [b"one", b"two", b"one again", b"three"], ["1", "2", "1", "3"])
        result = bus.append([entry])
        assert (result.appended, result.refused) == ((3,), (1,))
        assert all_lines(bus, "t") == [b"one", b"two", b"three"]

    def test_a_copy_in_a_later_entry_of_the_same_append_is_refused(self, bus: Bus) -> None:
        result = bus.append([checked("t", [b"a", b"b"], "x"), checked("t", [b"b", b"c"], "y")])
        assert (result.appended, result.refused) == ((2, 1), (0, 1))
        assert all_lines(bus, "t") == [b"a", b"b", b"c"]

    def test_ids_count_per_topic_and_lines_without_ids_are_not_checked(self, bus: Bus) -> None:
        batch = lines("x", 3)
        bus.append([checked("t", batch), checked("u", batch)])
        assert all_lines(bus, "u") == batch
        bus.append([("t", "src", batch)])
        assert all_lines(bus, "t") == batch + batch

    def test_position_and_commit_are_stored_when_every_line_was_a_copy(self, bus: Bus) -> None:
        bus.append([checked("t", lines("a", 3))], position=("src", 1))
        result = bus.append(
            [checked("t", lines("a", 3))],
            position=("src", 2),
            commit=("job", {"t": 3}, {"done": True}),
        )
        assert result.appended == (0,) and result.refused == (3,)
        assert bus.position("src") == 2
        assert bus.committed("job").offsets == {"t": 3}
        assert bus.committed("job").state == {"done": True}

    def test_a_restarted_bus_still_refuses_copies(
        self, factory: BusFactory, tmp_path: Path
    ) -> None:
        first = factory(tmp_path, IdWindow())
        first.append([checked("t", lines("a", 100))])
        first.close()
        again = factory(tmp_path, IdWindow())
        result = again.append([checked("t", lines("a", 101))])
        assert (result.appended, result.refused) == ((1,), (100,))

    def test_any_text_is_an_id(self, bus: Bus) -> None:
        odd = ["sender-7", "ABCDEF0123456789ABCDEF0123456789", "abcdef0123456789abcdef0123456789"]
        odd += ["é" * 32, "0" * 31 + " ", ""]
        batch = lines("o", len(odd))
        assert bus.append([IdEntry("t", "s", batch, odd)]).appended == (6,)  # case counts
        assert bus.append([IdEntry("t", "s", lines("p", 6), odd)]).refused == (6,)

    def test_ids_and_lines_must_match(self, bus: Bus) -> None:
        with pytest.raises(ValueError):
            bus.append([IdEntry("t", "s", lines("a", 3), ["1", "2"])])
        assert "t" not in bus.topics()

    def test_copies_are_refused_across_processes(self, factory: BusFactory, tmp_path: Path) -> None:
        factory(tmp_path, IdWindow()).close()
        records = lines("rec", 600)
        work = []
        for seed in range(3):  # each process sends everything, in its own order and batches
            shuffled = random.Random(seed).sample(records, len(records))
            work.append([shuffled[i : i + 5] for i in range(0, len(shuffled), 5)])
        run_processes(factory, tmp_path, work, ids=True)
        bus = factory(tmp_path, IdWindow())
        got = all_lines(bus, "t")
        assert sorted(got) == sorted([b"w0", b"w1", b"w2", *records])
        assert bus.topics()["t"].end == 603

    def test_the_window_keeps_at_least_the_newest_ids(
        self, factory: BusFactory, tmp_path: Path
    ) -> None:
        bus = factory(tmp_path, IdWindow(ids=2000))
        a, b, c = lines("a", 1000), lines("b", 1000), lines("c", 1000)
        for batch in (a, b, c):
            bus.append([checked("t", batch)])
        bus.enforce_retention(None, None)
        assert bus.append([checked("t", c)]).refused == (1000,)
        assert bus.append([checked("t", b)]).refused == (1000,)
        assert bus.append([checked("t", a)]).appended == (1000,)  # forgotten: taken again

    def test_the_window_counts_ids_of_all_topics(self, factory: BusFactory, tmp_path: Path) -> None:
        bus = factory(tmp_path, IdWindow(ids=20))
        bus.append([checked("t", lines("a", 20))])
        bus.append([checked("u", lines("b", 20))])
        bus.enforce_retention(None, None)
        assert bus.append([checked("u", lines("b", 20))]).refused == (20,)
        assert bus.append([checked("t", lines("a", 20))]).appended == (20,)

    def test_ids_older_than_the_window_are_forgotten(
        self, factory: BusFactory, tmp_path: Path
    ) -> None:
        bus = factory(tmp_path, IdWindow(seconds=0.05))
        bus.append([checked("t", lines("a", 10))])
        time.sleep(0.2)
        bus.enforce_retention(None, None)
        assert bus.append([checked("t", lines("a", 10))]).appended == (10,)

    def test_a_window_of_zero_checks_nothing(self, factory: BusFactory, tmp_path: Path) -> None:
        bus = factory(tmp_path, IdWindow(ids=0))
        bus.append([checked("t", lines("a", 3))])
        assert bus.append([checked("t", lines("a", 3))]).appended == (3,)
        assert bus.duplicates_refused() == 0
