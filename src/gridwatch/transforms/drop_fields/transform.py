"""The ``drop_fields`` transform.

Removes payload fields (dotted paths reach into nested objects).
"""

from __future__ import annotations

import msgspec
from pydantic import Field

from gridwatch.components import Transform, TransformConfig
from gridwatch.record import Record
from gridwatch.transforms.fields import copy_data, has_path, pop_path


class DropFieldsConfig(TransformConfig):
    """Settings of the ``drop_fields`` transform."""

    fields: list[str] = Field(
        min_length=1, description="Payload fields to remove (dotted paths allowed)."
    )


class DropFields(Transform):
    """Removes payload fields (e.g. bulky or private ones) before records reach the bus."""

    Config = DropFieldsConfig
    config: DropFieldsConfig

    def process(self, records: list[Record]) -> list[Record]:
        out: list[Record] = []
        for record in records:
            if not any(has_path(record.data, path) for path in self.config.fields):
                out.append(record)
                continue
            data = copy_data(record.data)
            for path in self.config.fields:
                if has_path(data, path):
                    pop_path(data, path)
            out.append(msgspec.structs.replace(record, data=data))
        return out
