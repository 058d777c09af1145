"""POST /ingest against a real `gridwatch run` process: answers, limits, tokens, dead letters."""

from __future__ import annotations

import gzip
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gridwatch.bus import SqliteBus
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC

pytestmark = pytest.mark.integration

PANDA_TOKEN = "panda-secret-token-0123456789"
OPS_TOKEN = "ops-secret-token-abcdef"

PIPELINE = """
sources:
  in:
    type: http
    tokens:
      - name: panda-collector
        token: ${file:panda.token}
        producers: [panda]
      - name: ops
        token: ${env:GW_TEST_OPS_TOKEN}
        producers: ["*"]
    max_body_bytes: 65536
    max_records_per_request: 50
  open:
    type: http
    path: /ingest/open
    anonymous_producers: [public]
sinks:
  files:
    type: jsonl
    inputs: [in, open, _deadletter]
    directory: out
"""


def post(
    url: str,
    body: bytes,
    content_type: str = "application/json",
    token: str | None = PANDA_TOKEN,
    **headers: str,
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    request.add_header("Content-Type", content_type)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def env(n: int, producer: str = "panda", **extra: Any) -> dict[str, Any]:
    return {
        "producer": producer,
        "type": "jobs",
        "timestamp": 1_700_000_000 + n,
        "data": {"pandaid": n, "site": "CERN-PROD"},
        **extra,
    }


def topic_lines(bus: SqliteBus, topic: str) -> list[dict[str, Any]]:
    lines = [line for s in bus.read(topic, 0, 100_000) for line in s.lines]
    return [msgspec.json.decode(line) for line in lines]


@pytest.fixture
def server(tmp_path: Path, gridwatch_process: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "panda.token").write_text(PANDA_TOKEN + "\n")
    monkeypatch.setenv("GW_TEST_OPS_TOKEN", OPS_TOKEN)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.replace("directory: out", f"directory: {tmp_path / 'out'}"))
    return gridwatch_process(pipeline, tmp_path / "data").start()


def test_formats_partial_batches_and_durability(server: Any) -> None:
    url = server.url + "/ingest"
    bus = SqliteBus(server.data_dir / "bus.db")

    status, body = post(url, json.dumps(env(1)).encode())
    assert (status, body) == (200, {"accepted": 1, "rejected": []})
    # Durable before the answer: the record is on the bus the moment we get the 200.
    assert [r["data"]["pandaid"] for r in topic_lines(bus, "panda_raw_jobs")] == [1]

    mixed = [env(2), {"producer": "panda"}, env(3), env(4, timestamp="yesterday"), "nope"]
    status, body = post(url, json.dumps(mixed).encode())
    assert status == 207
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 3, 4]
    assert "type" in body["rejected"][0]["reason"]
    assert "timestamp" in body["rejected"][1]["reason"]

    ndjson = b"\n".join(json.dumps(env(n)).encode() for n in (5, 6)) + b"\n{broken\n"
    status, body = post(url, gzip.compress(ndjson), "application/x-ndjson", Content_Encoding="gzip")
    assert status == 207
    assert (body["accepted"], [r["index"] for r in body["rejected"]]) == (2, [2])

    status, body = post(url, json.dumps([{"producer": "panda"}]).encode())
    assert status == 400 and body["accepted"] == 0 and len(body["rejected"]) == 1

    assert sorted(r["data"]["pandaid"] for r in topic_lines(bus, "panda_raw_jobs")) == [
        1,
        2,
        3,
        5,
        6,
    ]
    letters = topic_lines(bus, DEADLETTER_TOPIC)
    assert len(letters) == 5, "every rejected record is kept as a dead letter"
    assert {letter["data"]["component"] for letter in letters} == {"in"}
    assert any(letter["data"]["record"] == "{broken" for letter in letters)
    assert any(letter["data"]["record"] == "nope" for letter in letters)


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "message"),
    [
        (b'[{"producer": "panda", ', "application/json", {}, 400, "malformed JSON"),
        (b"42", "application/json", {}, 400, "expected a JSON object or array"),
        (b"[]", "application/json", {}, 400, "no envelopes"),
        (b"[]", "text/plain", {}, 415, "content type"),
        (b"[]", "application/json; charset=latin-1", {}, 415, "charset"),
        (
            b'{"producer": "panda", "type": "jobs", "data": {"x": "\xff"}}',
            "application/json",
            {},
            400,
            "UTF-8",
        ),
        (b"[" + b" " * 70_000 + b"]", "application/json", {}, 413, "larger than"),
        (
            gzip.compress(b"[" + b" " * 200_000 + b"]"),
            "application/json",
            {"Content_Encoding": "gzip"},
            413,
            "larger than",
        ),
        (
            b"\x1f\x8b\x08\x00garbage",
            "application/json",
            {"Content_Encoding": "gzip"},
            400,
            "expected",
        ),
        (
            json.dumps([env(n) for n in range(51)]).encode(),
            "application/json",
            {},
            413,
            "at most 50",
        ),
    ],
)
def test_bad_requests_get_a_clear_4xx(  # noqa: PLR0917
    server: Any, body: bytes, content_type: str, headers: dict[str, str], status: int, message: str
) -> None:
    got, answer = post(server.url + "/ingest", body, content_type, **headers)
    assert got == status
    assert message in answer["error"]
    # ...and the server is still fine afterwards.
    assert post(server.url + "/ingest", json.dumps(env(9)).encode())[0] == 200


