"""The Flume interceptors of the MONIT pipeline, as transforms.

``set_fields`` (static values), ``stamp_time`` (the receive time), ``stamp_host`` (the host),
``rename_fields`` and ``drop_fields``. Each returns new records and never changes the ones it is
given, because sibling transforms may be handed the same batch. Payload field names may be
dotted paths (``job.site``) to reach into nested objects. A record's ``_id`` is kept as it was
decoded, so replaying the same input yields the same ids.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.components import Transform, TransformConfig, register
from gridwatch.record import NAME_PATTERN, Record, TypePrefix


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

    type: Literal["set_fields"] = "set_fields"
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


@register("set_fields")
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
                data = _copy(record.data)
                for path, value in cfg.data.items():
                    if not (cfg.preserve_existing and _has(data, path)):
                        _set(data, path, value)
                changes["data"] = data
            out.append(msgspec.structs.replace(record, **changes))
        return out


class StampTimeConfig(TransformConfig):
    """Settings of the ``stamp_time`` transform (Flume's timestamp interceptor)."""

    type: Literal["stamp_time"] = "stamp_time"
    field: str = Field(
        "received_ms", min_length=1, description="Payload field that receives the time."
    )
    unit: Literal["ms", "s"] = Field("ms", description="Epoch milliseconds or seconds (float).")


@register("stamp_time")
class StampTime(Transform):
    """Stamps the time the record went through (wall clock, UTC epoch) into a payload field."""

    Config = StampTimeConfig
    config: StampTimeConfig

    def process(self, records: list[Record]) -> list[Record]:
        now = time.time()
        stamp: float | int = round(now * 1000) if self.config.unit == "ms" else now
        out: list[Record] = []
        for record in records:
            data = _copy(record.data)
            _set(data, self.config.field, stamp)
            out.append(msgspec.structs.replace(record, data=data))
        return out


class StampHostConfig(TransformConfig):
    """Settings of the ``stamp_host`` transform (Flume's host interceptor)."""

    type: Literal["stamp_host"] = "stamp_host"
    host: str | None = Field(None, description="The name to stamp (default: this machine's).")
    preserve_existing: bool = Field(True, description="Keep a host that the record already has.")
    field: str | None = Field(
        None, description="Also stamp it into this payload field (e.g. `collector_host`)."
    )


@register("stamp_host")
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
                data = _copy(record.data)
                _set(data, cfg.field, host)
                changes["data"] = data
            out.append(msgspec.structs.replace(record, **changes) if changes else record)
        return out


class RenameFieldsConfig(TransformConfig):
    """Settings of the ``rename_fields`` transform."""

    type: Literal["rename_fields"] = "rename_fields"
    fields: dict[str, str] = Field(
        min_length=1, description="Payload field → new name (dotted paths allowed)."
    )


@register("rename_fields")
class RenameFields(Transform):
    """Renames payload fields; a missing field is skipped, an existing target is replaced."""

    Config = RenameFieldsConfig
    config: RenameFieldsConfig

    def process(self, records: list[Record]) -> list[Record]:
        out: list[Record] = []
        for record in records:
            if not any(_has(record.data, old) for old in self.config.fields):
                out.append(record)
                continue
            data = _copy(record.data)
            for old, new in self.config.fields.items():
                if _has(data, old):
                    _set(data, new, _pop(data, old))
            out.append(msgspec.structs.replace(record, data=data))
        return out


class DropFieldsConfig(TransformConfig):
    """Settings of the ``drop_fields`` transform."""

    type: Literal["drop_fields"] = "drop_fields"
    fields: list[str] = Field(
        min_length=1, description="Payload fields to remove (dotted paths allowed)."
    )


@register("drop_fields")
class DropFields(Transform):
    """Removes payload fields (e.g. bulky or private ones) before records reach the bus."""

    Config = DropFieldsConfig
    config: DropFieldsConfig

    def process(self, records: list[Record]) -> list[Record]:
        out: list[Record] = []
        for record in records:
            if not any(_has(record.data, path) for path in self.config.fields):
                out.append(record)
                continue
            data = _copy(record.data)
            for path in self.config.fields:
                if _has(data, path):
                    _pop(data, path)
            out.append(msgspec.structs.replace(record, data=data))
        return out


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that changing nested objects never touches the original."""
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _has(data: dict[str, Any], path: str) -> bool:
    *parents, leaf = path.split(".")
    node: Any = data
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    return isinstance(node, dict) and leaf in node


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def _pop(data: dict[str, Any], path: str) -> Any:
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    return node.pop(leaf)
