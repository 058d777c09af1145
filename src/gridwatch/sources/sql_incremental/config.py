"""Settings of the ``sql_incremental`` source (the seed's Flume JDBC reader, made exact)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gridwatch.components import SourceConfig
from gridwatch.config.secrets import Secret

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*$")
PLACEHOLDER = ":committed_value"
# `> :committed_value` (strict) skips the rows that share the cursor's value.
_STRICT_LOWER = re.compile(
    r"(?<![<>!])>(?!=)\s*(?:\w+\s*\(\s*)?'?:committed_value\b"
    r"|:committed_value\b'?\s*(?:,[^)]*\))?\s*<(?![=>])",
    re.IGNORECASE,
)
_START = re.compile(r"^now(?:\s*-\s*(\d+(?:\.\d+)?)\s*([smhd]))?$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class SqlIncrementalConfig(SourceConfig):
    """Settings of the ``sql_incremental`` source."""

    url: str = Field(
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db, "
        "mysql+pymysql://user@host/db, sqlite:///file.db, oracle+oracledb://user@host/?"
        "service_name=x. Put the password in `password`, not here."
    )
    password: Secret | None = Field(
        None, description="Database password (from ${env:NAME} or ${file:PATH})."
    )
    query: str = Field(
        description="The SELECT to run, containing :committed_value where rows at or after the "
        "cursor are selected (e.g. `modificationtime >= :committed_value`). Inline, or "
        "${file:panda.query} to read it from a file next to the pipeline file."
    )
    commit_column: str = Field(
        "modificationtime",
        description="The column whose value moves forward when a row changes "
        "(the seed's reader.table.columnToCommit).",
    )
    key_columns: list[str] = Field(
        default=["pandaid"],
        min_length=1,
        description="Columns that identify a row; with the commit column they break ties, "
        "so any number of rows sharing one commit value is read exactly once.",
    )
    batch_rows: int = Field(
        40000, ge=1, description="Rows per read at most (the seed's batch.size)."
    )
    min_interval_s: float = Field(
        180.0,
        ge=0,
        description="Pause between read rounds once caught up (the seed's batch.minimumTime); "
        "full pages of a backlog are read back to back.",
    )
    start_value: str | int | None = Field(
        None,
        description="Where the first run starts: an ISO 8601 time (in database_timezone "
        "unless it has an offset), a number, `now` or `now - 2m` (s, m, h, d); null reads "
        "the whole history. Ignored once a position is stored.",
    )
    safety_lag_s: float = Field(
        10.0,
        ge=0,
        description="Only read rows whose commit value is older than now minus this, so "
        "transactions in flight have time to commit (time commit columns only).",
    )
    rescan_window_s: float = Field(
        300.0,
        ge=0,
        description="Re-read rows this far behind the cursor each round and emit those not "
        "emitted yet: transactions that commit late with an older commit value are caught.",
    )
    database_timezone: str = Field(
        "UTC",
        description="IANA zone of the database's naive timestamps (TIMESTAMP WITHOUT TIME "
        "ZONE, DATETIME, Oracle DATE); also set as the session time zone.",
    )
    producer: str = Field("panda", description="Envelope producer of the records.")
    record_type: str = Field("all", description="Envelope type of the records.")
    type_prefix: Literal["raw", "enr", "agg"] = Field(
        "raw", description="Envelope type_prefix of the records."
    )
    version: str | None = Field("1", description="Envelope version (null: none).")
    time_format: Literal["epoch_ms", "iso"] = Field(
        "epoch_ms",
        description="How time columns appear in `data`: UTC epoch milliseconds, or ISO 8601 "
        "UTC text ending in Z.",
    )
    decimal_format: Literal["number", "string"] = Field(
        "number",
        description="Decimals with a fraction: exact JSON numbers in fixed-point notation, "
        "or strings. Whole decimals (scale 0, e.g. NUMBER(12,0)) are always integers.",
    )
    lowercase_columns: bool = Field(
        True, description="Lowercase column names in `data` (Oracle reports them uppercase)."
    )
    binary_protocol: bool = Field(
        False,
        description=(
            "PostgreSQL only: fetch rows in psycopg's binary format. The text format costs "
            "less CPU on both ends for typical rows (numerics, timestamps, text); the values "
            "are the same."
        ),
    )
    retry_initial_s: float = Field(1.0, gt=0, description="First pause after a database error.")
    retry_max_s: float = Field(60.0, gt=0, description="Longest pause between retries.")
    query_timeout_s: float = Field(
        300.0,
        gt=0,
        description="The database cancels a read that takes longer than this; the source "
        "retries it with backoff.",
    )

    @field_validator("commit_column")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a plain column name")
        return value

    @field_validator("key_columns")
    @classmethod
    def _key_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not a plain column name")
        return value

    @field_validator("query")
    @classmethod
    def _query_text(cls, value: str) -> str:
        if PLACEHOLDER not in value:
            raise ValueError(
                f"the query must contain {PLACEHOLDER} (e.g. `WHERE modificationtime >= "
                f"{PLACEHOLDER}`) so that each read starts at the cursor"
            )
        if _STRICT_LOWER.search(value):
            raise ValueError(
                f"compare with >= {PLACEHOLDER}, not >: rows sharing the cursor's value "
                "must be selected again so that ties larger than a batch are not skipped"
            )
        return value

    @field_validator("start_value")
    @classmethod
    def _start(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str) and value.strip().lower().startswith("now"):
            start_offset_s(value)
        return value

    @field_validator("database_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like UTC)") from None
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> SqlIncrementalConfig:
        if self.commit_column.lower() in (k.lower() for k in self.key_columns):
            raise ValueError("commit_column must not also be one of key_columns")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        return self


def start_offset_s(text: str) -> float:
    """Seconds before now that a ``now`` / ``now - 2m`` start value means."""
    match = _START.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not `now` or `now - N[smhd]`")
    if match.group(1) is None:
        return 0.0
    return float(match.group(1)) * _UNITS[match.group(2)]
