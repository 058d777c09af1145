"""The ``rename_fields`` transform.

Renames payload fields (dotted paths reach into nested objects).
"""

from __future__ import annotations

import msgspec
from pydantic import Field

from gridwatch.components import Transform, TransformConfig
from gridwatch.record import Record
from gridwatch.transforms.fields import copy_data, has_path, pop_path, set_path


class RenameFieldsConfig(TransformConfig):
    """Settings of the ``rename_fields`` transform."""

    fields: dict[str, str] = Field(
        min_length=1, description="Payload field → new name (dotted paths allowed)."
    )


class RenameFields(Transform):
    """Renames payload fields; a missing field is skipped, an existing target is replaced."""

    Config = RenameFieldsConfig
    config: RenameFieldsConfig

    def process(self, records: list[Record]) -> list[Record]:
        out: list[Record] = []
        for record in records:
            if not any(has_path(record.data, old) for old in self.config.fields):
                out.append(record)
                continue
            data = copy_data(record.data)
            for old, new in self.config.fields.items():
                if has_path(data, old):
                    set_path(data, new, pop_path(data, old))
            out.append(msgspec.structs.replace(record, data=data))
        return out
