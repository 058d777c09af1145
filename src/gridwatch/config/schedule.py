"""The ``schedule:`` section of the pipeline file: batch tasks, services, reports and HA."""

from __future__ import annotations

import re
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gridwatch.config.graph import closing_edges
from gridwatch.config.problems import listing, shorten
from gridwatch.config.secrets import Secret
from gridwatch.timespec import ScheduleError, parse_schedule

_COLLECTOR = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Zurich)"
        ) from None
    return name


class TaskConfig(_Model):
    """A batch task: a command or a Python collector run on a schedule or after its parents."""

    time_zone: str | None = Field(
        None,
        description="IANA time zone of a cron expression (default UTC) and of an ISO start; "
        "like Chronos' scheduleTimeZone it re-reads the start's wall-clock time in this zone.",
    )
    schedule: str | None = Field(
        None,
        description="When to run: an ISO 8601 repeating interval as Chronos takes it "
        "(`R/2016-07-21T00:00:00Z/PT1H`, `R5//P1D`) or a 5-field cron expression "
        "(`30 0 * * *`, `@daily`). Give either this or `parents`.",
    )
    parents: list[str] = Field(
        default_factory=list,
        description="Run after every one of these tasks succeeded (instead of a schedule).",
    )
    command: list[str] | None = Field(
        None, min_length=1, description="The program and its arguments (argv, no shell)."
    )
    collector: str | None = Field(
        None,
        description="A Python collector `module:function` returning or yielding envelope "
        "dicts; its records go onto the bus with the task's id as their origin.",
    )
    collector_args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the collector function."
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the run."
    )
    working_dir: str | None = Field(None, description="Directory to run in (default: current).")
    timeout_s: float | None = Field(
        3600.0, gt=0, description="Kill a run that takes longer (null: no limit)."
    )
    retries: int = Field(0, ge=0, description="Attempts after a failed one, for the same slot.")
    retry_initial_s: float = Field(1.0, ge=0, description="Pause before the first retry.")
    retry_max_s: float = Field(300.0, ge=0, description="Longest pause between retries.")
    allow_overlap: bool = Field(
        False, description="Start a slot even while the previous run is still going."
    )
    misfire: Literal["run_once", "skip"] = Field(
        "run_once",
        description="Slots missed while no scheduler ran: run_once runs the latest one as "
        "soon as possible; skip waits for the next slot.",
    )
    misfire_grace_s: float = Field(
        60.0, ge=0, description="A slot started later than this counts as missed."
    )
    enabled: bool = Field(True, description="false: keep the definition but never run it.")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_zone(value)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                parse_schedule(value, info.data.get("time_zone"))
            except ScheduleError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("collector")
    @classmethod
    def _collector(cls, value: str | None) -> str | None:
        if value is not None and not _COLLECTOR.match(value):
            raise ValueError(f"expected module:function, got {value!r}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> TaskConfig:
        if (self.command is None) == (self.collector is None):
            raise ValueError("give exactly one of `command` and `collector`")
        if (self.schedule is None) == (not self.parents):
            raise ValueError("give exactly one of `schedule` and `parents`")
        return self


class HttpCheck(_Model):
    """Healthy when a GET answers with a status in 200-399."""

    url: str = Field(description="The URL to GET.")


class DataCheck(_Model):
    """Healthy while the service's records keep arriving on the bus."""

    topics: list[str] = Field(default_factory=list, description="Bus topics the service writes to.")
    max_silence_s: float | None = Field(
        None, gt=0, description="Unhealthy when none of `topics` grew for this long."
    )
    consumer_group: str | None = Field(
        None, description="A consumer group (e.g. `sink.archive`) whose lag is watched."
    )
    max_lag_records: int | None = Field(
        None, ge=0, description="Unhealthy when the group's lag is above this."
    )

    @model_validator(mode="after")
    def _something(self) -> DataCheck:
        if self.max_silence_s is None and self.max_lag_records is None:
            raise ValueError("give max_silence_s (with topics) or max_lag_records")
        if self.max_silence_s is not None and not self.topics:
            raise ValueError("max_silence_s needs `topics`")
        if self.max_lag_records is not None and self.consumer_group is None:
            raise ValueError("max_lag_records needs `consumer_group`")
        return self


class HealthConfig(_Model):
    """How a service's health is checked; any failing check counts as a failure."""

    http: HttpCheck | None = Field(None, description="An HTTP check.")
    command: list[str] | None = Field(
        None, min_length=1, description="A command that exits 0 when the service is healthy."
    )
    data: DataCheck | None = Field(None, description="A data liveness check on the bus.")
    interval_s: float = Field(10.0, gt=0, description="Pause between checks.")
    timeout_s: float = Field(5.0, gt=0, description="A check taking longer has failed.")
    grace_s: float = Field(30.0, ge=0, description="No checks this long after a (re)start.")
    unhealthy_after: int = Field(
        3, ge=1, description="Consecutive failed checks before the service is restarted."
    )


class ServiceConfig(_Model):
    """A long-running command kept alive: restarted when it exits or turns unhealthy."""

    command: list[str] = Field(min_length=1, description="The program and its arguments.")
    environment: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables."
    )
    working_dir: str | None = Field(None, description="Directory to run in.")
    health: HealthConfig | None = Field(None, description="Health checks (none: exit only).")
    restart_initial_s: float = Field(0.2, ge=0, description="Pause before the first restart.")
    restart_max_s: float = Field(
        60.0, ge=0, description="Restart pauses double up to this cap (never an hour)."
    )
    healthy_reset_s: float = Field(
        60.0, ge=0, description="Running healthy this long resets the restart pause."
    )
    max_failures: int = Field(
        5, ge=1, description="This many exits within failure_window_s mark the service failed."
    )
    failure_window_s: float = Field(600.0, gt=0, description="Window for max_failures.")
    stop_timeout_s: float = Field(10.0, ge=0, description="SIGTERM, then SIGKILL after this.")
    enabled: bool = Field(True, description="false: keep the definition but do not run it.")


