"""The influxdb sink against the real InfluxDB 1.x server that scripts/services.d starts."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.components import Batch, Context
from gridwatch.errors import RetryableError
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, Record, encode_lines
from gridwatch.sinks.influxdb.sink import InfluxdbConfig, InfluxdbSink

pytestmark = pytest.mark.integration
URL = os.environ.get("GRIDWATCH_INFLUXDB_URL", "http://127.0.0.1:18086")


def influx_query(database: str, q: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"})
    with urllib.request.urlopen(f"{URL}/query?{params}", timeout=10) as response:  # noqa: S310
        answer = json.load(response)
    return answer["results"][0].get("series", [])


@pytest.fixture
def database() -> Any:
    name = f"gw_test_{uuid.uuid4().hex[:10]}"
    yield name
    body = urllib.parse.urlencode({"q": f'DROP DATABASE "{name}"'}).encode()
    urllib.request.urlopen(f"{URL}/query", data=body, timeout=10).close()  # noqa: S310


def make_sink(tmp_path: Path, database: str, **settings: Any) -> InfluxdbSink:
    context = Context(tmp_path, Metrics(), SqliteBus(tmp_path / "bus.db"), EnvelopeDecoder())
    config = InfluxdbConfig.model_validate(
        {"type": "influxdb", "inputs": ["x"], "url": URL, "database": database, **settings}
    )
    sink = InfluxdbSink("influx", config, context)
    sink.open(None)
    return sink


def metric(ts: int, host: str, **data: Any) -> Record:
    fields = sorted(data)
    return Record(
        "eventindex",
        "hadoop",
        ts,
        f"{host}{ts}",
        data={"host": host, **data},
        idb_tags=["host"],
        idb_fields=fields,
    )


def test_points_arrive_with_tags_fields_and_millisecond_times(
    tmp_path: Path, database: str
) -> None:
    sink = make_sink(tmp_path, database, max_lines_per_request=3)
    base = 1_700_000_000_000
    records = [metric(base + i * 1000, f"ai0{i % 2}", dead_nodes=i, state="ok") for i in range(7)]
    result = sink.write(Batch("eventindex_raw_hadoop", encode_lines(records)))
    sink.close()
    assert result.rejected == []
    series = influx_query(
        database, 'SELECT dead_nodes, "state" FROM eventindex_hadoop GROUP BY host'
    )
    by_host = {s["tags"]["host"]: s["values"] for s in series}
    assert by_host["ai00"] == [[base + i * 1000, i, "ok"] for i in (0, 2, 4, 6)]
    assert [row[1] for row in by_host["ai01"]] == [1, 3, 5]


def test_a_refused_point_is_rejected_alone(tmp_path: Path, database: str) -> None:
    sink = make_sink(tmp_path, database)
    base = 1_700_000_000_000
    records = [
        metric(base, "ai01", load=1.5),
        metric(base + 1, "ai01", load="high"),  # a string where the field is a float
        metric(base + 2, "ai01", load=2.5),
        Record("eventindex", "hadoop", base + 3, "n", data={"host": "ai01"}, idb_tags=["host"]),
    ]
    result = sink.write(Batch("eventindex_raw_hadoop", encode_lines(records)))
    sink.close()
    assert [index for index, _ in result.rejected] == [1, 3]
    assert "field type conflict" in result.rejected[0][1]
    assert "no field values" in result.rejected[1][1]
    values = influx_query(database, "SELECT load FROM eventindex_hadoop")[0]["values"]
    assert values == [[base, 1.5], [base + 2, 2.5]]


def test_an_unreachable_server_raises_so_the_batch_is_retried(
    tmp_path: Path, database: str
) -> None:
    sink = make_sink(tmp_path, database, url="http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(RetryableError, match=r"InfluxDB at http://127\.0\.0\.1:9"):
        sink.write(Batch("t", encode_lines([metric(1_700_000_000_000, "ai01", x=1)])))
