"""The serving API of a real `gridwatch run` process: query, status, pipeline and dashboard."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

pytestmark = pytest.mark.integration

PIPELINE = """
sources:
  ei:
    type: eventindex_simulator
    modules: [hadoop_cluster, web_interface]
    interval_s: 0.5
    health_slot_s: 5
    backfill_hours: 48
  grid:
    type: generator
    kinds: [panda]
    rate_per_s: 50
jobs:
  status:
    type: module_status
    inputs: [ei]
    evaluate_interval_s: 0.5
    modules:
      hadoop_cluster:
        unavailable_after_s: 30
        checks: [{field: dead_nodes, degraded_above: 0, unavailable_above: 4}]
      web_interface:
        checks: [{field: http_status, unavailable_values: [503]}]
      consumer: {expected: false}
sinks:
  tsdb:
    type: timeseries
    inputs: [ei, status]
  strings:
    type: timeseries
    inputs: [grid]
    measurements:
      panda_jobs: {tags: [computingsite], fields: [jobstatus]}
dashboard:
  title: test dashboard
  panels:
    - {title: dead nodes, measurement: eventindex_hadoop_cluster, fields: [dead_nodes]}
"""


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get_json(url: str) -> Any:
    status, body, _ = get(url)
    assert status == 200, body
    return json.loads(body)


def wait_for(check: Any, timeout_s: float = 30.0) -> Any:
    """``check()``'s first true value; an answer that is not 200 yet (the store is still
    opening: 503) counts as not ready until the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_serving_api_end_to_end(tmp_path: Path, gridwatch_process: Any) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE)
    proc = gridwatch_process(pipeline, tmp_path / "data").start()
    base = proc.url

    def statuses() -> dict[str, Any]:
        answer = get_json(base + "/api/v1/status")
        mods = {m["module"]: m for m in answer["modules"]}
        ready = (
            all(m["evaluated_at"] for m in mods.values())
            and mods["hadoop_cluster"]["last_data"]
            and mods["web_interface"]["last_data"]
        )
        return mods if ready else {}

    modules = wait_for(statuses)
    assert set(modules) == {"hadoop_cluster", "web_interface", "consumer"}
    assert modules["consumer"]["status"] == "N/A"
    assert modules["consumer"]["colour"] == "white"
    colours = {"available": "green", "degraded": "yellow", "unavailable": "red"}
    for name in ("hadoop_cluster", "web_interface"):
        assert colours[modules[name]["status"]] == modules[name]["colour"]
        assert bool(modules[name]["reasons"]) == (modules[name]["status"] != "available")

    # Two days of backfilled history; the query says which tier answered.
    def two_days() -> Any:
        url = (
            f"{base}/api/v1/query?measurement=eventindex_hadoop_cluster&fields=dead_nodes"
            "&start=-2d&max_points=100&aggregate=max"
        )
        answer = get_json(url)
        return answer if answer["points"] >= 90 else None

    answer = wait_for(two_days)
    assert answer is not None
    assert answer["tier"] == "10m"  # 48 h / 100 points = 28.8 min: 10-minute bins, 3 a bucket
    assert answer["interval_ms"] == 30 * 60_000
    assert answer["series"][0]["field"] == "dead_nodes"
    assert all(0 <= v <= 10 for v in answer["series"][0]["values"])

    status, body, headers = get(
        f"{base}/api/v1/query?measurement=eventindex_hadoop_cluster&start=-6h&format=csv"
        "&fields=dead_nodes,live_nodes&max_points=12&tier=10m"
    )
    assert status == 200 and headers["X-Gridwatch-Tier"] == "10m"
    table = pa_csv.read_csv(io.BytesIO(body))
    assert table.column_names == ["time", "field", "value"]
    assert set(table.column("field").to_pylist()) == {"dead_nodes", "live_nodes"}
    live = [
        v
        for f, v in zip(
            table.column("field").to_pylist(), table.column("value").to_pylist(), strict=True
        )
        if f == "live_nodes"
    ]
    assert all(100 <= v <= 120 for v in live)

    # The status history is stored too, one series per module, as worst state per bin.
    def history() -> Any:
        status, body, _ = get(
            f"{base}/api/v1/query?measurement=gridwatch_module_status&group_by=module"
            "&start=-1h&format=arrow&aggregate=mean"
        )
        if status != 200 or len(body) <= 200:
            return None
        table = pa.ipc.open_stream(body).read_all()
        modules = set(table.column("tag_module").to_pylist())
        return table if modules >= {"hadoop_cluster", "web_interface"} else None

    arrow = wait_for(history)
    assert arrow is not None, "the status history never held both modules"
    assert set(arrow.column("value").to_pylist()) <= {-1.0, 0.0, 1.0, 2.0}

    # Records the 'strings' sink cannot store end as dead letters, shown on the pipeline page.
    def dead_letters() -> Any:
        view = get_json(base + "/api/v1/pipeline")
        return view if view["dead_letters"]["total"] > 0 else None

    view = wait_for(dead_letters)
    recent = view["dead_letters"]["recent"][0]
    assert recent["component"] == "strings"
    assert "panda_jobs: no numeric field" in recent["reason"]
    components = {c["id"]: c for c in view["components"]}
    assert components["tsdb"]["counters"]["sent"] > 0
    assert components["tsdb"]["lag"] is not None
    assert components["status"]["type"] == "module_status"

    status, body, _ = get(f"{base}/api/v1/query?measurement=x&aggregate=median")
    assert status == 400 and b"aggregate" in body
    status, body, _ = get(f"{base}/api/v1/query?measurement=x&store=nope")
    assert status == 400 and b"known: tsdb, strings" in body
    dashboard = get_json(base + "/api/v1/dashboard")
    assert dashboard["title"] == "test dashboard" and dashboard["plotly"] is True
    status, body, _ = get(base + "/")
    assert status == 200 and b"/ui/app.js" in body
    status, body, _ = get(base + "/ui/vendor/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000

    # A restart keeps the store and the statuses' latest values.
    assert proc.stop() == 0
    proc.start()
    after = get_json(base + "/api/v1/status")
    hadoop = {m["module"]: m for m in after["modules"]}["hadoop_cluster"]
    assert hadoop["last_data"] is not None
    url = base + "/api/v1/measurements?store=tsdb"
    assert wait_for(lambda: get(url)[0] == 200)  # 503 until the sink has opened its store
    measurements = get_json(url)["measurements"]
    assert measurements["eventindex_hadoop_cluster"]["tags"] == ["host"]
    assert "dead_nodes" in measurements["eventindex_hadoop_cluster"]["fields"]
