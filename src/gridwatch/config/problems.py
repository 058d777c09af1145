"""Configuration problems, collected so that all of them are reported at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gridwatch.config.limits import MAX_LISTED, MAX_REPORTED, MAX_SHOWN_CHARS
from gridwatch.errors import ConfigurationError

Path = tuple[str | int, ...]


def shorten(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis: for quoting the file in messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listing(names: Iterable[str]) -> str:
    """Sorted names for a message, ``a, b, c``; past :data:`MAX_LISTED` the count follows."""
    ordered = sorted(names)
    if not ordered:
        return "none"
    if len(ordered) <= MAX_LISTED:
        return ", ".join(ordered)
    return ", ".join(ordered[:MAX_LISTED]) + f", ... ({len(ordered)} in all)"


def format_path(path: Path) -> str:
    """``("sinks", "out", "inputs", 0)`` as ``sinks.out.inputs[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{shorten(part)}" if text else shorten(part)
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
    """Every problem found in a pipeline file; the message shows the first ones by line."""

    def __init__(self, filename: str, problems: Sequence[Problem]) -> None:
        self.filename = filename
        # By line, then in the order found (a stable sort): cheap however long the paths are.
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        count = len(self.problems)
        lines = [p.render(filename) for p in self.problems[:MAX_REPORTED]]
        if count > MAX_REPORTED:
            lines.append(f"... and {count - MAX_REPORTED} more problems")
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in {filename}:\n" + "\n".join(lines)
        )
