"""From envelope JSON lines to typed columns, with DuckDB, the same way in stream and batch.

The streaming jobs hand DuckDB the raw bus lines of a batch; the batch command hands it the
archive (the envelope JSON column of the Parquet files) or NDJSON files. Both run the same SQL:
one ``json_transform`` per line into the declared field types, then the derived columns, the
filter and the output columns. Because the very same engine and expressions compute the
columns on both paths, streaming and batch results cannot drift apart.

Columns available to expressions: every declared data field by its name, and the envelope's
``_timestamp`` (UTC ms), ``_producer``, ``_type`` and ``_id``. Values that do not fit the
declared type become NULL (DuckDB's lenient ``json_transform``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from gridwatch.bus.base import JoinedLines
from gridwatch.record import Record

ENVELOPE_COLUMNS = {
    "_timestamp": ("timestamp", "BIGINT"),
    "_producer": ("producer", "VARCHAR"),
    "_type": ("type", "VARCHAR"),
    "_id": ("_id", "VARCHAR"),
}


def quote(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Extraction:
    """What to compute from each envelope line.

    ``fields`` maps data field names to DuckDB types; ``derive`` adds named SQL expressions,
    each able to use the ones before it; ``where`` keeps the rows for which it is true;
    ``outputs`` is the final list of (name, SQL expression).
    """

    fields: Mapping[str, str]
    outputs: Sequence[tuple[str, str]]
    derive: Mapping[str, str] = field(default_factory=dict)
    where: str | None = None

    def schema(self) -> str:
        """The ``json_transform`` structure of an envelope with the declared data fields."""
        shape: dict[str, object] = {key: kind for key, kind in ENVELOPE_COLUMNS.values()}
        if self.fields:
            shape["data"] = dict(self.fields)
        return json.dumps(shape)

    def sql(self, source: str, skip_invalid: bool = True) -> str:
        """The query over ``source``, a relation with columns ``_row`` and ``line``.

        With ``skip_invalid``, lines that are not JSON are left out (a second parse of every
        line); without, such a line fails the query.
        """
        envelope = [
            f"j.{quote(key)} AS {quote(name)}" for name, (key, _) in ENVELOPE_COLUMNS.items()
        ]
        data = [f"j.data.{quote(name)} AS {quote(name)}" for name in self.fields]
        ctes = [
            f"e0 AS (SELECT _row, {', '.join(envelope + data)} FROM "
            f"(SELECT _row, json_transform(line, {literal(self.schema())}) AS j "
            f"FROM {source}{' WHERE json_valid(line)' if skip_invalid else ''}))"
        ]
        for step, (name, expression) in enumerate(self.derive.items(), start=1):
            ctes.append(f"e{step} AS (SELECT *, ({expression}) AS {quote(name)} FROM e{step - 1})")
        last = f"e{len(self.derive)}"
        select = ", ".join(["_row", *(f"({expr}) AS {quote(name)}" for name, expr in self.outputs)])
        where = f" WHERE ({self.where})" if self.where else ""
        return f"WITH {', '.join(ctes)} SELECT {select} FROM {last}{where}"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB on one thread (jobs are single-core; results stay in row order)."""
    conn = duckdb.connect()
    conn.execute("SET threads = 1")
    return conn


def lines_table(lines: Sequence[bytes]) -> pa.Table:
    """Bus lines as an Arrow table with ``_row`` and ``line``."""
    return pa.table({"_row": pa.array(np.arange(len(lines), dtype=np.int64)), "line": _text(lines)})


def _text(lines: Sequence[bytes]) -> pa.Array:
    """The lines as an Arrow string array; a newline-joined buffer is used in place (each
    value then ends with its newline, which JSON parsers skip as whitespace)."""
    if isinstance(lines, JoinedLines) and len(lines):
        payload = lines.payload
        ends = np.flatnonzero(np.frombuffer(payload, dtype=np.uint8) == ord("\n"))
        if len(ends) == len(lines) - 1:
            offsets = np.concatenate(([0], ends + 1, [len(payload)])).astype(np.int64)
            text = pa.LargeStringArray.from_buffers(
                len(lines), pa.py_buffer(offsets), pa.py_buffer(payload)
            )
            text.validate(full=True)  # UTF-8, as pa.array checks it
            return text
    return pa.array(list(lines), type=pa.string())


