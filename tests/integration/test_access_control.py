"""Tokens, roles and TLS on a real `gridwatch run` process, through real HTTPS clients."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import GridwatchProcess, free_port, run_cli
from tests.tls_support import TlsFiles, make_tls_files

pytestmark = pytest.mark.integration

OPS = "ops-token-0123456789abcdef"  # read, write, admin
VIEWER = "viewer-token-0123456789abc"  # read
FEEDER = "feeder-token-0123456789abc"  # write
PANDA = "panda-producer-token-012345"  # the http source's own token for producer panda

PIPELINE = """\
server:
  tokens:
    - {name: ops, token: "${file:ops.token}", roles: [read, write, admin]}
    - {name: viewer, token: "${file:viewer.token}", roles: [read]}
    - {name: feeder, token: "${file:feeder.token}", roles: [write]}
  tls: {certificate: tls/server.pem, key: tls/server.key}
sources:
  in:
    type: http
    tokens: [{name: panda, token: "${file:panda.token}", producers: [panda]}]
    anonymous_producers: [public]
sinks:
  files: {type: jsonl, inputs: [in], directory: OUT_DIR}
schedule:
  tasks:
    hello: {schedule: "@yearly", command: [sh, -c, "echo hello"]}
"""


@dataclass
class Secured:
    """A running gridwatch with tokens and TLS, and what a client needs to talk to it."""

    proc: GridwatchProcess
    tls: TlsFiles
    directory: Path

    @property
    def url(self) -> str:
        return self.proc.url

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls.ca)


def write_pipeline(directory: Path, text: str = PIPELINE) -> tuple[Path, TlsFiles]:
    (directory / "tls").mkdir(exist_ok=True)
    tls = make_tls_files(directory / "tls")
    for name, token in (("ops", OPS), ("viewer", VIEWER), ("feeder", FEEDER), ("panda", PANDA)):
        (directory / f"{name}.token").write_text(token + "\n")
    pipeline = directory / "pipeline.yaml"
    pipeline.write_text(text.replace("OUT_DIR", str(directory / "out")))
    return pipeline, tls


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("secured")
    pipeline, tls = write_pipeline(directory)
    proc = GridwatchProcess(pipeline, directory / "data", cafile=tls.ca)
    try:
        proc.start()
        yield Secured(proc, tls, directory)
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            assert proc.stop() == 0, proc.log()


def call(
    secured: Secured,
    path: str,
    token: str | None = None,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTPS request verified against the test CA."""
    request = urllib.request.Request(secured.url + path, data=body, method=method)  # noqa: S310
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30, context=secured.context()) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_tls_is_served_and_verified(secured: Secured) -> None:
    status, _, body = call(secured, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    with socket_to(secured) as tls_socket:
        assert tls_socket.version() in ("TLSv1.2", "TLSv1.3")
        assert tls_socket.getpeercert()["subjectAltName"] == (  # type: ignore[index]
            ("IP Address", "127.0.0.1"),
            ("DNS", "localhost"),
        )
    # A client that does not trust the test CA refuses the certificate.
    with pytest.raises(urllib.error.URLError) as untrusted:
        urllib.request.urlopen(secured.url + "/health", timeout=10)  # noqa: S310
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
    # Plain HTTP to the TLS port gets no HTTP answer.
    plain = http.client.HTTPConnection("127.0.0.1", secured.proc.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain.request("GET", "/health")
        plain.getresponse()
    plain.close()


@contextlib.contextmanager
def socket_to(secured: Secured) -> Iterator[ssl.SSLSocket]:
    """A TLS socket to the server, verified against the test CA."""
    raw = socket.create_connection(("127.0.0.1", secured.proc.port), timeout=10)
    with secured.context().wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket:
        yield tls_socket


def test_health_stays_open_and_read_routes_need_the_read_role(secured: Secured) -> None:
    assert call(secured, "/health")[0] == 200
    for path in ("/api/v1/status", "/metrics", "/api/v1/tasks", "/", "/api/v1/pipeline"):
        status, headers, body = call(secured, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == 'Bearer realm="gridwatch"'
        assert "send Authorization: Bearer TOKEN" in json.loads(body)["error"]

        status, headers, _ = call(secured, path, token="not-a-token-of-this-server")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Bearer realm="gridwatch", error="invalid_token"'

        status, headers, body = call(secured, path, token=FEEDER)
        assert status == 403
        assert json.loads(body) == {"error": "token 'feeder' lacks the read role"}
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]

        assert call(secured, path, token=VIEWER)[0] == 200, path
    status, _, body = call(secured, "/api/v1/status", token=VIEWER)
    assert json.loads(body) == {"modules": [], "counts": {}}
    # Paths that match no route need the read role too, so they cannot be probed.
    assert call(secured, "/api/v1/nothing")[0] == 401
    # (405: ingestion's route takes a POST to any path)
    assert call(secured, "/api/v1/nothing", token=VIEWER)[0] == 405


def ingest(secured: Secured, producer: str, token: str | None) -> tuple[int, Any]:
    async def post() -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        envelope = {"producer": producer, "type": "jobs", "timestamp": 1_700_000_000, "data": {}}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                secured.url + "/ingest", json=envelope, headers=headers, ssl=secured.context()
            ) as answer,
        ):
            return answer.status, await answer.json(content_type=None)

    return asyncio.run(post())


