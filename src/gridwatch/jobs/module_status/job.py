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

import threading
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from gridwatch.components import Job, JobConfig
from gridwatch.record import Record, decode_lines, record_id, topic_name
from gridwatch.serving.status import Latest, ModuleRule, Status, evaluate

STATUS_TYPE = "module_status"
STALE_EVALUATION_S = 30.0


class ModuleStatusConfig(JobConfig):
    """Settings of the ``module_status`` job."""

    modules: dict[str, ModuleRule] = Field(
        min_length=1, description="The modules, by id, with the rules of their status."
    )
    evaluate_interval_s: float = Field(
        5.0,
        gt=0,
        description="While no data comes, evaluate every module at the wall-clock time this "
        "often (so freshness rules fire); records are evaluated as they come, and every module "
        "at least every 30 s.",
    )
    history_interval_s: float = Field(
        60.0, gt=0, description="Publish each module's status at least this often."
    )
    producer: str = Field("gridwatch", description="Producer of the published status records.")


class ModuleStatusJob(Job):
    """Evaluates module statuses and publishes their history."""

    Config = ModuleStatusConfig
    config: ModuleStatusConfig

    def __init__(self, component_id: str, config: Any, context: Any) -> None:
        super().__init__(component_id, config, context)
        self.restored = threading.Event()
        self.latest: dict[str, Latest] = {}
        self.current: dict[str, Status] = {}
        self.since: dict[str, int] = {}
        self.published: dict[str, int] = {}
        self.evaluated_ms = 0
        self._last_evaluation = 0.0
        self._busy = False
        self.topic = topic_name(self.config.producer, "agg", STATUS_TYPE)

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

    # -- the job ---------------------------------------------------------------------------

    def restore(self, state: Any) -> None:
        self._restore(state)
        self.restored.set()

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        self.emit(self._take(decode_lines(lines)))
        self._busy = True

    def tick(self) -> None:
        """Evaluate every module when idle (at least every ``STALE_EVALUATION_S``)."""
        since = self.context.clock.monotonic() - self._last_evaluation
        busy, self._busy = self._busy, False
        if (not busy and since >= self.config.evaluate_interval_s) or since >= STALE_EVALUATION_S:
            self.emit(self._evaluate_now())
            self._last_evaluation = self.context.clock.monotonic()

    def checkpoint(self) -> Any:
        return self._state()

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
        now_ms = round(self.context.clock.time() * 1000)
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
