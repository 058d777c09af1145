"""The ``set_fields`` transform.

Flume's static interceptor: static envelope and payload values on every record.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.components import Transform, TransformConfig
from gridwatch.record import NAME_PATTERN, Record, TypePrefix
from gridwatch.transforms.fields import copy_data, has_path, set_path


class EnvelopeValues(BaseModel):
    """Static envelope values; unset ones are left alone."""

    model_config = ConfigDict(extra="forbid")

    producer: str | None = Field(None, pattern=NAME_PATTERN, description="Dataset name.")
    type: str | None = Field(None, pattern=NAME_PATTERN, description="Dataset type.")
    type_prefix: TypePrefix | None = Field(None, description="raw, enr or agg.")
    version: str | None = Field(None, description="Schema version (selects the search index).")
    host: str | None = Field(None, description="The host the data is about or came from.")


class SetFieldsConfig(TransformConfig):
    """Settings of the ``set_fields`` transform (Flume's static interceptor)."""

    envelope: EnvelopeValues = Field(
        default_factory=EnvelopeValues, description="Envelope fields to set."
    )
    data: dict[str, Any] = Field(
        default_factory=dict, description="Payload fields to set (dotted paths allowed)."
    )
    preserve_existing: bool = Field(
        False,
        description="Keep a payload value or an envelope host/version that the record already "
        "has (producer, type and type_prefix are always set).",
    )


class SetFields(Transform):
    """Sets static envelope and payload values on every record."""

    Config = SetFieldsConfig
    config: SetFieldsConfig

    def process(self, records: list[Record]) -> list[Record]:
        cfg = self.config
        always = {
            k: v
            for k, v in cfg.envelope.model_dump(include={"producer", "type", "type_prefix"}).items()
            if v is not None
        }
        optional = {
            k: v for k, v in cfg.envelope.model_dump(include={"version", "host"}).items() if v
        }
        out: list[Record] = []
        for record in records:
            changes = dict(always)
            for key, value in optional.items():
                if not (cfg.preserve_existing and getattr(record, key) is not None):
                    changes[key] = value
            if cfg.data:
                data = copy_data(record.data)
                for path, value in cfg.data.items():
                    if not (cfg.preserve_existing and has_path(data, path)):
                        set_path(data, path, value)
                changes["data"] = data
            out.append(msgspec.structs.replace(record, **changes))
        return out