def test_ingestion_needs_write_then_the_sources_own_producer_check(secured: Secured) -> None:
    # No token: the server wants write, although the source takes anonymous 'public'.
    assert ingest(secured, "public", None)[0] == 401
    assert ingest(secured, "public", VIEWER) == (
        403,
        {"error": "token 'viewer' lacks the write role"},
    )
    # A server token with write passes; the source then treats it as carrying no producer
    # token: its anonymous producers only.
    assert ingest(secured, "public", FEEDER) == (200, {"accepted": 1, "rejected": []})
    status, answer = ingest(secured, "panda", FEEDER)
    assert status == 403
    assert answer["error"] == "anonymous may not write producer(s) panda; nothing was accepted"
    # The source's own producer token is judged by the source.
    assert ingest(secured, "panda", PANDA) == (200, {"accepted": 1, "rejected": []})
    assert ingest(secured, "public", PANDA)[0] == 403
    assert ingest(secured, "panda", "unknown-to-everyone-0123")[0] == 401

    out = secured.directory / "out"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(written(out)) < 2:
        time.sleep(0.1)
    assert sorted(written(out)) == ["panda", "public"]


def written(out: Path) -> list[str]:
    return [
        json.loads(line)["producer"]
        for path in sorted(out.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_manual_runs_and_reload_need_the_admin_role(secured: Secured) -> None:
    for path in ("/api/v1/tasks/hello/run", "/api/v1/reload"):
        assert call(secured, path, method="POST")[0] == 401
        status, _, body = call(secured, path, token=VIEWER, method="POST")
        assert status == 403
        assert json.loads(body) == {"error": "token 'viewer' lacks the admin role"}
    status, _, body = call(secured, "/api/v1/tasks/hello/run", token=OPS, method="POST")
    assert (status, json.loads(body)) == (202, {"task": "hello", "result": "started"})
    status, _, body = call(secured, "/api/v1/reload", token=OPS, method="POST")
    assert status == 200
    assert json.loads(body) == {
        "applied": True,
        "components": [],
        "schedule": [],
        "restart_needed": [],
    }
    assert "POST /api/v1/tasks/hello/run by ops" in secured.proc.log()


def test_a_browser_signs_in_and_its_cookie_only_reads(secured: Secured) -> None:
    async def browse() -> None:
        context = secured.context()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            html = {"Accept": "text/html"}
            async with browser.get(secured.url + "/", ssl=context, headers=html) as page:
                assert page.status == 401
                assert "<a href=/login>Sign in</a>" in await page.text()
            async with browser.get(secured.url + "/login", ssl=context) as form:
                assert form.status == 200
                assert 'type="password" name="token"' in await form.text()
            async with browser.post(
                secured.url + "/login", data={"token": "wrong-token-0123456789"}, ssl=context
            ) as refused:
                assert refused.status == 401
                assert "Unknown token." in await refused.text()
            async with browser.post(
                secured.url + "/login", data={"token": "x" * 5000}, ssl=context
            ) as oversized:
                assert oversized.status == 413
            async with browser.post(
                secured.url + "/login", data={"token": OPS}, ssl=context, allow_redirects=False
            ) as signed_in:
                assert signed_in.status == 303 and signed_in.headers["Location"] == "/"
                cookie = signed_in.headers["Set-Cookie"]
                for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
                    assert attribute in cookie
                assert OPS not in cookie
            async with browser.get(secured.url + "/", ssl=context) as page:
                assert page.status == 200
                assert "<title>gridwatch</title>" in await page.text()
            async with browser.get(secured.url + "/api/v1/status", ssl=context) as status:
                assert status.status == 200
            # The cookie never counts for a POST: no ingestion, no task run, no reload.
            async with browser.post(secured.url + "/api/v1/reload", ssl=context) as reload:
                assert reload.status == 401
            async with browser.get(
                secured.url + "/logout", ssl=context, allow_redirects=False
            ) as out:
                assert out.status == 303
            async with browser.get(
                secured.url + "/api/v1/status", ssl=context, allow_redirects=False
            ) as gone:
                assert gone.status == 401
        async with (
            aiohttp.ClientSession(cookies={"gridwatch_session": "forged"}) as forger,
            forger.get(secured.url + "/api/v1/status", ssl=context) as forged,
        ):
            assert forged.status == 401
            assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]

    asyncio.run(browse())


def test_commands_take_a_token_and_a_ca(secured: Secured) -> None:
    ca = str(secured.tls.ca)
    url = ["--url", secured.url, "--cafile", ca]
    listing = run_cli("tasks", "list", *url, "--token", VIEWER)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[2].split()[:2] == ["hello", "task"]
    anonymous = run_cli("tasks", "list", *url)
    assert anonymous.returncode == 2
    assert "401" in anonymous.stderr and "give --token or set GRIDWATCH_TOKEN" in anonymous.stderr
    untrusted = run_cli("tasks", "list", "--url", secured.url, "--token", VIEWER)
    assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    as_viewer = run_cli("tasks", *url, "run", "hello", "--token", VIEWER)
    assert as_viewer.returncode == 2 and "token 'viewer' lacks the admin role" in as_viewer.stderr
    as_ops = run_cli("tasks", *url, "run", "hello", env={"GRIDWATCH_TOKEN": OPS})
    assert (as_ops.returncode, as_ops.stdout) == (0, "hello: started\n")
    reload = run_cli("reload", *url, env={"GRIDWATCH_TOKEN": OPS})
    assert (reload.returncode, reload.stdout) == (0, "reload applied: no changes\n")


def test_reload_applies_token_changes_and_refuses_a_broken_file(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    anonymous_read = PIPELINE.replace("  tokens:\n", "  anonymous_roles: [read]\n  tokens:\n")
    pipeline, tls = write_pipeline(tmp_path, anonymous_read)
    text = pipeline.read_text()
    proc = gridwatch_process(pipeline, tmp_path / "data", cafile=tls.ca).start()
    secured = Secured(proc, tls, tmp_path)
    assert call(secured, "/api/v1/status")[0] == 200  # anonymous may read
    assert call(secured, "/api/v1/reload", method="POST")[0] == 401

    # Revoke the viewer's token, add a task: both apply at once.
    changed = text.replace(
        '    - {name: viewer, token: "${file:viewer.token}", roles: [read]}\n', ""
    )
    changed += '    bye: {schedule: "@yearly", command: [sh, -c, "echo bye"]}\n'
    pipeline.write_text(changed)
    reload = run_cli("reload", "--url", proc.url, "--cafile", str(tls.ca), "--token", OPS)
    assert (reload.returncode, reload.stdout) == (0, "reload applied: schedule: bye\n")
    assert call(secured, "/api/v1/tasks", token=VIEWER)[0] == 401
    assert call(secured, "/api/v1/tasks", token=OPS)[0] == 200

    pipeline.write_text(changed.replace("roles: [write]", "roles: [root]"))
    status, _, body = call(secured, "/api/v1/reload", token=OPS, method="POST")
    assert status == 422
    (problem,) = json.loads(body)["problems"]
    assert problem.endswith("server.tokens[1].roles[0]: Input should be 'read', 'write' or 'admin'")
    refused = run_cli("reload", "--url", proc.url, "--cafile", str(tls.ca), "--token", OPS)
    assert refused.returncode == 1
    assert refused.stderr.startswith("reload refused, the running pipeline stays:\n  ")
    assert call(secured, "/api/v1/tasks", token=OPS)[0] == 200  # the running settings stay

    pipeline.write_text(changed.replace("tls/server.pem", "tls/other.pem"))
    moved = run_cli("reload", "--url", proc.url, "--cafile", str(tls.ca), "--token", OPS)
    assert moved.stdout == "reload applied: after a restart only: server.tls\n"
    assert proc.stop() == 0


def test_a_bad_certificate_stops_the_start(tmp_path: Path) -> None:
    pipeline, tls = write_pipeline(tmp_path)
    tls.key.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    listen = f"127.0.0.1:{free_port()}"
    started = run_cli(
        "run", str(pipeline), "--data-dir", str(tmp_path / "data"), "--listen", listen
    )
    assert started.returncode == 2
    assert f"gridwatch: server.tls.key: {tls.key} is not a usable private key" in started.stderr
