"""The ``influxdb`` sink: records as InfluxDB line protocol over HTTP (InfluxDB 1.x ``/write``).

Tags come from ``idb_tags`` and fields from ``idb_fields`` (seed 003), or from the shared rules
of :mod:`gridwatch.serving.points`. A batch is sent in requests of at most
``max_lines_per_request`` lines. Server errors and lost connections raise, so the runtime retries
the batch with backoff; a request that the server refuses as malformed (HTTP 400, e.g. a field
type conflict) is split in halves until the offending lines are found, and only those are
rejected (to the dead-letter topic) — InfluxDB overwrites points with the same series and time,
so sending the good lines again is harmless.
"""

from __future__ import annotations

import base64
import http.client
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic import Field

from gridwatch.components import Batch, Sink, SinkConfig, WriteResult
from gridwatch.config.secrets import Secret
from gridwatch.errors import ConfigurationError, RetryableError
from gridwatch.serving.points import FieldValue, Point, PointMaker, PointRules

log = logging.getLogger(__name__)
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


class InfluxdbConfig(SinkConfig, PointRules):
    """Settings of the ``influxdb`` sink."""

    url: str = Field("http://127.0.0.1:8086", description="The InfluxDB server's HTTP address.")
    database: str = Field(description="The database written to.")
    retention_policy: str | None = Field(
        None, description="The retention policy written to (null: the database's default)."
    )
    username: str | None = Field(None, description="User name for HTTP basic authentication.")
    password: Secret | None = Field(
        None, description="Password, from ${env:NAME} or ${file:PATH} only."
    )
    create_database: bool = Field(
        True, description="Create the database when it does not exist (needs admin rights)."
    )
    integers: bool = Field(
        False,
        description="Write whole numbers as integer fields (`1i`); by default every number is "
        "a float, so that a field never changes type between records.",
    )
    max_lines_per_request: int = Field(5000, ge=1, description="Lines per HTTP request at most.")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of each HTTP request.")


def escape_measurement(name: str) -> str:
    """A measurement name escaped for line protocol."""
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """A tag key, tag value or field key escaped for line protocol."""
    if "\n" in text:
        raise ValueError(f"{text!r}: line protocol keys and tag values cannot hold newlines")
    return text.translate(_KEY_ESCAPES)


def field_text(value: FieldValue, integers: bool) -> str:
    """A field value in line protocol."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i" if integers else repr(float(value))
    if isinstance(value, float):
        return repr(value)
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def line_of(point: Point, integers: bool = False) -> str:
    """One point as a line of line protocol, in milliseconds."""
    head = escape_measurement(point.measurement)
    tags = "".join(
        f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(point.tags.items()) if v != ""
    )
    fields = ",".join(f"{escape_key(k)}={field_text(v, integers)}" for k, v in point.fields.items())
    return f"{head}{tags} {fields} {point.timestamp_ms}"


class InfluxdbSink(Sink):
    """Writes points to InfluxDB 1.x over HTTP."""

    Config = InfluxdbConfig
    config: InfluxdbConfig

    def open(self, state: Any) -> None:
        parts = urlsplit(self.config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{self.id}: url {self.config.url!r} is not http(s)://HOST")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 8086)
        self.base_path = parts.path.rstrip("/")
        self.maker = PointMaker(self.config)
        self.connection: http.client.HTTPConnection | None = None
        self.database_ready = not self.config.create_database

    # -- HTTP ----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.config.username is not None:
            password = self.config.password.get_secret_value() if self.config.password else ""
            token = base64.b64encode(f"{self.config.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, str]:
        if self.connection is None:
            factory = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            self.connection = factory(self.host, self.port, timeout=self.config.timeout_s)
        try:
            self.connection.request(method, self.base_path + path, body, self._headers())
            response = self.connection.getresponse()
            text = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            self.connection = None
            raise RetryableError(f"InfluxDB at {self.config.url}: {exc}") from exc
        return response.status, text

    def _ensure_database(self) -> None:
        if self.database_ready:
            return
        query = urlencode({"q": f'CREATE DATABASE "{self.config.database}"'})
        status, text = self._request("POST", f"/query?{query}", None)
        if status >= 300:
            raise RetryableError(f"creating database {self.config.database}: {status} {text}")
        self.database_ready = True

    def _send(self, lines: list[str]) -> tuple[int, str]:
        params = {"db": self.config.database, "precision": "ms"}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        body = "\n".join(lines).encode()
        return self._request("POST", f"/write?{urlencode(params)}", body)

    # -- writing -------------------------------------------------------------------------------

    def write(self, batch: Batch) -> WriteResult:
        rejected: list[tuple[int, str]] = []
        lines: list[str] = []
        positions: list[int] = []
        for index, record in enumerate(batch.records):
            try:
                lines.append(line_of(self.maker.point(record), self.config.integers))
            except ValueError as exc:
                rejected.append((index, str(exc)))
                continue
            positions.append(index)
        self._ensure_database()
        step = self.config.max_lines_per_request
        for first in range(0, len(lines), step):
            refused = self._write_lines(lines[first : first + step])
            rejected.extend((positions[first + i], reason) for i, reason in refused)
        return WriteResult(sorted(rejected))

    def _write_lines(self, lines: list[str]) -> list[tuple[int, str]]:
        """Send ``lines``; return the (index, reason) of lines the server refuses."""
        status, text = self._send(lines)
        if status < 300:
            return []
        if status == 400:
            if len(lines) == 1:
                return [(0, f"InfluxDB refused the point: {text.strip()}")]
            half = len(lines) // 2
            left = self._write_lines(lines[:half])
            right = self._write_lines(lines[half:])
            return left + [(half + i, reason) for i, reason in right]
        if status == 404 and "database not found" in text:
            self.database_ready = not self.config.create_database
        raise RetryableError(f"InfluxDB write failed: {status} {text.strip()}")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
