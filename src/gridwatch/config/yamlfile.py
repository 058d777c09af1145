"""YAML loading that remembers the line of every value, and rejects duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml

from gridwatch.config.problems import Path, Problem


class LocatedYaml:
    """A parsed YAML document and the 1-based line of each value, by path."""

    def __init__(self, value: Any, lines: dict[Path, int]) -> None:
        self.value = value
        self.lines = lines

    def line(self, path: Path) -> int | None:
        """The line of the value at ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def load_yaml(text: str, problems: list[Problem]) -> LocatedYaml:
    """Parse one YAML document; syntax errors and duplicate keys become problems."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Path, int] = {}
        value = None if node is None else _build(loader, node, (), lines, problems)
        return LocatedYaml(value, lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problems.append(Problem((), f"invalid YAML: {exc}", line))
        return LocatedYaml(None, {})
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Path,
    lines: dict[Path, int],
    problems: list[Problem],
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in result:
                problems.append(
                    Problem((*path, str(key)), "duplicate key", key_node.start_mark.line + 1)
                )
                continue
            child = (*path, str(key))
            result[key] = _build(loader, value_node, child, lines, problems)
            lines[child] = key_node.start_mark.line + 1  # point at the key, not its value
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, index), lines, problems)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
