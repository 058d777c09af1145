"""What the API reads from the running pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gridwatch.bus.base import Bus
    from gridwatch.components import Component
    from gridwatch.config.pipeline import Pipeline
    from gridwatch.metrics import Metrics
    from gridwatch.scheduler.core import Scheduler


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did: the entries it changed, or the problems that refused it."""

    applied: bool
    components: list[str] = field(default_factory=list)
    """Components started, stopped or restarted."""
    schedule: list[str] = field(default_factory=list)
    """Tasks and services added, removed or changed."""
    restart_needed: list[str] = field(default_factory=list)
    """Options that changed but apply only after a restart."""
    problems: list[str] = field(default_factory=list)
    """Why the file was refused, one line each."""

    def as_json(self) -> dict[str, Any]:
        """The answer of ``POST /api/v1/reload``."""
        if not self.applied:
            return {"applied": False, "problems": self.problems}
        return {
            "applied": True,
            "components": self.components,
            "schedule": self.schedule,
            "restart_needed": self.restart_needed,
        }


class RunningPipeline(Protocol):
    """The runtime, as the API sees it (the components are looked up at each request, so a
    reload is served at once)."""

    pipeline: Pipeline
    metrics: Metrics
    scheduler: Scheduler

    @property
    def bus(self) -> Bus:
        """The running pipeline's bus."""
        ...

    @property
    def components(self) -> dict[str, Component]:
        """The running components by id."""
        ...

    @property
    def status(self) -> dict[str, str]:
        """Each component's state."""
        ...

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers."""
        ...

    def lags(self) -> dict[str, float]:
        """Records not yet committed per consumer group."""
        ...

    async def reload(self) -> ReloadOutcome:
        """Apply the pipeline file as it is now (nothing changes when it has problems)."""
        ...
