"""The bins of the ``aggregate`` and ``rollup`` jobs as columns: merges, revisions, emission
and checkpoints.

Each row of the table is one (bin, group) cell still open or within the allowed lateness.
Merged (or replaced) cells become dirty; :meth:`BinTable.emit` returns the dirty bins the
watermark has passed (see :mod:`.watermark`), each with its next revision, and forgets the
clean bins past the horizon. Rows of forgotten bins are reclaimed by compaction once they
outnumber the live ones.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from gridwatch.errors import ConfigurationError
from gridwatch.windowing.bins import AggSpec, BinKey
from gridwatch.windowing.cells import I64, Cells, Triples, add_exact
from gridwatch.windowing.watermark import Watermark, canonical_keys

_MIN_CAPACITY = 1024


class BinTable(Watermark):
    """Accumulators, revision and dirty flag of every kept (bin, group), as arrays."""

    def __init__(self, spec: AggSpec, delay_ms: int = 0, lateness_ms: int = 0) -> None:
        super().__init__(spec.bin_ms, delay_ms, lateness_ms)
        self.spec = spec
        self.groups: list[tuple[Any, ...]] = []
        self._group_ids: dict[tuple[Any, ...], int] = {}
        self._canonical: list[bytes] = []  # each group's keys as canonical JSON, for ordering
        self._rows: dict[tuple[int, int], int] = {}
        self.size = 0
        self._dead = 0
        self._columns = self._allocate(_MIN_CAPACITY)
        self._sketches = {name: [Triples.empty()] for name in spec.sketched}
        self._combined_size = {name: 0 for name in spec.sketched}

    def _allocate(self, capacity: int) -> dict[str, npt.NDArray[Any]]:
        ints = ["start", "group", "count", "active", "ended", "revision"]
        ints += [f"{kind}:{name}" for name in self.spec.summed for kind in ("sum", "n")]
        columns: dict[str, npt.NDArray[Any]] = {c: np.zeros(capacity, np.int64) for c in ints}
        for name in self.spec.ranged:
            for kind in ("min", "max"):
                columns[f"{kind}:{name}"] = np.full(capacity, np.nan)
        columns["dirty"] = np.zeros(capacity, bool)
        columns["live"] = np.zeros(capacity, bool)
        return columns

    def __len__(self) -> int:
        """How many bins are kept."""
        return self.size - self._dead

    # -- merging -------------------------------------------------------------------------

    def add(self, cells: Cells) -> None:
        """Merge cells into their bins (cells of one bin are merged together first)."""
        if len(cells):
            self._merge(*self._distinct(cells))

    def replace(self, cells: Cells) -> None:
        """Set the state of the cells' bins to the merge of those cells."""
        if not len(cells):
            return
        cells, rows = self._distinct(cells)  # an overflow is refused before any bin changes
        c = self._columns
        summed = [f"{kind}:{name}" for name in self.spec.summed for kind in ("sum", "n")]
        for name in ("count", "active", "ended", *summed):
            c[name][rows] = 0
        for name in self.spec.ranged:
            c["min:" + name][rows] = c["max:" + name][rows] = np.nan
        cleared = np.zeros(self.size, dtype=bool)
        cleared[rows] = True
        for parts in self._sketches.values():
            parts[:] = [part.drop(cleared) for part in parts]
        self._merge(cells, rows)

    def holds(self, key: BinKey) -> bool:
        """Whether the bin is kept."""
        group = self._group_ids.get(key[1])
        return group is not None and (key[0], group) in self._rows

    def widen(self, spec: AggSpec) -> None:
        """Keep the state of ``spec``'s fields (a superset of the current ones; new ones start
        empty)."""
        kept = self._columns
        self.spec = spec
        self._columns = self._allocate(len(kept["start"]))
        self._columns.update(kept)
        for name in spec.sketched:
            self._sketches.setdefault(name, [Triples.empty()])
            self._combined_size.setdefault(name, 0)

    def _distinct(self, cells: Cells) -> tuple[Cells, I64]:
        """The cells with those of one bin merged (keys equal in Python, as 0.0 and -0.0, are
        one bin), and their rows."""
        rows = self._find_rows(cells.start, self._global_groups(cells.groups)[cells.group])
        if len(np.unique(rows)) < len(rows):
            return cells.merged_by(rows)
        return cells, rows

    def _merge(self, cells: Cells, rows: I64) -> None:
        c = self._columns
        # Checked before anything changes, so an overflow leaves the table as it was.
        sums = {
            name: add_exact(c["sum:" + name][rows], cells.sums[name], name)
            for name in self.spec.summed
        }
        for name in ("count", "active", "ended"):
            c[name][rows] += getattr(cells, name)
        for name in self.spec.summed:
            c["sum:" + name][rows] = sums[name]
            c["n:" + name][rows] += cells.n[name]
        for name in self.spec.ranged:
            c["min:" + name][rows] = np.fmin(c["min:" + name][rows], cells.mins[name])
            c["max:" + name][rows] = np.fmax(c["max:" + name][rows], cells.maxs[name])
        c["dirty"][rows] = True
        for name, triples in cells.sketches.items():
            parts = self._sketches[name]
            parts.append(Triples(rows[triples.cell], triples.bucket, triples.count))
            if sum(map(len, (p.cell for p in parts))) > 2 * max(self._combined_size[name], 1 << 16):
                self._combine(name)

    def _global_groups(self, groups: list[tuple[Any, ...]]) -> I64:
        ids = self._group_ids
        out = []
        for group in groups:
            gid = ids.get(group)
            if gid is None:
                gid = ids[group] = len(self.groups)
                self.groups.append(group)
                self._canonical.append(canonical_keys(group))
            out.append(gid)
        return np.array(out, dtype=np.int64)

    def _find_rows(self, starts: I64, gids: I64) -> I64:
        """The row of each (start, group), new rows appended for cells not kept yet."""
        index = self._rows
        first_new = self.size
        rows = []
        for key in zip(starts.tolist(), gids.tolist(), strict=True):
            row = index.get(key)
            if row is None:
                row = index[key] = self.size
                self.size += 1
            rows.append(row)
        out = np.array(rows, dtype=np.int64)
        if self.size > first_new:
            if self.size > len(self._columns["start"]):
                self._resize(max(2 * self.size, _MIN_CAPACITY), np.arange(first_new))
            new = out >= first_new
            c = self._columns
            c["start"][out[new]] = starts[new]
            c["group"][out[new]] = gids[new]
            c["live"][out[new]] = True
        return out

    def _resize(self, capacity: int, keep: npt.NDArray[np.intp]) -> None:
        """New arrays of ``capacity`` rows, starting with the rows ``keep``."""
        fresh = self._allocate(capacity)
        for name, column in self._columns.items():
            fresh[name][: len(keep)] = column[keep]
        self._columns = fresh

    def _combine(self, name: str) -> None:
        parts = self._sketches[name]
        parts[:] = [Triples.concat(parts).combined()]
        self._combined_size[name] = len(parts[0].cell)

    # -- emission ------------------------------------------------------------------------

    def emit(self) -> tuple[Cells, I64]:
        """The dirty bins the watermark has passed (in key order) with their new revisions;
        clean bins past the horizon are forgotten."""
        mark = self.watermark
        if mark is None:
            return self.take(np.zeros(0, np.int64)), np.zeros(0, np.int64)
        n, c = self.size, self._columns
        start, dirty = c["start"][:n], c["dirty"][:n]
        ready = self._in_key_order(np.flatnonzero(dirty & (start + self.bin_ms <= mark)))
        c["revision"][ready] += 1
        dirty[ready] = False
        out = self.take(ready), c["revision"][ready].copy()
        final = np.flatnonzero(
            c["live"][:n] & ~dirty & (start + self.bin_ms <= mark - self.lateness_ms)
        )
        if len(final):
            c["live"][final] = False
            for key in zip(start[final].tolist(), c["group"][final].tolist(), strict=True):
                del self._rows[key]
            self._dead += len(final)
            if self._dead > max(_MIN_CAPACITY, len(self)):
                self._compact()
        return out

    def emittable(self, from_ms: int, to_ms: int) -> npt.NDArray[np.intp]:
        """The rows of kept bins starting in ``[from_ms, to_ms)``, in key order."""
        rows = self.live_rows()
        start = self._columns["start"][rows]
        return self._in_key_order(rows[(start >= from_ms) & (start < to_ms)])

    def _in_key_order(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Rows sorted by bin start, then by the canonical JSON of their key tuples."""
        c = self._columns
        groups, inverse = np.unique(c["group"][rows], return_inverse=True)
        canonical = [self._canonical[g] for g in groups.tolist()]
        rank = np.empty(len(groups), dtype=np.int64)
        rank[sorted(range(len(groups)), key=canonical.__getitem__)] = np.arange(len(groups))
        return rows[np.lexsort((rank[inverse], c["start"][rows]))]

    def take(self, rows: npt.NDArray[np.intp]) -> Cells:
        """The cells of the given rows, in that order."""
        c = self._columns
        return Cells(
            c["start"][rows],
            c["group"][rows],
            self.groups,
            c["count"][rows],
            c["active"][rows],
            c["ended"][rows],
            {name: c["sum:" + name][rows] for name in self.spec.summed},
            {name: c["n:" + name][rows] for name in self.spec.summed},
            {name: c["min:" + name][rows] for name in self.spec.ranged},
            {name: c["max:" + name][rows] for name in self.spec.ranged},
            {
                name: Triples.select(self._sketches[name], rows, self.size)
                for name in self.spec.sketched
            },
        )

    def live_rows(self) -> npt.NDArray[np.intp]:
        """The rows of kept bins, in row order."""
        return np.flatnonzero(self._columns["live"][: self.size])

    def _compact(self) -> None:
        """Drop the rows of forgotten bins and the groups no kept bin uses."""
        keep = self.live_rows()
        sketches = {
            name: Triples.select(parts, keep, self.size) for name, parts in self._sketches.items()
        }
        self._resize(max(2 * len(keep), _MIN_CAPACITY), keep)
        self.size, self._dead = len(keep), 0
        c = self._columns
        used, c["group"][: self.size] = np.unique(c["group"][: self.size], return_inverse=True)
        self.groups = [self.groups[g] for g in used.tolist()]
        self._canonical = [self._canonical[g] for g in used.tolist()]
        self._group_ids = {group: gid for gid, group in enumerate(self.groups)}
        keys = zip(c["start"][: self.size].tolist(), c["group"][: self.size].tolist(), strict=True)
        self._rows = {key: row for row, key in enumerate(keys)}
        for name, triples in sketches.items():
            self._sketches[name] = [triples]
            self._combined_size[name] = len(triples.cell)

    # -- checkpoints ---------------------------------------------------------------------

    def to_raw(self) -> msgspec.Raw:
        """The state as JSON: the kept bins column by column."""
        rows = self.live_rows()
        cells = self.take(rows)
        used, group = np.unique(cells.group, return_inverse=True)
        c = self._columns
        state: dict[str, Any] = {
            "max_event_ms": self.max_event_ms,
            "groups": [list(self.groups[g]) for g in used.tolist()],
            "start": cells.start.tolist(),
            "group": group.tolist(),
            "count": cells.count.tolist(),
            "active": cells.active.tolist(),
            "ended": cells.ended.tolist(),
            "revision": c["revision"][rows].tolist(),
            "dirty": c["dirty"][rows].tolist(),
            "sums": {name: values.tolist() for name, values in cells.sums.items()},
            "n": {name: values.tolist() for name, values in cells.n.items()},
            "mins": {name: _floats(values) for name, values in cells.mins.items()},
            "maxs": {name: _floats(values) for name, values in cells.maxs.items()},
            "sketches": {
                name: [t.cell.tolist(), t.bucket.tolist(), t.count.tolist()]
                for name, t in cells.sketches.items()
            },
        }
        finite = all(
            np.isfinite(v[~np.isnan(v)]).all() for v in [*cells.mins.values(), *cells.maxs.values()]
        )
        # msgspec writes infinities as null; json keeps them.
        return msgspec.Raw(msgspec.json.encode(state) if finite else json.dumps(state).encode())

    def load(self, state: dict[str, Any] | msgspec.Raw | None) -> None:
        """Restore from :meth:`to_raw` or from the per-bin form earlier versions wrote."""
        if isinstance(state, msgspec.Raw):
            state = json.loads(bytes(state))
        if not state:
            return
        if not isinstance(state, dict):
            raise ValueError("an aggregate checkpoint is a JSON object")
        self.max_event_ms = state["max_event_ms"]
        if "bins" in state:
            self._load_bins(state["bins"])
            return
        # Measures added to the job since the checkpoint start empty; removed ones are dropped.
        spec, size, ints = self.spec, len(state["start"]), _ints
        zeros, nans = np.zeros(size, np.int64), np.full(size, np.nan)

        def column(kind: str, name: str, parse: Any, missing: npt.NDArray[Any]) -> Any:
            values = state[kind].get(name)
            return missing if values is None else parse(values)

        cells = Cells(
            ints(state["start"]),
            ints(state["group"]),
            [tuple(group) for group in state["groups"]],
            ints(state["count"]),
            ints(state["active"]),
            ints(state["ended"]),
            {name: column("sums", name, ints, zeros) for name in spec.summed},
            {name: column("n", name, ints, zeros) for name in spec.summed},
            {name: column("mins", name, _nans, nans) for name in spec.ranged},
            {name: column("maxs", name, _nans, nans) for name in spec.ranged},
            {
                name: Triples(*map(ints, state["sketches"].get(name, [[], [], []])))
                for name in spec.sketched
            },
        )
        self._restore(cells, ints(state["revision"]), np.array(state["dirty"], dtype=bool))

    def _load_bins(self, bins: list[list[Any]]) -> None:
        keys = [(int(start), tuple(keys)) for start, keys, _, _, _ in bins]
        cells = Cells.from_states(self.spec, keys, [entry[2] for entry in bins])
        revisions = _ints([int(entry[3]) for entry in bins])
        self._restore(cells, revisions, np.array([bool(entry[4]) for entry in bins], dtype=bool))

    def _restore(self, cells: Cells, revisions: I64, dirty: npt.NDArray[np.bool_]) -> None:
        self._check_fits(cells)
        self.add(cells)
        rows = self._find_rows(cells.start, self._global_groups(cells.groups)[cells.group])
        self._columns["revision"][rows] = revisions
        self._columns["dirty"][rows] = dirty

    def _check_fits(self, cells: Cells) -> None:
        """Refuse a checkpoint made with other bins or keys: merging it would mix them up."""
        keys = len(self.spec.keys)
        widths = {len(group) for group in cells.groups}
        if widths - {keys}:
            raise ConfigurationError(
                f"the checkpoint holds bins with {', '.join(map(str, sorted(widths)))} group_by "
                f"keys and the job has {keys}: run the changed job under a new id (its state "
                "then starts empty) or restore its group_by"
            )
        if len(cells) and np.any(cells.start % self.bin_ms):
            raise ConfigurationError(
                f"the checkpoint holds bins that are not {self.bin_ms // 1000} s long: run the "
                "changed job under a new id (its state then starts empty) or restore window_s"
            )


def _ints(values: list[int]) -> I64:
    return np.array(values, dtype=np.int64).reshape(len(values))


def _floats(values: npt.NDArray[np.float64]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _nans(values: list[float | None]) -> npt.NDArray[np.float64]:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64).reshape(
        len(values)
    )
