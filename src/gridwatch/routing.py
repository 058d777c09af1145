"""From a source's batch to bus entries: run the transforms downstream of it, then group the
records of every published component by topic."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from gridwatch.bus.base import Bus, Entry, JoinedLines
from gridwatch.components import Transform
from gridwatch.deadletter import TOPIC as DEADLETTER_TOPIC
from gridwatch.deadletter import dead_letter
from gridwatch.metrics import Metrics
from gridwatch.record import EncodedRecords, Record, encode, encode_joined, topic_name

log = logging.getLogger(__name__)
DEADLETTER_ORIGIN = "_deadletter"


class Router:
    """Runs a source's records through its downstream transforms and groups them by topic.

    Only components that a sink or job takes records from are published to the bus.
    """

    def __init__(
        self,
        transforms: Mapping[str, Transform],
        inputs: Mapping[str, Collection[str]],
        published: Collection[str],
        metrics: Metrics,
    ) -> None:
        self.transforms = transforms
        self.children: dict[str, list[str]] = defaultdict(list)
        for transform_id in transforms:
            for upstream in inputs[transform_id]:
                self.children[upstream].append(transform_id)
        self.published = set(published)
        self.metrics = metrics
        self.lock = threading.Lock()

    def append(
        self,
        bus: Bus,
        origin: str,
        records: Sequence[Record],
        extra: list[Entry],
        position: tuple[str, Any] | None,
    ) -> None:
        """Route ``origin``'s records and append them (with ``extra`` entries and the source's
        position) in one step, then tell the transforms whether their output is durable.

        Batches pass one at a time, so a stateful transform (``dedup``) always knows which of
        its decisions reached the bus.
        """
        with self.lock:
            entries: list[Entry] = []
            dead: list[bytes] = []
            touched: list[Transform] = []
            self._flow(origin, records, entries, dead, touched)
            if dead:
                entries.append((DEADLETTER_TOPIC, DEADLETTER_ORIGIN, dead))
            try:
                bus.append(entries + extra, position)
            except BaseException:
                for transform in touched:
                    transform.rollback()
                raise
            for transform in touched:
                transform.commit()

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
        if node in self.published:
            entries.extend(by_topic(node, records))
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
                    dead.append(dead_letter(encode(record), reason, transform_id))
                    self.metrics.inc(transform_id, "errors")
                    log.warning("%s rejected record %s: %s", transform_id, record.id, reason)
        self.metrics.inc(transform_id, "sent", len(out))
        return out


def by_topic(origin: str, records: Sequence[Record]) -> list[Entry]:
    """Group records by their envelope's topic and encode them as lines."""
    if isinstance(records, EncodedRecords):  # already lines, all of one topic
        return [(records.topic, origin, records.lines)]
    groups: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.producer, record.type_prefix, record.type)].append(record)
    return [
        (topic_name(*key), origin, JoinedLines(encode_joined(group), len(group)))
        for key, group in groups.items()
    ]
