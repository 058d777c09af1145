"""Module status in the EventIndex style: rules over a module's latest values.

A module is ``available`` (green), ``degraded`` (yellow), ``unavailable`` (red) or ``N/A``
(white: no data yet, or not expected to have any). Each rule looks at one field of the latest
values (thresholds above or below, or listed values); freshness rules look at the age of the
newest record. The worst outcome wins, and every rule that fired gives a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StatusName = Literal["available", "degraded", "unavailable", "N/A"]
STATUS_CODES: dict[str, int] = {"N/A": -1, "available": 0, "degraded": 1, "unavailable": 2}
COLOURS: dict[str, str] = {
    "N/A": "white",
    "available": "green",
    "degraded": "yellow",
    "unavailable": "red",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Check(_Model):
    """A threshold rule on one field of the module's latest values."""

    field: str = Field(description="The payload field to check.")
    degraded_above: float | None = Field(None, description="Degraded when the value is above.")
    unavailable_above: float | None = Field(
        None, description="Unavailable when the value is above."
    )
    degraded_below: float | None = Field(None, description="Degraded when the value is below.")
    unavailable_below: float | None = Field(
        None, description="Unavailable when the value is below."
    )
    degraded_values: list[Any] = Field(
        default_factory=list, description="Degraded when the value is one of these."
    )
    unavailable_values: list[Any] = Field(
        default_factory=list, description="Unavailable when the value is one of these."
    )
    when_missing: Literal["ignore", "degraded", "unavailable"] = Field(
        "degraded", description="What it means when the latest values lack this field."
    )


class ModuleRule(_Model):
    """How one module's status is computed."""

    title: str | None = Field(None, description="Display name (default: the module id).")
    producer: str | None = Field(
        None, description="Only records of this producer belong to the module (null: any)."
    )
    type: str | None = Field(
        None, description="Only records of this type belong to the module (default: its id)."
    )
    match: dict[str, str] = Field(
        default_factory=dict,
        description="Payload values that the module's records must have (e.g. module: hadoop).",
    )
    expected: bool = Field(True, description="False: no data is expected; always N/A.")
    degraded_after_s: float | None = Field(
        None, gt=0, description="Degraded when the newest record is older than this."
    )
    unavailable_after_s: float | None = Field(
        None, gt=0, description="Unavailable when the newest record is older than this."
    )
    checks: list[Check] = Field(default_factory=list, description="Rules on critical values.")


@dataclass
class Latest:
    """A module's latest value of each field and the time of its newest record."""

    values: dict[str, Any] = field(default_factory=dict)
    timestamp_ms: int = 0

    def update(self, data: dict[str, Any], timestamp_ms: int) -> None:
        """Take a record's values unless it is older than what is known."""
        if timestamp_ms < self.timestamp_ms:
            return
        self.values.update(data)
        self.timestamp_ms = timestamp_ms


@dataclass(frozen=True)
class Status:
    """A module's evaluated status."""

    status: StatusName
    reasons: tuple[str, ...]

    @property
    def code(self) -> int:
        """-1 N/A, 0 available, 1 degraded, 2 unavailable: higher is worse."""
        return STATUS_CODES[self.status]

    @property
    def colour(self) -> str:
        """The EventIndex colour of the status."""
        return COLOURS[self.status]


def evaluate(rule: ModuleRule, latest: Latest | None, now_ms: int) -> Status:
    """The status of a module given its latest values at ``now_ms``."""
    if not rule.expected:
        return Status("N/A", ("not monitored",))
    if latest is None or latest.timestamp_ms == 0:
        return Status("N/A", ("no data yet",))
    outcomes: list[tuple[int, str]] = []
    age_s = max(0.0, (now_ms - latest.timestamp_ms) / 1000)
    if rule.unavailable_after_s is not None and age_s > rule.unavailable_after_s:
        outcomes.append((2, f"no data for {age_s:.0f} s (limit {rule.unavailable_after_s:g} s)"))
    elif rule.degraded_after_s is not None and age_s > rule.degraded_after_s:
        outcomes.append((1, f"no data for {age_s:.0f} s (limit {rule.degraded_after_s:g} s)"))
    for check in rule.checks:
        outcome = _check(check, latest.values)
        if outcome is not None:
            outcomes.append(outcome)
    if not outcomes:
        return Status("available", ())
    worst = max(level for level, _ in outcomes)
    reasons = tuple(reason for level, reason in sorted(outcomes, key=lambda o: -o[0]))
    return Status("unavailable" if worst == 2 else "degraded", reasons)


def _check(check: Check, values: dict[str, Any]) -> tuple[int, str] | None:
    name = check.field
    if name not in values or values[name] is None:
        levels = {"ignore": 0, "degraded": 1, "unavailable": 2}
        level = levels[check.when_missing]
        return (level, f"{name}: no value") if level else None
    value = values[name]
    if value in check.unavailable_values:
        return 2, f"{name} is {value!r}"
    if value in check.degraded_values:
        return 1, f"{name} is {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    limits = (
        (2, check.unavailable_above, ">"),
        (2, check.unavailable_below, "<"),
        (1, check.degraded_above, ">"),
        (1, check.degraded_below, "<"),
    )
    for level, limit, sign in limits:
        if limit is None:
            continue
        if (sign == ">" and value > limit) or (sign == "<" and value < limit):
            return level, f"{name} = {value:g} {sign} {limit:g}"
    return None
