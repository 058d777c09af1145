"""Every hash goes through gridwatch.record.ids, with the values ids had before (pinned)."""

from __future__ import annotations

import numpy as np

from gridwatch.record import PartsHash, Record, hash128
from gridwatch.serving.store import series_id
from gridwatch.transforms.dedup.transform import record_digest
from gridwatch.windowing.bins import AggSpec
from gridwatch.windowing.cells import Cells
from gridwatch.windowing.output import BinIds
from gridwatch.windowing.state import EMPTY


def test_a_prefixed_hash_continues_the_parts_hash() -> None:
    parts = [b"a", b"", b"x" * 300]
    assert hash128(*parts) == "ee9ea217e8aafee2562d48fe69798bc7"
    for cut in range(len(parts) + 1):
        assert PartsHash(*parts[:cut]).hexdigest(*parts[cut:]) == hash128(*parts)
    # A tail is hashed as it is, after the framed parts.
    assert PartsHash(b"a").hexdigest(tail=b"zz") != PartsHash(b"a").hexdigest(b"zz")


def test_bin_ids_hash_producer_type_length_start_and_keys() -> None:
    spec = AggSpec(600_000, ("domain", "n"), ())
    cells = Cells.from_states(spec, [(1_714_521_600_000, ("cern.ch", 1))], [EMPTY])
    (bin_id,) = BinIds("xrootd", "t10m", 600_000).of_cells(cells)
    assert bin_id == "ecd4c2c371161ae0716557649ef53876"
    assert bin_id == hash128(b"xrootd", b"t10m", b"600000", b"1714521600000", b'["cern.ch",1]')
    assert cells.start.dtype == np.int64


def test_dedup_digests_and_series_ids_keep_their_values() -> None:
    record = Record("panda", "jobs", 1714521600000, "abc", data={"b": 1, "a": [1, 2]})
    digest = record_digest(record, ["producer", "timestamp"], payload=True)
    assert digest.hex() == "4ca657c0d0560d01235eda1cf741c5ef"
    assert record_digest(record, [], payload=True).hex() == "ad89926b029122abf7c288437d8b474a"
    assert record_digest(record, ["type"], payload=False).hex() == (
        "6cbfd1c2c0bbfb93fa0d88599208db78"
    )
    assert series_id("cpu", {"host": "a", "dc": "b"}) == -4420242257217729690
    assert series_id("cpu", {"dc": "b", "host": "a"}) == -4420242257217729690
