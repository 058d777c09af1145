"""Envelope lines as Arrow tables for the archive: the exact line plus typed columns.

Every row keeps the envelope line exactly as it was accepted (``envelope``, the lossless
copy), the envelope fields as columns, and the payload as a ``data`` struct whose types are
inferred from the values. Types drift between records; the rules that keep writes from ever
failing on it:

- a batch is parsed by Arrow's multi-threaded JSON reader; when its records disagree about a
  field's type, the batch is built field by field instead, and a payload field whose values
  have no common Arrow type is stored as JSON text (its typed column is a string);
- payload fields that Parquet cannot hold (objects with no fields) are left out of ``data``
  (they stay in ``envelope``);
- between batches, :func:`conform` fits a table to an open file's schema (missing fields become
  nulls, safe casts such as int → double); when it cannot, the file is closed and the next one
  gets the unified schema (see :func:`unify`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from gridwatch.bus.base import joined
from gridwatch.record import Record, decode_one

DAY_MS = 86_400_000
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
_ENVELOPE_FIELDS = [
    pa.field("producer", pa.string()),
    pa.field("type", pa.string()),
    pa.field("type_prefix", pa.string()),
    pa.field("timestamp", pa.int64()),
    pa.field("_id", pa.string()),
    pa.field("host", pa.string()),
    pa.field("version", pa.string()),
    pa.field("idb_tags", pa.list_(pa.string())),
    pa.field("idb_fields", pa.list_(pa.string())),
]
_PARSE = pa_json.ParseOptions(
    explicit_schema=pa.schema(_ENVELOPE_FIELDS), unexpected_field_behavior="infer"
)
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
_json = msgspec.json.Encoder()


class Incompatible(Exception):
    """A table that an open file's schema cannot hold."""


def lines_to_table(lines: Sequence[bytes]) -> tuple[pa.Table, list[tuple[int, str]]]:
    """The archive table of envelope lines, and (index, reason) of lines that are not envelopes.

    The table has a ``_day`` column (days since the epoch) for partitioning; drop it to write.
    """
    try:
        parsed = _parse_fast(lines)
    except _ARROW_ERRORS:
        return _parse_field_by_field(lines)
    data = parsed.column("data").combine_chunks() if "data" in parsed.column_names else None
    return _assemble(parsed, _prune(data) if data is not None else None, lines), []


def _parse_fast(lines: Sequence[bytes]) -> pa.Table:
    longest = max(map(len, lines), default=0)
    read = pa_json.ReadOptions(use_threads=False, block_size=max(16 << 20, 2 * longest + 2))
    return pa_json.read_json(io.BytesIO(joined(lines)), read_options=read, parse_options=_PARSE)


def _parse_field_by_field(lines: Sequence[bytes]) -> tuple[pa.Table, list[tuple[int, str]]]:
    records: list[Record] = []
    good: list[bytes] = []
    rejected: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        try:
            records.append(decode_one(line))
            good.append(line)
        except msgspec.DecodeError as exc:
            rejected.append((index, f"not an envelope line: {exc}"))
    columns: dict[str, Any] = {
        f.name: pa.array([_envelope_value(r, f.name) for r in records], f.type)
        for f in _ENVELOPE_FIELDS
    }
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record.data))
    children = {key: _typed([r.data.get(key) for r in records]) for key in keys}
    data = pa.StructArray.from_arrays(list(children.values()), list(children)) if keys else None
    return _assemble(pa.table(columns), _prune(data) if data is not None else None, good), rejected


def _envelope_value(record: Record, name: str) -> Any:
    return record.id if name == "_id" else getattr(record, name)


def _typed(values: list[Any]) -> pa.Array:
    """Values as one Arrow array, or as JSON text when they share no Arrow type."""
    try:
        return pa.array(values)
    except _ARROW_ERRORS:
        return pa.array([None if v is None else _json.encode(v).decode() for v in values])


def _prune(data: pa.Array) -> pa.StructArray | None:
    """The payload struct without fields that Parquet cannot store (empty objects)."""
    if not pa.types.is_struct(data.type):
        return None
    fields = [f for f in data.type if _storable(f.type)]
    if not fields:
        return None
    if len(fields) == data.type.num_fields:
        return data
    children = [data.field(f.name) for f in fields]
    return pa.StructArray.from_arrays(children, fields=fields, mask=data.is_null())


def _storable(type_: pa.DataType) -> bool:
    if pa.types.is_struct(type_):
        return type_.num_fields > 0 and all(_storable(f.type) for f in type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _storable(type_.value_type)
    return True


def _assemble(parsed: pa.Table, data: pa.StructArray | None, lines: Sequence[bytes]) -> pa.Table:
    millis = parsed.column("timestamp")
    prefix = pc.fill_null(parsed.column("type_prefix"), "raw")
    columns = {
        "timestamp": millis.cast(TIMESTAMP_TYPE),
        "producer": parsed.column("producer"),
        "type_prefix": prefix,
        "type": parsed.column("type"),
        "_id": parsed.column("_id"),
        "host": parsed.column("host"),
        "version": parsed.column("version"),
        "idb_tags": parsed.column("idb_tags"),
        "idb_fields": parsed.column("idb_fields"),
    }
    if data is not None:
        columns["data"] = data
    columns["envelope"] = _strings(lines)
    columns["_day"] = pc.floor(pc.divide(millis.cast(pa.float64()), DAY_MS)).cast(pa.int32())
    return pa.table(columns)


def _strings(lines: Sequence[bytes]) -> pa.Array:
    """Lines as an Arrow string array, built from one buffer instead of a Python list."""
    count = len(lines)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=count), out=offsets[1:])
    data = pa.py_buffer(b"".join(lines))
    if offsets[-1] < 2**31:
        array = pa.StringArray.from_buffers(count, pa.py_buffer(offsets.astype(np.int32)), data)
    else:
        array = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), data)
    array.validate(full=True)  # UTF-8 and offsets
    return array


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s fields and types; :class:`Incompatible` if it cannot."""
    if table.schema == schema:
        return table
    names = set(schema.names)
    extra = [name for name in table.column_names if name not in names]
    if extra:
        raise Incompatible(f"new fields {extra}")
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(_conform_array(table.column(field.name).combine_chunks(), field.type))
        else:
            arrays.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _conform_array(array: pa.Array, type_: pa.DataType) -> pa.Array:
    if array.type == type_:
        return array
    if pa.types.is_struct(type_) and pa.types.is_struct(array.type):
        have = {f.name: i for i, f in enumerate(array.type)}
        if not set(have) <= {f.name for f in type_}:
            raise Incompatible(f"new fields in {array.type}")
        flat = array.flatten()
        children = [
            _conform_array(flat[have[f.name]], f.type)
            if f.name in have
            else pa.nulls(len(array), f.type)
            for f in type_
        ]
        return pa.StructArray.from_arrays(children, fields=list(type_), mask=array.is_null())
    try:
        return array.cast(type_, safe=True)
    except _ARROW_ERRORS as exc:
        raise Incompatible(f"{array.type} does not fit {type_}: {exc}") from None


def unify(old: pa.Schema, new: pa.Schema) -> pa.Schema:
    """A schema that holds both (fields of both, types widened), or ``new`` when none does."""
    try:
        return pa.unify_schemas([old, new], promote_options="permissive")
    except _ARROW_ERRORS:
        return new
