"""Every component type. A built-in component's ``type:`` is the name of its folder,
``src/gridwatch/<section>/<type>/``, whose package exports the class as ``COMPONENT``;
components from elsewhere (plugins, tests) are added with :func:`register`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from gridwatch.components.base import KINDS, SECTIONS, Component, Kind

BUILTINS: dict[Kind, tuple[str, ...]] = {
    "source": ("eventindex_simulator", "generator", "http", "sql_incremental"),
    "transform": (
        "dedup",
        "drop_fields",
        "filter",
        "rename_fields",
        "set_fields",
        "stamp_host",
        "stamp_time",
    ),
    "sink": ("influxdb", "jsonl", "parquet_archive", "timeseries"),
    "job": ("accounting", "aggregate", "enrich", "module_status", "rollup"),
}


def package_of(kind: Kind, type_name: str) -> str:
    """The package that holds a component type."""
    return f"gridwatch.{SECTIONS[kind]}.{type_name}"


T = TypeVar("T", bound=type[Component])
_ADDED: dict[Kind, dict[str, type[Component]]] = {kind: {} for kind in KINDS}


def register(type_name: str) -> Callable[[T], T]:
    """Class decorator: make a component from outside gridwatch available as ``type_name``."""

    def add(cls: T) -> T:
        cls.type_name = type_name
        _ADDED[cls.kind][type_name] = cls
        return cls

    return add


def component_types() -> dict[Kind, dict[str, type[Component]]]:
    """Each kind's component classes by type name: the built-in ones and those registered."""
    found = _builtins()
    return {kind: {**found[kind], **_ADDED[kind]} for kind in KINDS}


@cache
def _builtins() -> dict[Kind, dict[str, type[Component]]]:
    registry: dict[Kind, dict[str, type[Component]]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for type_name in BUILTINS[kind]:
            cls: type[Component] = importlib.import_module(package_of(kind, type_name)).COMPONENT
            cls.type_name = type_name
            registry[kind][type_name] = cls
    return registry
