"""Enrichment tables from PostgreSQL and HTTP, reloaded while the job runs."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.jobs.enrich.job import EnrichConfig, EnrichJob
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, Record, decode_lines, encode

pytestmark = pytest.mark.integration
PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def queues_table() -> Iterator[str]:
    name = f"queues_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (queue TEXT PRIMARY KEY, site TEXT, cores INT)")
        conn.execute(f"INSERT INTO {name} VALUES ('ANALY_CERN', 'CERN-PROD', 8)")
    yield name
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")


@pytest.fixture
def error_codes() -> Iterator[tuple[str, dict[str, Any]]]:
    codes: dict[str, Any] = {"1008": {"text": "stage-in failed"}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(codes).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/codes", codes
    server.shutdown()


def job_row(queue: str, code: int) -> bytes:
    data = {"pandaid": 1, "computingsite": queue, "piloterrorcode": code}
    return encode(Record("panda", "jobs", 1_714_600_000_000, f"id-{queue}-{code}", data=data))


def test_sql_and_http_tables_with_refresh(
    tmp_path: Path, queues_table: str, error_codes: tuple[str, dict[str, Any]]
) -> None:
    url, codes = error_codes
    config = EnrichConfig.model_validate(
        {
            "type": "enrich",
            "inputs": ["feed"],
            "tables": {
                "queues": {
                    "sql": {"url": PG, "query": f"SELECT queue, site, cores FROM {queues_table}"},
                    "key": "queue",
                    "refresh_s": 0.01,
                },
                "errors": {"http": url, "key": "code", "refresh_s": 0.01},
            },
            "joins": [
                {
                    "table": "queues",
                    "field": "computingsite",
                    "columns": {"site": "site", "cores": "cores"},
                },
                {"table": "errors", "field": "piloterrorcode", "columns": {"error_text": "text"}},
            ],
        }
    )
    context = Context(tmp_path, Metrics(), SqliteBus(tmp_path / "bus.db"), EnvelopeDecoder())
    job = EnrichJob("enrich", config, context)
    job.restore(None)
    job.process("t", [job_row("ANALY_CERN", 1008), job_row("ANALY_BNL", 1099)])
    ((topic, origin, lines),) = job.take_outputs()
    assert (topic, origin) == ("panda_enr_jobs", "enrich")
    first, second = decode_lines(list(lines))
    assert (first.data["site"], first.data["cores"], first.data["error_text"]) == (
        "CERN-PROD",
        8,
        "stage-in failed",
    )
    assert first.id == "id-ANALY_CERN-1008" and first.type_prefix == "enr"
    assert second.data["enrich_unknown"] == ["queues", "errors"]
    assert context.metrics.value("enrich", "unknown_keys") == 1
    # Both tables change; a refresh picks the changes up without restarting the job.
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {queues_table} VALUES ('ANALY_BNL', 'BNL-ATLAS', 16)")
    codes["1099"] = {"text": "lost heartbeat"}
    time.sleep(0.05)  # both tables are now due for their refresh
    job.tick()
    job.process("t", [job_row("ANALY_BNL", 1099)])
    ((_, _, lines),) = job.take_outputs()
    (again,) = decode_lines(list(lines))
    assert (again.data["site"], again.data["cores"], again.data["error_text"]) == (
        "BNL-ATLAS",
        16,
        "lost heartbeat",
    )
    assert "enrich_unknown" not in again.data
