"""The ``filter`` transform: keep (or drop) records by producer, type and payload values.

Seed 000 §4.2.4: not every input goes to every output. A filter between a source and the sinks
that should see only part of it says which part, by the envelope (shell patterns on producer and
type) and by payload values (dotted paths, each equal to one of the values given).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gridwatch.components.base import Transform, TransformConfig, matches_any
from gridwatch.record import Record
from gridwatch.transforms.fields import get_path


class FilterConfig(TransformConfig):
    """Settings of the ``filter`` transform. Every condition given must hold."""

    producers: list[str] = Field(
        default_factory=list,
        description="Producer name patterns (shell style: `panda*`); empty: any producer.",
    )
    types: list[str] = Field(
        default_factory=list, description="Type name patterns; empty: any type."
    )
    type_prefixes: list[str] = Field(
        default_factory=list, description="raw, enr or agg; empty: any."
    )
    fields: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Payload fields (dotted paths) and the values each may have, e.g. "
        "`{cloud: [CERN, DE]}`; a record without the field does not match.",
    )
    exclude: bool = Field(
        False, description="Drop the records that match and keep the rest, instead."
    )


class Filter(Transform):
    """Passes on the records that match its conditions (or, with ``exclude``, the others)."""

    Config = FilterConfig
    config: FilterConfig

    def process(self, records: list[Record]) -> list[Record]:
        kept = [r for r in records if self.matches(r) != self.config.exclude]
        self.context.metrics.inc(self.id, "filtered", len(records) - len(kept))
        return kept

    def matches(self, record: Record) -> bool:
        """Whether every condition holds for ``record``."""
        cfg = self.config
        return (
            matches_any(record.producer, cfg.producers)
            and matches_any(record.type, cfg.types)
            and (not cfg.type_prefixes or record.type_prefix in cfg.type_prefixes)
            and all(_found(record.data, path, allowed) for path, allowed in cfg.fields.items())
        )


_MISSING = object()


def _found(data: dict[str, Any], path: str, allowed: list[Any]) -> bool:
    value = get_path(data, path, _MISSING)
    return value is not _MISSING and value in allowed