class HaSettings(_Model):
    """Leader election: PostgreSQL lease with fencing tokens, else a file lock."""

    postgres_url: str | None = Field(
        None,
        description="libpq connection string or URL without password "
        "(null: one machine, file lock).",
    )
    postgres_password: Secret | None = Field(
        None, description="Password for postgres_url, from ${env:...} or ${file:...}."
    )
    table_prefix: str = Field(
        "gridwatch_scheduler",
        pattern=r"^[a-z_][a-z0-9_]{0,40}$",
        description="Prefix of the PostgreSQL tables (lease, slots, anchors).",
    )
    group: str = Field(
        "default", description="Schedulers sharing a group elect one leader between them."
    )
    lease_s: float = Field(10.0, gt=0, description="A leader that does not renew loses it.")
    renew_every_s: float | None = Field(
        None, gt=0, description="Renew (and try to acquire) this often (default: lease_s / 3)."
    )
    lock_dir: str | None = Field(
        None,
        description="Without PostgreSQL: directory of the lock file and slot ledger shared "
        "by schedulers on this machine (default: the data dir).",
    )

    @property
    def renew_interval_s(self) -> float:
        """How often the lease is renewed."""
        return self.renew_every_s or self.lease_s / 3


class DigestSettings(_Model):
    """The daily e-mail of tasks that failed or flapped in the last 24 hours."""

    smtp_host: str = Field(description="SMTP server host.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port.")
    security: Literal["none", "starttls", "tls"] = Field(
        "none", description="Plain SMTP, STARTTLS upgrade, or TLS from the start."
    )
    username: str | None = Field(None, description="SMTP login (null: no login).")
    password: Secret | None = Field(None, description="SMTP password, from a reference.")
    sender: str = Field(description="From: address.")
    recipients: list[str] = Field(min_length=1, description="To: addresses.")
    cron: str = Field("0 7 * * *", description="When to send (cron, in time_zone).")
    time_zone: str = Field("UTC", description="IANA time zone of `cron`.")
    subject: str = Field("gridwatch scheduler digest", description="Subject line prefix.")
    flap_restarts: int = Field(
        3, ge=1, description="A service restarted this often in 24 h has flapped."
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            parse_schedule(value, "UTC")
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value


class ReportSettings(_Model):
    """Notifications: a webhook per failure and a daily digest by e-mail."""

    webhook_url: str | None = Field(
        None, description="POST a JSON notification here for every failure."
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Webhook request timeout.")
    digest: DigestSettings | None = Field(None, description="The daily e-mail digest.")


class ScheduleSettings(_Model):
    """Batch tasks and supervised services, run by the elected leader."""

    tasks: dict[str, TaskConfig] = Field(default_factory=dict, description="Batch tasks by id.")
    services: dict[str, ServiceConfig] = Field(
        default_factory=dict, description="Long-running services by id."
    )
    ha: HaSettings = Field(default_factory=HaSettings, description="Leader election.")
    reports: ReportSettings = Field(default_factory=ReportSettings, description="Reports.")
    output_max_bytes: int = Field(
        65536, ge=0, description="Keep at most this much of each run's output (its tail)."
    )
    keep_runs_days: float = Field(30.0, gt=0, description="Delete run records older than this.")

    def reference_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Mistakes between entries: shared ids, unknown parents, dependency cycles."""
        problems: list[tuple[tuple[str, ...], str]] = []
        for both in sorted(set(self.tasks) & set(self.services)):
            problems.append((("services", both), "a task has the same id"))
        known = listing(self.tasks)
        for task_id, task in self.tasks.items():
            for parent in task.parents:
                if parent not in self.tasks:
                    message = f"unknown task {shorten(parent)!r} (known: {known})"
                    problems.append((("tasks", task_id, "parents"), message))
        cycle = _parent_cycle(self.tasks)
        if cycle:
            first, text = cycle
            problems.append((("tasks", first, "parents"), f"dependency cycle: {text}"))
        return problems

    def collector_ids(self) -> set[str]:
        """Tasks whose records go onto the bus (valid sink and job inputs)."""
        return {tid for tid, task in self.tasks.items() if task.collector is not None}


def _parent_cycle(tasks: dict[str, TaskConfig]) -> tuple[str, str] | None:
    """The first dependency cycle: the task it closes on, and the cycle as text."""
    upstream = {task_id: task.parents for task_id, task in tasks.items()}
    for _, first, cycle in closing_edges(upstream, " -> "):
        return first, cycle
    return None
