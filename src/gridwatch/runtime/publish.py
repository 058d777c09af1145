"""The one publish path: every producer of records reaches the bus through :class:`Publisher`.

Sources, scheduled collectors, ``gridwatch deadletter replay`` and ``gridwatch replay --to-bus``
all hand it records (or an NDJSON body to decode); it runs the transforms downstream of the
producer, turns every rejection into a dead letter, and appends everything with the producer's
position in one atomic step. Counters are kept here, once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from gridwatch.bus.base import Bus, Entry, IdEntry, JoinedLines
from gridwatch.components import Transform
from gridwatch.metrics import Metrics
from gridwatch.record import (
    DecodeResult,
    EncodedRecords,
    EnvelopeDecoder,
    Record,
    Rejection,
    encode,
    encode_joined,
    topic_name,
)
from gridwatch.record.deadletter import DEADLETTER_ORIGIN, dead_letter
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC
from gridwatch.retry import Backoff, sleep_unless

log = logging.getLogger(__name__)


class Publisher:
    """Routes a producer's records through its transforms onto the bus, with dead letters.

    Until :meth:`rewire` says otherwise, records go to the bus untransformed.
    """

    def __init__(
        self,
        bus: Bus,
        metrics: Metrics,
        decoder: EnvelopeDecoder | None = None,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.decoder = decoder or EnvelopeDecoder()
        self.lock = threading.Lock()
        self.rewire({}, {}, None)

    def rewire(
        self,
        transforms: Mapping[str, Transform],
        inputs: Mapping[str, Collection[str]],
        published: Collection[str] | None,
    ) -> None:
        """Route through these transforms (by id, with their inputs) from now on.

        ``published`` names the components whose records anybody consumes (``None``: every
        producer's); records of the others are only passed on to transforms.
        """
        children: dict[str, list[str]] = defaultdict(list)
        for transform_id in transforms:
            for upstream in inputs.get(transform_id, ()):
                children[upstream].append(transform_id)
        with self.lock:
            self.transforms = dict(transforms)
            self.children = children
            self.published = None if published is None else set(published)

    def publish(
        self,
        origin: str,
        records: Sequence[Record],
        rejected: Sequence[Rejection] = (),
        position: Any = None,
    ) -> None:
        """Append ``origin``'s records (transformed), its rejections as dead letters and its
        ``position`` in one atomic step; then tell the transforms whether it happened.

        Batches pass one at a time, so a stateful transform (``dedup``) always knows which of
        its decisions reached the bus. Raises when the bus refuses the append.
        """
        self.metrics.inc(origin, "received", len(records) + len(rejected))
        dead = [self._dead_letter(r.raw, r.reason, origin) for r in rejected]
        with self.lock:
            entries: list[Entry] = []
            touched: list[Transform] = []
            self._flow(origin, records, entries, dead, touched)
            if dead:
                entries.append((DEADLETTER_TOPIC, DEADLETTER_ORIGIN, dead))
            try:
                result = self.bus.append(entries, None if position is None else (origin, position))
            except BaseException:
                self.metrics.inc(origin, "errors")
                for transform in touched:
                    transform.rollback()
                raise
            for transform in touched:
                transform.commit()
        self.metrics.inc(origin, "sent", len(records))
        self.metrics.inc(origin, "dropped", len(rejected))
        self.metrics.inc(origin, "duplicates", result.duplicates)

    def publish_ndjson(self, origin: str, body: bytes, position: Any = None) -> DecodeResult:
        """Decode envelopes (JSON or NDJSON) and :meth:`publish` them; return what was decoded."""
        result = self.decoder.decode_ndjson(body)
        if result.rejected:
            log.warning(
                "%s: %d records rejected, e.g. %s",
                origin,
                len(result.rejected),
                result.rejected[0].reason,
            )
        self.publish(origin, result.records, result.rejected, position)
        return result

    def publish_lines(self, origin: str, lines: Sequence[bytes], position: Any = None) -> int:
        """Validate envelope lines again (as a sender's) and publish them; the count taken."""
        result = self.decoder.decode_ndjson(b"\n".join(lines))
        self.publish(origin, result.records, result.rejected, position)
        return len(result.records)

    async def deliver(
        self,
        origin: str,
        records: Sequence[Record],
        rejected: Sequence[Rejection],
        position: Any,
        stop: asyncio.Event,
    ) -> bool:
        """:meth:`publish` in a thread, retried with backoff until taken; ``False`` if
        ``stop`` was set first (nothing was appended then)."""
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                await asyncio.to_thread(self.publish, origin, records, rejected, position)
                return True
            except Exception as exc:
                log.error("appending %s's batch to the bus failed: %s", origin, exc)
                if await sleep_unless(stop, backoff.next()):
                    return False

    def _dead_letter(self, raw: bytes, reason: str, origin: str) -> bytes:
        # An original that nests deeper than a record may (the envelope around its data) is
        # kept as text: it must not reach the sinks as a deep object.
        return dead_letter(raw, reason, origin, max_depth=self.decoder.max_depth + 1)

    # -- transforms ---------------------------------------------------------------------

    def _flow(
        self,
        node: str,
        records: Sequence[Record],
        entries: list[Entry],
        dead: list[bytes],
        touched: list[Transform],
    ) -> None:
        if not records:
            return
        if self.published is None or node in self.published:
            # The bus refuses an id that a topic already took. Transforms keep their input's
            # _id and may write to the same topic as their input: their ids are their own.
            entries.extend(by_topic(node, records, node if node in self.transforms else None))
        for child in self.children.get(node, ()):
            touched.append(self.transforms[child])
            as_list = records if isinstance(records, list) else list(records)
            self._flow(child, self._apply(child, as_list, dead), entries, dead, touched)

    def _apply(self, transform_id: str, records: list[Record], dead: list[bytes]) -> list[Record]:
        transform = self.transforms[transform_id]
        self.metrics.inc(transform_id, "received", len(records))
        try:
            out = transform.process(records)
        except Exception:
            # Find the records that break it, one at a time, and keep the rest flowing.
            out = []
            for record in records:
                try:
                    out.extend(transform.process([record]))
                except Exception as exc:  # a per-record failure is a dead letter, not a crash
                    reason = f"{type(exc).__name__}: {exc}"
                    dead.append(self._dead_letter(encode(record), reason, transform_id))
                    self.metrics.inc(transform_id, "errors")
                    log.warning("%s rejected record %s: %s", transform_id, record.id, reason)
        self.metrics.inc(transform_id, "sent", len(out))
        return out


def by_topic(origin: str, records: Sequence[Record], id_scope: str | None = None) -> list[Entry]:
    """Group records by their envelope's topic and encode them as lines, with their ids (as
    ``{id_scope}:{_id}`` when a scope is given) for the bus to refuse second copies."""
    if isinstance(records, EncodedRecords):  # already lines, all of one topic, exactly once
        return [(records.topic, origin, records.lines)]  # by the source's position
    groups: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.producer, record.type_prefix, record.type)].append(record)
    return [
        IdEntry(
            topic_name(*key),
            origin,
            JoinedLines(encode_joined(group), len(group)),
            [r.id for r in group] if id_scope is None else [f"{id_scope}:{r.id}" for r in group],
        )
        for key, group in groups.items()
    ]
