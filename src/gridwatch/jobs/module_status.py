"""The ``module_status`` job: EventIndex-style module statuses from the latest values on the bus.

It follows its inputs and keeps each module's latest values. Every record that a module sends
is evaluated at its own timestamp (so replayed or backfilled data gives a true history), and
when the job is idle — or at the latest every ``STALE_EVALUATION_S`` — every module is also
evaluated at the wall-clock time, so that a module that fell silent turns yellow or red by its
freshness rules. The job publishes ``gridwatch_agg_module_status`` records on every change and
at least every ``history_interval_s`` of event time: the status history, which a
``timeseries`` sink stores (the ``status_code`` field keeps the worst value of each bin).
``GET /api/v1/status`` answers from the job's current evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

from pydantic import Field

from gridwatch.api.serving import serving_of
from gridwatch.components import Job, JobConfig, register
from gridwatch.consumer import BusReader
from gridwatch.record import Record, decode_lines, encode_lines, record_id, topic_name
from gridwatch.serving.status import Latest, ModuleRule, Status, evaluate

STATUS_TYPE = "module_status"
STALE_EVALUATION_S = 30.0


class ModuleStatusConfig(JobConfig):
    """Settings of the ``module_status`` job."""

    type: Literal["module_status"] = "module_status"
    modules: dict[str, ModuleRule] = Field(
        min_length=1, description="The modules, by id, with the rules of their status."
    )
    evaluate_interval_s: float = Field(
        5.0, gt=0, description="How often every module's status is evaluated."
    )
    history_interval_s: float = Field(
        60.0, gt=0, description="Publish each module's status at least this often."
    )
    producer: str = Field("gridwatch", description="Producer of the published status records.")


@register("module_status")
class ModuleStatusJob(Job):
    """Evaluates module statuses and publishes their history."""

    Config = ModuleStatusConfig
    config: ModuleStatusConfig

    def __init__(self, component_id: str, config: Any, context: Any) -> None:
        super().__init__(component_id, config, context)
        self.restored = asyncio.Event()
        self.latest: dict[str, Latest] = {}
        self.current: dict[str, Status] = {}
        self.since: dict[str, int] = {}
        self.published: dict[str, int] = {}
        self.evaluated_ms = 0
        self.topic = topic_name(self.config.producer, "agg", STATUS_TYPE)
        if context.app is not None:
            serving_of(context.app).add_board(component_id, self)

    # -- what the API shows ----------------------------------------------------------------

    def statuses(self) -> list[dict[str, Any]]:
        """Every module's current status, reasons and newest data time."""
        out = []
        for module, rule in self.config.modules.items():
            status = self.current.get(module) or evaluate(rule, None, 0)
            latest = self.latest.get(module)
            out.append(
                {
                    "module": module,
                    "title": rule.title or module,
                    "status": status.status,
                    "colour": status.colour,
                    "code": status.code,
                    "reasons": list(status.reasons),
                    "since": self.since.get(module),
                    "last_data": latest.timestamp_ms if latest else None,
                    "evaluated_at": self.evaluated_ms or None,
                    "job": self.id,
                }
            )
        return out

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        reader = BusReader(self.context.bus, f"job.{self.id}", cfg.inputs, cfg.max_batch_records)
        self._restore(await reader.load())
        self.restored.set()
        last_evaluation = 0.0
        last_commit = time.monotonic()
        while not stop.is_set():
            busy = False
            changes: list[Record] = []
            async for polled in reader.each_topic():
                busy = True
                self.context.metrics.inc(self.id, "dropped", polled.lost)
                changes.extend(self._take(decode_lines(polled.lines)))
                self.context.metrics.inc(self.id, "received", len(polled.lines))
                reader.advance(polled)
            since_evaluation = time.monotonic() - last_evaluation
            if (not busy and since_evaluation >= cfg.evaluate_interval_s) or (
                since_evaluation >= STALE_EVALUATION_S
            ):
                changes.extend(self._evaluate_now())
                last_evaluation = time.monotonic()
            if changes:
                await self._publish(changes, reader)
                last_commit = time.monotonic()
            elif reader.uncommitted and time.monotonic() - last_commit >= cfg.commit_interval_s:
                await reader.commit(self._state())
                last_commit = time.monotonic()
            if not busy:
                pause = min(cfg.poll_interval_s, cfg.evaluate_interval_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        if reader.uncommitted:
            await reader.commit(self._state())

    def _take(self, records: list[Record]) -> list[Record]:
        """Update the modules' latest values; evaluate each at its record's time."""
        changes: list[Record] = []
        for record in records:
            for module, rule in self.config.modules.items():
                if not _belongs(record, module, rule):
                    continue
                latest = self.latest.setdefault(module, Latest())
                if record.timestamp < latest.timestamp_ms:
                    continue  # older than what is known: not the latest value
                latest.update(record.data, record.timestamp)
                status = evaluate(rule, latest, record.timestamp)
                self._observe(module, status, record.timestamp, changes)
        return changes

    def _evaluate_now(self) -> list[Record]:
        """Evaluate every module at the wall-clock time (freshness rules need it)."""
        now_ms = round(time.time() * 1000)
        changes: list[Record] = []
        for module, rule in self.config.modules.items():
            self._observe(module, evaluate(rule, self.latest.get(module), now_ms), now_ms, changes)
        self.evaluated_ms = now_ms
        return changes

    def _observe(self, module: str, status: Status, at_ms: int, changes: list[Record]) -> None:
        previous = self.current.get(module)
        if previous is None or previous.status != status.status:
            self.since[module] = at_ms
        self.current[module] = status
        interval_ms = self.config.history_interval_s * 1000
        published = self.published.get(module)
        # Older records after newer ones (a backfill, a replay) start their own history.
        due = published is None or not 0 <= at_ms - published < interval_ms
        if previous != status or due:
            changes.append(self._record(module, status, at_ms))
            self.published[module] = at_ms

    async def _publish(self, changes: list[Record], reader: BusReader) -> None:
        """Append status records and commit the consumed offsets, in one step."""
        lines = encode_lines(changes)
        commit = (reader.group, dict(reader.offsets), self._state())
        await asyncio.to_thread(
            self.context.bus.append, [(self.topic, self.id, lines)], None, commit
        )
        reader.uncommitted = False
        self.context.metrics.inc(self.id, "sent", len(lines))

    def _record(self, module: str, status: Status, now_ms: int) -> Record:
        rule = self.config.modules[module]
        data = {
            "module": module,
            "title": rule.title or module,
            "status": status.status,
            "status_code": status.code,
            "reasons": "; ".join(status.reasons),
        }
        producer = self.config.producer
        return Record(
            producer,
            STATUS_TYPE,
            now_ms,
            record_id(producer, STATUS_TYPE, now_ms, data),
            type_prefix="agg",
            data=data,
            idb_tags=["module"],
            idb_fields=["status_code", "status"],
        )

    def _state(self) -> dict[str, Any]:
        return {
            "latest": {m: [v.values, v.timestamp_ms] for m, v in self.latest.items()},
            "current": {m: [s.status, list(s.reasons)] for m, s in self.current.items()},
            "since": self.since,
        }

    def _restore(self, state: Any) -> None:
        if not isinstance(state, dict):
            return
        for module, (values, ts) in state.get("latest", {}).items():
            self.latest[module] = Latest(dict(values), int(ts))
        for module, (status, reasons) in state.get("current", {}).items():
            self.current[module] = Status(status, tuple(reasons))
        self.since = {m: int(v) for m, v in state.get("since", {}).items()}


def _belongs(record: Record, module: str, rule: ModuleRule) -> bool:
    if rule.producer is not None and record.producer != rule.producer:
        return False
    if record.type != (rule.type or module):
        return False
    return all(str(record.data.get(k)) == v for k, v in rule.match.items())
