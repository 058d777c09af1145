"""Reference tables for enrichment: CSV or JSON files, an SQL query, or an HTTP JSON endpoint.

A table is a mapping from a key (compared as text, so ``1008`` and ``"1008"`` match) to a row
of columns. Loading is synchronous and meant to run in a worker thread.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.config.secrets import Secret
from gridwatch.errors import ConfigurationError

Table = dict[str, dict[str, Any]]


class SqlQuery(BaseModel):
    """A query whose rows form the table."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="sqlite:///path/to/file.db or postgresql://user@host:port/database "
        "(no password here: use `password`)."
    )
    password: Secret | None = Field(None, description="Database password, from ${env:..}.")
    query: str = Field(description="SELECT returning the key column and the columns to add.")


class TableConfig(BaseModel):
    """Where a reference table comes from (exactly one of csv, json, sql, http)."""

    model_config = ConfigDict(extra="forbid")

    csv: Path | None = Field(None, description="A CSV file with a header row.")
    json_file: Path | None = Field(
        None,
        alias="json",
        description="A JSON file: a list of objects, or an object mapping key to row.",
    )
    sql: SqlQuery | None = Field(None, description="An SQL query.")
    http: str | None = Field(None, description="A URL answering JSON (list or mapping).")
    key: str = Field(description="The column holding the lookup key.")
    refresh_s: float = Field(600.0, gt=0, description="Reload this often (the stream goes on).")
    timeout_s: float = Field(30.0, gt=0, description="Time limit for the SQL or HTTP load.")

    @model_validator(mode="after")
    def _one_origin(self) -> TableConfig:
        given = [n for n in ("csv", "json_file", "sql", "http") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of csv, json, sql, http (got {given or 'none'})")
        return self


def load_table(config: TableConfig) -> Table:
    """Read the table now."""
    if config.csv is not None:
        with config.csv.open(newline="") as handle:
            rows: Any = list(csv.DictReader(handle))
    elif config.json_file is not None:
        rows = json.loads(config.json_file.read_text())
    elif config.sql is not None:
        rows = _query(config.sql, config.timeout_s)
    else:
        assert config.http is not None
        with urllib.request.urlopen(config.http, timeout=config.timeout_s) as response:  # noqa: S310
            rows = json.loads(response.read())
    return index_rows(rows, config.key)


def index_rows(rows: Any, key: str) -> Table:
    """Rows (a list of objects, or a mapping key -> object) indexed by ``key`` as text."""
    if isinstance(rows, dict):
        return {str(k): {key: k, **v} for k, v in rows.items() if isinstance(v, dict)}
    if not isinstance(rows, list):
        raise ValueError("expected a list of objects or an object of objects")
    table: Table = {}
    for row in rows:
        if isinstance(row, dict) and row.get(key) is not None:
            table[str(row[key])] = row
    return table


def _query(sql: SqlQuery, timeout_s: float) -> list[dict[str, Any]]:
    url = sql.url
    if url.startswith("sqlite:///"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=timeout_s)
        try:
            cursor = lite.execute(sql.query)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            lite.close()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL reference tables need psycopg: pip install 'gridwatch[postgres]'"
            ) from None
        password = sql.password.get_secret_value() if sql.password else None
        with psycopg.connect(
            url, password=password, connect_timeout=int(timeout_s), row_factory=dict_row
        ) as conn:
            return list(conn.execute(sql.query.encode()).fetchall())
    raise ConfigurationError(f"unsupported SQL url {url.split(':')[0]!r}: use sqlite or postgresql")
