"""The ``stamp_time`` transform.

Flume's timestamp interceptor: the time a record was received, in its payload.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from pydantic import Field

from gridwatch.components import Transform, TransformConfig
from gridwatch.record import Record
from gridwatch.transforms.fields import copy_data, set_path


class StampTimeConfig(TransformConfig):
    """Settings of the ``stamp_time`` transform (Flume's timestamp interceptor)."""

    field: str = Field(
        "received_ms", min_length=1, description="Payload field that receives the time."
    )
    unit: Literal["ms", "s"] = Field("ms", description="Epoch milliseconds or seconds (float).")


class StampTime(Transform):
    """Stamps the time the record went through (wall clock, UTC epoch) into a payload field."""

    Config = StampTimeConfig
    config: StampTimeConfig

    def process(self, records: list[Record]) -> list[Record]:
        now = self.context.clock.time()
        stamp: float | int = round(now * 1000) if self.config.unit == "ms" else now
        out: list[Record] = []
        for record in records:
            data = copy_data(record.data)
            set_path(data, self.config.field, stamp)
            out.append(msgspec.structs.replace(record, data=data))
        return out
