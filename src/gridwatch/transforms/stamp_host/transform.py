"""The ``stamp_host`` transform.

Flume's host interceptor: the receiving host, in the envelope or the payload.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import Field

from gridwatch.components import Transform, TransformConfig
from gridwatch.record import Record
from gridwatch.transforms.fields import copy_data, set_path


class StampHostConfig(TransformConfig):
    """Settings of the ``stamp_host`` transform (Flume's host interceptor)."""

    host: str | None = Field(None, description="The name to stamp (default: this machine's).")
    preserve_existing: bool = Field(True, description="Keep a host that the record already has.")
    field: str | None = Field(
        None, description="Also stamp it into this payload field (e.g. `collector_host`)."
    )


class StampHost(Transform):
    """Sets the envelope's ``host`` to the machine that runs the pipeline."""

    Config = StampHostConfig
    config: StampHostConfig

    def process(self, records: list[Record]) -> list[Record]:
        cfg = self.config
        host = cfg.host or self.context.host
        out: list[Record] = []
        for record in records:
            changes: dict[str, Any] = {}
            if record.host is None or not cfg.preserve_existing:
                changes["host"] = host
            if cfg.field:
                data = copy_data(record.data)
                set_path(data, cfg.field, host)
                changes["data"] = data
            out.append(msgspec.structs.replace(record, **changes) if changes else record)
        return out
