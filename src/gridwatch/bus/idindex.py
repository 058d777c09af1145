"""An in-memory set of key fingerprints, each with the batch that took it.

Finding a batch's ids among the millions a topic took needs this index: a hash table in one
numpy array, probed and filled a whole batch at once (a few dozen numpy calls per batch,
whatever its size). Once the table outgrows the CPU's caches its cost is memory traffic, so a
bucket is 64 bytes, a cache line, holding all that a lookup and an insert touch: 5 slots of a
64-bit fingerprint and a 32-bit batch number, and a flag telling that a key went on to the
next bucket because this one was full of live keys (linear probing, followed only past such
buckets). A batch's keys are looked up and written in the lines the lookup just read.

Nothing is deleted: a slot whose batch is below :attr:`IdIndex.forgotten` counts as free and
is written over. Growing splits every bucket in two by one more bit of the fingerprint, which
needs no sorting; the same pass, without doubling, clears the overflow flags and the
forgotten keys when too many buckets overflowed. The table grows when half full of live keys
(an id costs 25 to 50 bytes of memory) and keeps its size when they are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridwatch.bus.idkeys import Fingerprints

SLOTS = 5
_WIDTH = 16  # 32-bit words per bucket: one cache line
_BATCH = 2 * SLOTS  # first word of the batch numbers
_FLAG = _WIDTH - 1  # the overflow flag's word
MIN_BUCKETS = 256
MAX_LOAD = 0.5
MAX_OVERFLOWED = 1 / 4
MAX_BATCHES = 2**31
# The first free slot of a bucket from the bit mask of its free slots (SLOTS: none free).
_LOWEST_FREE = np.array(
    [next((i for i in range(SLOTS) if mask >> i & 1), SLOTS) for mask in range(256)],
    dtype=np.intp,
)

Offsets = npt.NDArray[np.int64]
Indices = npt.NDArray[np.intp]
Words = npt.NDArray[np.uint32]

_NONE: Indices = np.empty(0, dtype=np.intp)
_NO_OFFSETS: Offsets = np.empty(0, dtype=np.int64)


@dataclass
class Probe:
    """What an :class:`IdIndex` knows of a batch of fingerprints.

    ``positions`` and ``offsets`` list every remembered key with the fingerprint of a key of the
    batch (the key's position, the offset of the batch that took it): keys that may be taken.
    ``repeats`` are positions of keys whose fingerprint an earlier key of the batch has.
    """

    prints: Fingerprints
    positions: Indices
    offsets: Offsets
    repeats: Indices
    homes: Indices
    rows: Words
    version: int

    @property
    def clear(self) -> bool:
        """Whether every key is new for sure."""
        return not len(self.positions) and not len(self.repeats)


@dataclass
class Taken:
    """Where :meth:`IdIndex.take` wrote, to free it again if the batch is not appended."""

    slots: Indices
    """The batch-number words written."""
    version: int


class IdIndex:
    """The fingerprints that one topic took, and the base offset of the batch of each."""

    def __init__(self) -> None:
        self._table = np.zeros((MIN_BUCKETS, _WIDTH), dtype=np.uint32)
        # Batch numbers start at 1: a slot never written has batch 0, below any live batch.
        self._bases = np.zeros(64, dtype=np.int64)  # base offset of batch number i
        self._next_batch = 1
        self._first_live = 1
        self._written = 0  # slots written since the last reflow: at least the live keys
        self._overflowed = 0
        self._version = 0
        self.forgotten = 0
        """Keys of batches below this offset no longer count."""

    @property
    def nbytes(self) -> int:
        """Memory held."""
        return self._table.nbytes + self._bases.nbytes

    @property
    def live(self) -> int:
        """Keys remembered (counted: a pass over the table)."""
        return int(np.count_nonzero(self._table[:, _BATCH:_FLAG] >= self._first_live))

    def reserve(self, count: int) -> None:
        """Make room for ``count`` more keys (call before :meth:`probe` and :meth:`take`)."""
        if self._written + count > MAX_LOAD * SLOTS * len(self._table):
            self._written = self.live
            buckets = len(self._table)
            while self._written + count > MAX_LOAD * SLOTS * buckets:
                buckets *= 2
            if buckets > 4 * len(self._table):  # a large load: lay everything out at once
                self._rebuild(buckets)
            while buckets > len(self._table):
                self._reflow(grow=True)
        if self._overflowed > MAX_OVERFLOWED * len(self._table):
            self._reflow(grow=False)

    def probe(self, prints: Fingerprints) -> Probe:
        """Look a batch of fingerprints up (see :class:`Probe`)."""
        homes = self._homes(prints)
        home_rows = self._table[homes]
        positions: list[Indices] = []
        batches: list[Words] = []
        pending, buckets, rows = None, homes, home_rows
        while True:
            wanted = prints if pending is None else prints[pending]
            hit = rows.view(np.uint64)[:, :SLOTS] == wanted[:, None]
            if hit.any():
                hit &= rows[:, _BATCH:_FLAG] >= self._first_live
                at, slot = np.nonzero(hit)
                positions.append(at if pending is None else pending[at])
                batches.append(rows[at, _BATCH + slot])
            on = rows[:, _FLAG] != 0
            if not on.any():
                break
            pending = np.flatnonzero(on) if pending is None else pending[on]
            buckets = self._next(buckets[on])
            rows = self._table[buckets]
        version = self._version
        if not positions:
            return Probe(prints, _NONE, _NO_OFFSETS, _repeats(prints), homes, home_rows, version)
        found = np.concatenate(batches).astype(np.intp)
        return Probe(
            prints,
            np.concatenate(positions),
            self._bases[found],
            _repeats(prints),
            homes,
            home_rows,
            self._version,
        )

    def take(self, probe: Probe, base_offset: int) -> Taken:
        """Remember the probed keys as the batch at ``base_offset`` (above every batch's so
        far); :meth:`untake` undoes it. Keys found by ``probe`` are added all the same."""
        batch = self._new_batch(base_offset)
        homes, rows = probe.homes, probe.rows
        if probe.version != self._version:  # the table changed since: look again
            homes = self._homes(probe.prints)
            rows = self._table[homes]
        slots = self._place(probe.prints, np.uint32(batch), homes, rows)
        self._version += 1
        return Taken(slots, self._version)

    def untake(self, taken: Taken) -> None:
        """Free the slots :meth:`take` wrote (nothing else may have changed since)."""
        assert taken.version == self._version, "the table changed since the take"
        self._table.reshape(-1)[taken.slots] = 0  # batch 0: a free slot
        self._next_batch -= 1
        self._version += 1

    def add(self, prints: Fingerprints, base_offset: int) -> None:
        """Remember the keys of the batch at ``base_offset`` (above every batch's so far)."""
        if len(prints):
            self.reserve(len(prints))
            self.take(self.probe(prints), base_offset)

    def extend(self, prints: Fingerprints, offsets: Offsets) -> None:
        """Remember keys of several batches (``offsets``: each key's batch, ascending)."""
        if not len(prints):
            return
        self.reserve(len(prints))
        bases, numbers = np.unique(offsets, return_inverse=True)
        first = self._next_batch
        for base in bases.tolist():
            self._new_batch(base)
        self._place_many(prints, (numbers + first).astype(np.uint32))
        self._version += 1

    def forget_below(self, offset: int) -> None:
        """Stop counting the keys of batches below ``offset`` (their slots are free)."""
        if offset <= self.forgotten:
            return
        self.forgotten = offset
        self._first_live = 1 + int(np.searchsorted(self._bases[1 : self._next_batch], offset))
        self._version += 1

    def _homes(self, prints: Fingerprints) -> Indices:
        # The top bits: they depend on every bit of the fingerprint (multiplicative hashing).
        return (prints >> np.uint64(64 - self._bits)).view(np.int64)

    @property
    def _bits(self) -> int:
        return len(self._table).bit_length() - 1

    def _next(self, buckets: Indices) -> Indices:
        return (buckets + 1) & (len(self._table) - 1)

    def _new_batch(self, base_offset: int) -> int:
        if self._next_batch >= MAX_BATCHES:
            self._renumber()
        if self._next_batch == len(self._bases):
            self._bases = np.resize(self._bases, 2 * len(self._bases))
        self._bases[self._next_batch] = base_offset
        self._next_batch += 1
        return self._next_batch - 1

    def _place(
        self, prints: Fingerprints, batches: Words | np.uint32, buckets: Indices, rows: Words
    ) -> Indices:
        """Write keys into free slots from their buckets on (``rows``: those buckets' rows);
        the batch-number words written. Keys that found the same free slot overwrite each
        other: the one left holds it, the others try again; keys whose bucket is full of live
        keys go on to the next bucket."""
        table = self._table.reshape(-1)
        table64 = self._table.view(np.uint64).reshape(-1)
        written: list[Indices] = []
        pending: Indices | None = None  # the keys still to place (None: all)
        while True:
            free = rows[:, _BATCH:_FLAG] < self._first_live
            slot = _LOWEST_FREE[np.packbits(free, axis=1, bitorder="little")[:, 0]]
            room = slot < SLOTS
            if room.all():
                keys, into, at = pending, buckets, slot
            else:
                keys = np.flatnonzero(room) if pending is None else pending[room]
                into, at = buckets[room], slot[room]
            at64 = into * (_WIDTH // 2) + at
            wanted = prints if keys is None else prints[keys]
            table64[at64] = wanted
            held = table64[at64] == wanted  # read back: in these same cache lines
            done = bool(held.all()) and keys is pending
            if not held.all():
                at64, at = at64[held], at[held]
                keys = np.flatnonzero(held) if keys is None else keys[held]
            word = 2 * at64 + (_BATCH - at)  # the batch word of the same slot
            table[word] = (
                batches if keys is None or isinstance(batches, np.uint32) else batches[keys]
            )
            written.append(word)
            self._written += len(word)
            if done:
                return np.concatenate(written) if len(written) > 1 else word
            placed = np.zeros(len(prints), dtype=np.bool_)
            placed[np.arange(len(prints)) if keys is None else keys] = True
            waiting = ~placed[np.arange(len(prints)) if pending is None else pending]
            full = ~room
            if full.any():  # bucket full of live keys: flag it, the key goes on to the next
                flags = buckets[full] * _WIDTH + _FLAG
                self._overflowed += int(np.count_nonzero(table[flags] == 0))
                table[flags] = 1
            buckets = np.where(full, self._next(buckets), buckets)[waiting]
            pending = np.flatnonzero(waiting) if pending is None else pending[waiting]
            rows = self._table[buckets]

    def _place_many(self, prints: Fingerprints, batches: Words) -> None:
        """:meth:`_place` for many keys at once: the n-th key bound for a bucket takes its
        n-th free slot, in one pass; only the keys that overflow go round by round."""
        homes = self._homes(prints)
        rows = self._table[homes]
        rank = _ranks(homes, stable=False)
        seen = np.cumsum(rows[:, _BATCH:_FLAG] < self._first_live, axis=1, dtype=np.int8)
        fits = seen[:, -1] > rank
        into, at = homes[fits], np.argmax(seen[fits] > rank[fits, None], axis=1)
        self._table.view(np.uint64)[into, at] = prints[fits]
        self._table[into, _BATCH + at] = batches[fits]
        self._written += len(into)
        if not fits.all():
            left = ~fits
            self._place(prints[left], batches[left], homes[left], self._table[homes[left]])

    def _rebuild(self, buckets: int) -> None:
        """Lay the live keys out in a new table of ``buckets``."""
        live = self._table[:, _BATCH:_FLAG] >= self._first_live
        prints = self._table.view(np.uint64)[:, :SLOTS][live]
        batches = self._table[:, _BATCH:_FLAG][live]
        self._table = np.zeros((buckets, _WIDTH), dtype=np.uint32)
        self._written = 0
        self._overflowed = 0
        self._version += 1
        self._place_many(prints, batches)

    def _renumber(self) -> None:
        """Number the live batches from 1 again (before batch numbers run out)."""
        batches = self._table[:, _BATCH:_FLAG]
        live = batches >= self._first_live
        batches[live] -= np.uint32(self._first_live - 1)
        batches[~live] = 0
        kept = self._bases[self._first_live : self._next_batch]
        self._bases = np.concatenate([np.zeros(1, np.int64), kept, np.zeros(64, np.int64)])
        self._next_batch -= self._first_live - 1
        self._first_live = 1
        self._version += 1

    def _reflow(self, grow: bool) -> None:
        """Lay the live keys out again in a table as large (twice as large if ``grow``),
        without overflow flags or forgotten keys.

        A key in its home bucket keeps its slot: in bucket 2i or 2i + 1 as one more bit of
        its fingerprint says; only keys that had gone on to another bucket are placed again.
        """
        size = len(self._table)
        old = self._table
        prints = old.view(np.uint64)[:, :SLOTS]
        live = old[:, _BATCH:_FLAG] >= self._first_live
        at_home = self._homes(prints) == np.arange(size)[:, None]
        away = live & ~at_home
        moved_prints, moved_batches = prints[away], old[:, _BATCH:_FLAG][away]
        kept = live & at_home
        if grow:  # bucket i splits into 2i and 2i + 1 by the next bit of the fingerprint
            table = np.repeat(old, 2, axis=0)
            upper = (prints >> np.uint64(63 - self._bits)) & np.uint64(1) != 0
            table[1::2, _BATCH:_FLAG] *= kept & upper
            table[0::2, _BATCH:_FLAG] *= kept & ~upper
        else:
            table = old.copy()
            table[:, _BATCH:_FLAG] *= kept
        table[:, _FLAG] = 0
        self._table = table
        self._written = int(np.count_nonzero(live))
        self._overflowed = 0
        self._version += 1
        if len(moved_prints):
            homes = self._homes(moved_prints)
            self._written -= len(moved_prints)  # counted again as they are placed
            self._place(moved_prints, moved_batches, homes, self._table[homes])


def _ranks(values: Indices, stable: bool = True) -> Indices:
    """For each value, how many equal values come before it (in order if ``stable``, else
    in some order)."""
    order = np.argsort(values, kind="stable" if stable else None)
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    rank = np.empty(len(order), dtype=np.intp)
    sizes = np.diff(np.concatenate([starts, [len(order)]]))
    rank[order] = np.arange(len(order)) - np.repeat(starts, sizes)
    return rank


def _repeats(prints: Fingerprints) -> Indices:
    """Positions of keys whose fingerprint an earlier key has (first copies excluded)."""
    ordered = np.sort(prints)
    if not (ordered[1:] == ordered[:-1]).any():  # the common case: no need to know which
        return np.empty(0, dtype=np.intp)
    return np.flatnonzero(_ranks(prints.view(np.int64)) > 0)
