"""``dedup``: drop records already seen among the last N, as Flume's duplicated-events processor.

Seed 000 found two bugs in that processor: a 32-bit ``String.hashCode()`` (with a window of
100,000 events, a false duplicate, i.e. a lost record, is more likely than not) and a map hash
that XORs key and value hashes, so ``{"foo": "bar"}`` and ``{"bar": "foo"}`` collide. Here the
hash is 128-bit BLAKE2b over canonical JSON (sorted keys, every key and value encoded in place),
so key order does not matter but which string is the key and which the value does.

The runtime tells the transform whether each batch reached the bus (``commit``) or not
(``rollback``): the hashes of a batch that failed to append are forgotten, so a sender's retry
is not mistaken for a duplicate. The window is saved in ``state_dir`` after commits (every
``checkpoint_interval_s`` and on a clean stop) and loaded at start, so a restart does not let
the duplicates of a collector's replay through. After a crash the window is the last saved
one: a duplicate may then pass (at-least-once, and sinks overwrite by ``_id``), but a record is
never dropped for a hash the bus never stored.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from gridwatch.components import Transform, TransformConfig
from gridwatch.record import Record, canonical_json, labelled_digest

log = logging.getLogger(__name__)
DIGEST_BYTES = 16
EnvelopeField = Literal["producer", "type", "type_prefix", "timestamp", "host", "version", "_id"]
_ATTRIBUTE = {"_id": "id"}


class DedupConfig(TransformConfig):
    """Settings of the ``dedup`` transform."""

    window_records: int = Field(
        100_000, ge=1, description="Remember the hashes of this many most recent records."
    )
    payload: bool = Field(True, description="Hash the payload (`data`).")
    envelope_fields: list[EnvelopeField] = Field(
        default_factory=list,
        description="Envelope fields hashed too. Leave out fields stamped on receipt (a receive "
        "time makes every record unique, as seed 000 found with Flume's timestamp header).",
    )
    checkpoint_interval_s: float = Field(
        5.0, ge=0, description="Save the window at most this often (0: after every batch)."
    )


def record_digest(record: Record, envelope_fields: list[str], payload: bool) -> bytes:
    """The 128-bit hash of a record's chosen envelope fields and payload."""
    fields = [
        (name, canonical_json(getattr(record, _ATTRIBUTE.get(name, name))))
        for name in envelope_fields
    ]
    return labelled_digest(fields, canonical_json(record.data) if payload else None)


class Window:
    """The hashes of the most recent distinct records, oldest first, at most ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hashes: OrderedDict[bytes, None] = OrderedDict()

    def add(self, digest: bytes) -> bool:
        """Remember ``digest``; ``False`` when it is already in the window (a duplicate)."""
        if digest in self.hashes:
            return False
        self.hashes[digest] = None
        if len(self.hashes) > self.size:
            self.hashes.popitem(last=False)
        return True

    def dump(self) -> bytes:
        """The window as concatenated digests, oldest first."""
        return b"".join(self.hashes)

    def load(self, blob: bytes) -> None:
        """Restore a dump (keeping the newest ``size`` if the window shrank)."""
        usable = len(blob) - len(blob) % DIGEST_BYTES
        for start in range(0, usable, DIGEST_BYTES):
            self.add(blob[start : start + DIGEST_BYTES])


class Dedup(Transform):
    """Drops records whose hash is among the last ``window_records``; counts what it drops."""

    Config = DedupConfig
    config: DedupConfig

    def open(self) -> None:
        self.window = Window(self.config.window_records)
        self.path: Path = self.context.state_dir(self.id) / "window.bin"
        if self.path.exists():
            self.window.load(self.path.read_bytes())
            log.info("%s: loaded %d hashes", self.id, len(self.window.hashes))
        self.saved_at = time.monotonic()
        self.dirty = False
        self.uncommitted: list[bytes] = []  # hashes of kept records not yet on the bus
        self.lock = threading.Lock()

    def process(self, records: list[Record]) -> list[Record]:
        fields: list[str] = list(self.config.envelope_fields)
        payload = self.config.payload
        digests = [record_digest(r, fields, payload) for r in records]
        with self.lock:
            add = self.window.add
            kept = []
            for record, digest in zip(records, digests, strict=True):
                if add(digest):
                    kept.append(record)
                    self.uncommitted.append(digest)
        dropped = len(records) - len(kept)
        if dropped:
            self.context.metrics.inc(self.id, "dropped", dropped)
            log.debug("%s: dropped %d duplicates", self.id, dropped)
        return kept

    def commit(self) -> None:
        with self.lock:
            self.dirty = self.dirty or bool(self.uncommitted)
            self.uncommitted.clear()
            if self.dirty and time.monotonic() - self.saved_at >= self.config.checkpoint_interval_s:
                self.save()

    def rollback(self) -> None:
        with self.lock:
            for digest in self.uncommitted:
                self.window.hashes.pop(digest, None)
            self.uncommitted.clear()

    def save(self) -> None:
        """Write the window atomically (a crash leaves the previous one)."""
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            handle.write(self.window.dump())
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        self.saved_at = time.monotonic()
        self.dirty = False

    def close(self) -> None:
        self.rollback()  # whatever was not committed never reached the bus
        if self.dirty:
            with self.lock:
                self.save()

    def state(self) -> dict[str, Any]:
        """How full the window is, for diagnostics."""
        return {"hashes": len(self.window.hashes), "size": self.window.size}
