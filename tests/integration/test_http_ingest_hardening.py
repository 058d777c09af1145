"""POST /ingest against a real `gridwatch run`: hostile bodies, slow clients and rate limits.

Each case is one request that used to cost more than itself (a 500, the good records of the
same request, the endpoint, or a connection held for ever); now it costs only itself.
"""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gridwatch.bus import SqliteBus
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC

pytestmark = pytest.mark.integration

PIPELINE = """
server:
  header_timeout_s: 2
sources:
  in:
    type: http
    anonymous_producers: ["*"]
    read_timeout_s: 1
    rate_limits: {limited: 5}
    rate_limit_burst_s: 2
sinks:
  files:
    type: jsonl
    inputs: [in, _deadletter]
    directory: OUT
"""


def post(
    url: str, body: bytes, content_type: str = "application/json"
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def env(n: int, producer: str = "panda", **extra: Any) -> dict[str, Any]:
    return {
        "producer": producer,
        "type": "jobs",
        "timestamp": int(time.time()) + n % 60,
        "data": {"n": n},
        **extra,
    }


def nested(levels: int) -> Any:
    """``levels`` levels of objects and arrays, alternating, around a number."""
    value: Any = 1
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


def deep_text(levels: int) -> str:
    """``levels`` nested arrays as JSON text (json.dumps itself would recurse)."""
    return "[" * levels + "]" * levels


def topic_lines(bus: SqliteBus, topic: str) -> list[Any]:
    return [msgspec.json.decode(line) for s in bus.read(topic, 0, 100_000) for line in s.lines]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:  # noqa: S310
        return str(response.read().decode())


@pytest.fixture
def server(tmp_path: Path, gridwatch_process: Any) -> Any:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.replace("OUT", str(tmp_path / "out")))
    return gridwatch_process(pipeline, tmp_path / "data").start()


def test_deep_records_are_rejected_alone_and_dead_lettered_as_text(server: Any) -> None:
    url = server.url + "/ingest"
    bus = SqliteBus(server.data_dir / "bus.db")
    at_limit = env(1, data={"n": 1, "a": nested(63)})  # data itself is level 1: 64 levels
    over = env(2, data={"n": 2, "a": nested(64)})
    status, body, _ = post(url, json.dumps([env(0), at_limit, over, env(3)]).encode())
    assert status == 207
    assert body == {
        "accepted": 3,
        "rejected": [{"index": 2, "reason": "$[2].data: nested deeper than 64 levels"}],
    }

    # Far past Python's recursion limit, in NDJSON: rejected alone, kept as text.
    deep_line = f'{{"producer": "panda", "type": "jobs", "data": {{"a": {deep_text(5000)}}}}}'
    ndjson = f"{json.dumps(env(4))}\n{deep_line}\n".encode()
    status, body, _ = post(url, ndjson, "application/x-ndjson")
    assert (status, body["accepted"]) == (207, 1)
    assert body["rejected"] == [{"index": 1, "reason": "$[1].data: nested deeper than 64 levels"}]

    # Rejected for another reason (an unknown field), 5,000 deep: its dead letter is its text.
    unknown = '{"producer": "panda", "type": "jobs", "x": ' + deep_text(5000) + "}"
    status, body, _ = post(url, unknown.encode())
    assert status == 400
    assert body["rejected"][0]["reason"] == "$[0]: Object contains unknown field `x`"

    # The endpoint is still there, at once.
    assert post(url, json.dumps(env(5)).encode())[:2] == (200, {"accepted": 1, "rejected": []})
    assert get_json(server.url + "/health")["components"]["in"] == {
        "kind": "source",
        "state": "running",
        "starts": 1,
    }
    assert sorted(r["data"]["n"] for r in topic_lines(bus, "panda_raw_jobs")) == [0, 1, 3, 4, 5]
    originals = [letter["data"]["record"] for letter in topic_lines(bus, DEADLETTER_TOPIC)]
    assert originals == [json.dumps(over), deep_line, unknown]
    assert 'gridwatch_dropped_total{component="in",kind="source"} 3' in metrics(server.url)


@pytest.mark.parametrize(
    "body",
    [
        deep_text(1000).encode(),
        ("[" + json.dumps(env(0)) + "," + deep_text(5000) + "]").encode(),
        ('{"producer": "panda", "type": "jobs", "data": {"a": ' + deep_text(1000) + "}}").encode(),
    ],
    ids=["array-1000", "array-with-5000-deep-item", "object-1000"],
)
def test_a_body_nested_too_deep_is_a_400_with_the_reason(server: Any, body: bytes) -> None:
    status, answer, _ = post(server.url + "/ingest", body)
    assert status == 400
    reason = answer.get("error") or answer["rejected"][0]["reason"]
    assert "nest" in reason and "64 levels" in reason
    assert post(server.url + "/ingest", json.dumps(env(1)).encode())[0] == 200


