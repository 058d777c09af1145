"""Dotted paths into payload objects (``job.site``), shared by the field transforms.

Transforms never change the records they are given (sibling transforms may be handed the same
batch): they copy what they change with :func:`copy_data`.
"""

from __future__ import annotations

from typing import Any


def copy_data(data: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that changing nested objects never touches the original."""
    return {k: copy_data(v) if isinstance(v, dict) else v for k, v in data.items()}


def has_path(data: dict[str, Any], path: str) -> bool:
    """Whether ``path`` names a value in ``data``."""
    *parents, leaf = path.split(".")
    node: Any = data
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    return isinstance(node, dict) and leaf in node


def get_path(data: dict[str, Any], path: str, default: Any = None) -> Any:
    """The value at ``path``, or ``default`` when there is none."""
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at ``path``, creating the objects on the way."""
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def pop_path(data: dict[str, Any], path: str) -> Any:
    """Remove and return the value at ``path`` (which must exist)."""
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    return node.pop(leaf)
