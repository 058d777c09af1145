"""Self-telemetry: counters per component and gauges, rendered in Prometheus text format."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

COUNTERS = ("received", "sent", "errors", "dropped")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters keyed by (name, component) plus gauges computed when scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = defaultdict(float)
        self._kinds: dict[str, str] = {}
        self._gauges: dict[str, tuple[str, str, Callable[[], dict[str, float]]]] = {}

    def declare(self, component: str, kind: str) -> None:
        """Make a component's standard counters appear at zero before anything happens."""
        with self._lock:
            self._kinds[component] = kind
            for name in COUNTERS:
                self._counters[(name, component)] += 0

    def inc(self, component: str, name: str, amount: float = 1) -> None:
        """Add to ``gridwatch_{name}_total{component=...}``."""
        with self._lock:
            self._counters[(name, component)] += amount

    def value(self, component: str, name: str) -> float:
        """A counter's current value (0 when never touched)."""
        with self._lock:
            return self._counters.get((name, component), 0.0)

    def gauge(
        self, name: str, help_text: str, label: str, read: Callable[[], dict[str, float]]
    ) -> None:
        """Register a gauge family whose values (label value → number) are read on scrape."""
        self._gauges[name] = (help_text, label, read)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Counters by component, for the pipeline page and health answers."""
        with self._lock:
            out: dict[str, dict[str, float]] = defaultdict(dict)
            for (name, component), value in self._counters.items():
                out[component][name] = value
            return dict(out)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format."""
        lines: list[str] = []
        with self._lock:
            by_name: dict[str, list[tuple[str, float]]] = defaultdict(list)
            for (name, component), value in sorted(self._counters.items()):
                by_name[name].append((component, value))
            kinds = dict(self._kinds)
        for name, values in by_name.items():
            metric = f"gridwatch_{name}_total"
            lines.append(f"# HELP {metric} Records {name} per component.")
            lines.append(f"# TYPE {metric} counter")
            for component, value in values:
                kind = _escape(kinds.get(component, "other"))
                lines.append(
                    f'{metric}{{component="{_escape(component)}",kind="{kind}"}} {value:g}'
                )
        for name, (help_text, label, read) in sorted(self._gauges.items()):
            lines.append(f"# HELP gridwatch_{name} {help_text}")
            lines.append(f"# TYPE gridwatch_{name} gauge")
            for key, value in sorted(read().items()):
                lines.append(f'gridwatch_{name}{{{label}="{_escape(key)}"}} {value:g}')
        return "\n".join(lines) + "\n"
