"""Configuration problems, collected so that all of them are reported at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridwatch.errors import ConfigurationError

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``("sinks", "out", "inputs", 0)`` as ``sinks.out.inputs[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@dataclass(frozen=True)
class Problem:
    """One mistake in the pipeline file: where it is and what is wrong."""

    path: Path
    message: str
    line: int | None = None

    def render(self, filename: str) -> str:
        """``file.yaml:12: sinks.out.inputs[0]: unknown input 'x'``."""
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {format_path(self.path)}: {self.message}"


class ConfigProblems(ConfigurationError):
    """Every problem found in a pipeline file."""

    def __init__(self, filename: str, problems: Sequence[Problem]) -> None:
        self.filename = filename
        self.problems = sorted(problems, key=lambda p: (p.line or 0, format_path(p.path)))
        count = len(self.problems)
        lines = [p.render(filename) for p in self.problems]
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in {filename}:\n" + "\n".join(lines)
        )