def test_tokens_and_grants(server: Any) -> None:
    url = server.url + "/ingest"
    one = json.dumps(env(1)).encode()
    assert post(url, one, token=None)[0] == 401
    assert post(url, one, token="wrong-token")[0] == 401
    assert post(url, one, token=PANDA_TOKEN[:-1])[0] == 401
    status, body = post(url, json.dumps([env(1), env(2, producer="fts")]).encode())
    assert status == 403
    assert "fts" in body["error"] and body["forbidden_indexes"] == [1]
    assert post(url, json.dumps(env(3, producer="fts")).encode(), token=OPS_TOKEN)[0] == 200
    # The anonymous endpoint takes only its producer, and no token is needed.
    open_url = server.url + "/ingest/open"
    assert post(open_url, json.dumps(env(4, producer="public")).encode(), token=None)[0] == 200
    assert post(open_url, one, token=None)[0] == 403
    bus = SqliteBus(server.data_dir / "bus.db")
    assert [r["data"]["pandaid"] for r in topic_lines(bus, "panda_raw_jobs")] == []
    assert len(topic_lines(bus, "fts_raw_jobs")) == 1
    assert len(topic_lines(bus, "public_raw_jobs")) == 1
    # Refused requests are counted.
    with urllib.request.urlopen(server.url + "/metrics") as response:  # noqa: S310
        metrics = response.read().decode()
    assert 'gridwatch_refused_requests_total{component="in",kind="source"} 4' in metrics


def test_concurrent_requests_share_appends_and_all_land(server: Any) -> None:
    import concurrent.futures

    url = server.url + "/ingest"

    def send(start: int) -> int:
        batch = [env(n) for n in range(start, start + 40)]
        return post(url, json.dumps(batch).encode(), token=OPS_TOKEN)[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(0, 40 * 32, 40)))
    assert statuses == [200] * 32
    bus = SqliteBus(server.data_dir / "bus.db")
    ids = sorted(r["data"]["pandaid"] for r in topic_lines(bus, "panda_raw_jobs"))
    assert ids == list(range(40 * 32))
    deadline = time.monotonic() + 20
    out = server.data_dir.parent / "out" / "panda_raw_jobs.jsonl"
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_bytes().splitlines()) == 40 * 32:
            break
        time.sleep(0.1)
    assert len(out.read_bytes().splitlines()) == 40 * 32


def test_a_resent_request_is_answered_and_stored_once(server: Any) -> None:
    """A client whose answer was lost sends again: 200 again, and no second copy anywhere."""
    url = server.url + "/ingest"
    first = json.dumps([env(n) for n in range(10)]).encode()
    overlapping = json.dumps([env(n) for n in range(5, 15)]).encode()
    assert post(url, first)[0] == 200
    assert post(url, first) == (200, {"accepted": 10, "rejected": []})  # the resend
    assert post(url, overlapping)[0] == 200
    bus = SqliteBus(server.data_dir / "bus.db")
    stored = [r["data"]["pandaid"] for r in topic_lines(bus, "panda_raw_jobs")]
    assert sorted(stored) == list(range(15))
    with urllib.request.urlopen(server.url + "/metrics") as answer:  # noqa: S310
        metrics = answer.read().decode()
    assert 'gridwatch_duplicates_total{component="in",kind="source"} 15' in metrics
    deadline = time.monotonic() + 30
    out = server.data_dir.parent / "out" / "panda_raw_jobs.jsonl"
    while (
        time.monotonic() < deadline
        and len(out.read_bytes().splitlines() if out.exists() else []) < 15
    ):
        time.sleep(0.1)
    assert server.stop() == 0
    written = [json.loads(line)["data"]["pandaid"] for line in out.read_bytes().splitlines()]
    assert sorted(written) == list(range(15))
