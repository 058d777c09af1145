"""How deeply decoded JSON nests objects and arrays, found without unbounded recursion."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

DEFAULT_MAX_DEPTH = 64
"""Levels of objects and arrays that a record's ``data`` may nest, counting ``data`` itself."""

_SCALARS = frozenset({str, int, float, bool, type(None)})


def nests_deeper_than(value: dict[str, Any] | list[Any] | tuple[Any, ...], levels: int) -> bool:
    """Whether ``value`` (an object or array, level 1) holds more than ``levels`` levels.

    The walk goes no further than ``levels`` down, however deep the value is:
    ``{"a": {}}`` has 2 levels, ``{"a": 1}`` and ``[]`` have 1.
    """
    if levels < 1:
        return True
    items: Iterable[Any] = value.values() if type(value) is dict else value
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list or kind is tuple) and (
            levels == 1 or nests_deeper_than(item, levels - 1)
        ):
            return True
    return False


def all_flat(objects: Iterable[dict[str, Any]]) -> bool:
    """Whether no value of any of these objects is a container (one pass in C: the common
    case of flat payloads costs no walk at all)."""
    return _SCALARS.issuperset(map(type, chain.from_iterable(map(dict.values, objects))))
