"""How long loading hostile pipeline files takes, and the most memory it takes.

Baseline in the same run: the largest example pipeline, loaded the same way. Each hostile file
must end in problems well within a second or two (see gridwatch.config.limits).

    .venv/bin/python -m benchmarks.pipeline_loader_limits
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from benchmarks._machine import describe
from gridwatch.components.registry import component_types
from gridwatch.config.limits import MAX_DEPTH, MAX_NODES
from gridwatch.config.pipeline import Pipeline, parse_pipeline
from gridwatch.config.problems import ConfigProblems

ROOT = Path(__file__).resolve().parents[1]


def alias_bomb() -> str:
    lines = ["sources:", "  l0: &l0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    lines = ["sources:", "  l0: &l0 {k0: a, k1: b, k2: c}"]
    lines += [f"  l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}, *l{i - 1}]}}" for i in range(1, 30)]
    return "\n".join(lines) + "\n"


def many_components() -> str:
    """Just under the value limit, and valid YAML: the components and the graph are checked."""
    count = MAX_NODES // 10  # nine values each
    sinks = "".join(
        f"  s{i}: {{type: jsonl, inputs: [s{i - 1}], directory: x}}\n" for i in range(count)
    )
    return "sources:\n  gen: {type: generator}\nsinks:\n" + sinks


def files() -> dict[str, str]:
    example = max(ROOT.glob("examples/*.yaml"), key=lambda p: p.stat().st_size)
    return {
        f"baseline: {example.name}": example.read_text(),
        "alias bomb (9^9 strings)": alias_bomb(),
        "merge bomb (3^30 keys)": merge_bomb(),
        "self-referring alias": "sources: &a {x: *a}\n",
        "100,000 nested [": "sources: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "100,000 nested {a:": "sources: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
        f"{MAX_DEPTH} levels, under the limit": "sources: " + "[" * 60 + "]" * 60 + "\n",
        f"{MAX_NODES + 1} values": "sources: [" + "1, " * (MAX_NODES + 1) + "]\n",
        f"{MAX_NODES // 10} chained sinks": many_components(),
        "base-60 number, 5,000 parts": "bus: {retention_hours: 1" + ":1" * 5000 + "}\n",
        "99,000 unknown tags": "sources: [" + "!x 1, " * 99_000 + "]\n",
        "250,000 unset ${env:...}": "bus: {retention_hours: '" + "${env:GW_NO}" * 250_000 + "'}\n",
    }


def measure(action: Callable[[], object]) -> tuple[float, float, str]:
    """Seconds, then peak MiB (a second run, under tracemalloc), and the outcome."""
    start = time.perf_counter()
    outcome = _outcome(action)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    _outcome(action)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, outcome


def _outcome(action: Callable[[], object]) -> str:
    try:
        result = action()
    except ConfigProblems as exc:
        return f"{len(exc.problems)} problems: {exc.problems[0].message.splitlines()[0][:60]}"
    return f"loaded, {len(result.components)} components" if isinstance(result, Pipeline) else ""


def main() -> None:
    print(describe())
    component_types()
    texts = files()
    parse_pipeline(next(iter(texts.values())), "p.yaml", ROOT)  # builds pydantic's validators
    for name, text in texts.items():
        seconds, peak, outcome = measure(lambda t=text: parse_pipeline(t, "p.yaml", ROOT))
        print(f"{name:32} {seconds:6.3f} s {peak:7.1f} MiB  {outcome}")


if __name__ == "__main__":
    main()