class LineQuery:
    """An extraction over batches of envelope lines, planned once (as views) on a connection."""

    _views = itertools.count()

    def __init__(self, conn: duckdb.DuckDBPyConnection, extraction: Extraction) -> None:
        self.conn = conn
        number = next(self._views)
        self.parsed, self.checked = f"parsed_{number}", f"checked_{number}"
        conn.register("batch_lines", lines_table([]))
        try:
            for view, skip_invalid in ((self.parsed, False), (self.checked, True)):
                sql = extraction.sql("batch_lines", skip_invalid)
                conn.execute(f"CREATE TEMP VIEW {view} AS {sql}")
        finally:
            conn.unregister("batch_lines")

    def __call__(self, lines: Sequence[bytes]) -> tuple[pa.Table, list[int]]:
        """The extraction's columns for the lines, and the rows of lines that are not JSON."""
        conn = self.conn
        conn.register("batch_lines", lines_table(lines))
        try:
            # Bus lines are JSON envelopes: parse each once, and only if one is not, again.
            try:
                return conn.sql(f"SELECT * FROM {self.parsed}").to_arrow_table(), []
            except duckdb.InvalidInputException as exc:
                if "Malformed JSON" not in str(exc):
                    raise
            invalid = conn.sql("SELECT _row FROM batch_lines WHERE NOT json_valid(line)")
            rows = [row for (row,) in invalid.fetchall()]
            return conn.sql(f"SELECT * FROM {self.checked}").to_arrow_table(), rows
        finally:
            conn.unregister("batch_lines")


def check(extraction: Extraction) -> None:
    """Compile the extraction on an empty batch; raise ValueError with DuckDB's message."""
    try:
        LineQuery(connect(), extraction)([])
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0]
        raise ValueError(f"SQL in fields/derive/where: {message}") from None


def file_source(paths: Sequence[str], json_column: str | None = None) -> str:
    """A relation over NDJSON files or Parquet files (their envelope JSON column), one line
    per record ``_id`` (its last)."""
    parquet = [p for p in paths if p.endswith(".parquet")]
    ndjson = [p for p in paths if not p.endswith(".parquet")]
    parts: list[str] = []
    if ndjson:
        listed = ", ".join(literal(p) for p in ndjson)
        parts.append(f"SELECT json::VARCHAR AS line FROM read_ndjson_objects([{listed}])")
    if parquet:
        listed = ", ".join(literal(p) for p in parquet)
        column = quote(json_column or "envelope")
        parts.append(f"SELECT {column}::VARCHAR AS line FROM read_parquet([{listed}])")
    union = " UNION ALL ".join(parts)
    # A record is counted once however often it was stored (a sink that wrote it twice, files
    # that overlap), as its last line in file order: for a bin, the latest revision written.
    last_of_each = (
        f"SELECT line, _seq FROM (SELECT line, row_number() OVER () AS _seq FROM ({union})) "
        "QUALIFY row_number() OVER (PARTITION BY coalesce(json_extract_string(line, '$._id'), "
        "_seq::VARCHAR) ORDER BY _seq DESC) = 1"
    )
    return f"(SELECT row_number() OVER (ORDER BY _seq) - 1 AS _row, line FROM ({last_of_each}))"


def run_on_files(
    conn: duckdb.DuckDBPyConnection,
    extraction: Extraction,
    paths: Sequence[str],
    json_column: str | None = None,
    chunk_rows: int = 500_000,
) -> Iterator[pa.RecordBatch]:
    """The extraction's columns over files, in chunks of about ``chunk_rows``."""
    relation = conn.sql(extraction.sql(file_source(paths, json_column)))
    yield from relation.to_arrow_reader(chunk_rows)


@dataclass
class BatchResult:
    """What a batch run produced and what it could not use."""

    records: list[Record] = field(default_factory=list)
    rows: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
