"""What the API reads from the running pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gridwatch.bus.base import Bus
    from gridwatch.components import Component
    from gridwatch.config.pipeline import Pipeline
    from gridwatch.metrics import Metrics
    from gridwatch.scheduler.core import Scheduler


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
