"""How deeply decoded JSON nests objects and arrays, found without unbounded recursion."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DEFAULT_MAX_DEPTH = 64
"""Levels of objects and arrays that a record's ``data`` may nest, counting ``data`` itself."""

Scalar = None | bool | int | float | str
"""A JSON value that is neither an object nor an array."""
_SCALARS = frozenset({str, int, float, bool, type(None)})


def bounded_value(levels: int) -> Any:
    """The type of a JSON value holding at most ``levels`` levels of objects and arrays, for
    msgspec to decode (and bound) in C. It doubles in size with every level: keep it small."""
    value: Any = Scalar
    for _ in range(levels):
        value = Scalar | dict[str, value] | list[value]
    return value


def nests_deeper_than(value: dict[str, Any] | list[Any] | tuple[Any, ...], levels: int) -> bool:
    """Whether ``value`` (an object or array, level 1) holds more than ``levels`` levels.

    The walk goes no further than ``levels`` down, however deep the value is:
    ``{"a": {}}`` has 2 levels, ``{"a": 1}`` and ``[]`` have 1.
    """
    if levels < 1:
        return True
    items: Iterable[Any] = value.values() if type(value) is dict else value
    if _SCALARS.issuperset(map(type, items)):  # one pass in C for the common flat case
        return False
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list or kind is tuple) and (
            levels == 1 or nests_deeper_than(item, levels - 1)
        ):
            return True
    return False