def test_timestamps_beyond_year_9999_or_before_year_1_are_rejected_alone(server: Any) -> None:
    url = server.url + "/ingest"
    envelopes = [
        env(0),
        env(1, timestamp=1e17),
        env(2, timestamp=-1e17),
        env(3, timestamp=10**30),
        env(4, timestamp="99999-01-01T00:00:00Z"),
        env(5),
    ]
    status, body, _ = post(url, json.dumps(envelopes).encode())
    assert (status, body["accepted"]) == (207, 2)
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 4]
    assert all(r["reason"].startswith(f"$[{r['index']}].timestamp: ") for r in body["rejected"])
    bus = SqliteBus(server.data_dir / "bus.db")
    assert sorted(r["data"]["n"] for r in topic_lines(bus, "panda_raw_jobs")) == [0, 5]
    assert len(topic_lines(bus, DEADLETTER_TOPIC)) == 4


def test_names_ending_in_a_newline_are_rejected_and_never_become_files(server: Any) -> None:
    url = server.url + "/ingest"
    envelopes = [env(0, producer="panda\n"), env(1, type="jobs\n"), env(2)]
    status, body, _ = post(url, json.dumps(envelopes).encode())
    assert (status, body["accepted"]) == (207, 1)
    assert [r["reason"].split(":")[0] for r in body["rejected"]] == ["$[0].producer", "$[1].type"]
    bus = SqliteBus(server.data_dir / "bus.db")
    assert not [topic for topic in bus.topics() if "\n" in topic]


def trickle(port: int, head: bytes, slowly: bytes, every_s: float) -> tuple[bytes, bool]:
    """Send ``head``, then ``slowly`` one byte every ``every_s`` until the server answers;
    return the answer and whether the server closed the connection after it (a reset counts:
    bytes sent while it closed)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for byte in slowly:
            readable, _, _ = select.select([sock], [], [], every_s)
            if readable:
                break
            sock.sendall(bytes([byte]))
        try:
            while chunk := sock.recv(65536):  # the socket's timeout bounds each wait
                answer += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            return answer, False
    return answer, True


def request_head(length: int) -> bytes:
    return (
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_client_trickling_its_body_gets_408_and_is_disconnected(server: Any) -> None:
    body = json.dumps(env(0)).encode().ljust(100)
    answer, closed = trickle(server.port, request_head(len(body)), body, every_s=0.2)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive within 1 s" in answer
    assert closed
    assert post(server.url + "/ingest", json.dumps(env(1)).encode())[0] == 200
    bus = SqliteBus(server.data_dir / "bus.db")
    assert [r["data"]["n"] for r in topic_lines(bus, "panda_raw_jobs")] == [1]


def test_a_client_trickling_its_headers_gets_408_and_is_disconnected(server: Any) -> None:
    unfinished = request_head(2)[:-2]  # no blank line: the headers go on...
    answer, closed = trickle(server.port, unfinished, b"X-Slow: " + b"a" * 200, every_s=0.2)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"the request headers took too long\n")
    assert closed
    # A request whose headers arrive in time is served as before, however slowly it is read.
    status, body, _ = post(server.url + "/ingest", json.dumps(env(1)).encode())
    assert (status, body) == (200, {"accepted": 1, "rejected": []})


def test_a_producer_over_its_rate_limit_gets_429_and_nothing_is_appended(server: Any) -> None:
    url = server.url + "/ingest"
    bus = SqliteBus(server.data_dir / "bus.db")
    # 5 records/s with a 2 s burst: the bucket holds 10.
    batch = [env(n, producer="limited") for n in range(10)]
    assert post(url, json.dumps(batch).encode())[0] == 200

    mixed = [env(n, producer="limited") for n in range(10, 13)] + [env(13, producer="other")]
    status, body, headers = post(url, json.dumps(mixed).encode())
    assert status == 429
    assert "limited (5/s)" in body["error"] and "nothing was accepted" in body["error"]
    retry_after = int(headers["Retry-After"])
    assert retry_after >= 1 and 0 < body["retry_after_s"] <= retry_after
    assert len(topic_lines(bus, "limited_raw_jobs")) == 10
    assert topic_lines(bus, "other_raw_jobs") == []  # nothing of the refused request

    assert post(url, json.dumps(env(14, producer="other")).encode())[0] == 200  # no limit
    time.sleep(retry_after)  # as a client does: wait as told, then retry
    assert post(url, json.dumps(mixed).encode())[0] == 200
    assert len(topic_lines(bus, "limited_raw_jobs")) == 13
    text = metrics(server.url)
    assert 'gridwatch_rate_limited_total{component="in",kind="source"} 4' in text
    assert 'gridwatch_refused_requests_total{component="in",kind="source"} 1' in text
