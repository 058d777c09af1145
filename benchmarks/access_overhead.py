"""What checking tokens and serving TLS cost a request, next to an open server in the same run.

Three real `gridwatch run` processes serve the same pipeline: open (no tokens: the baseline),
with tokens over HTTP, and with tokens over HTTPS. One client sends GET /api/v1/status (the
cheapest read, so the check's share is the largest) on one keep-alive connection, in rounds that
take turns between the servers, and prints the best and the median round of each.

    .venv/bin/python -m benchmarks.access_overhead [--requests 500] [--rounds 11]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import trustme

from benchmarks._machine import describe

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "benchmark-token-0123456789abcdef"  # noqa: S105 - made up for the run
SOURCES = """
sources:
  in: {type: http, anonymous_producers: ["*"]}
sinks:
  out: {type: jsonl, inputs: [in], directory: out}
"""
SERVERS = {
    "open (baseline)": "",
    "tokens, HTTP": "server:\n  tokens: [{name: b, token: '${file:token}', roles: [read]}]\n",
    "tokens, HTTPS": "server:\n  tokens: [{name: b, token: '${file:token}', roles: [read]}]\n"
    "  tls: {certificate: server.pem, key: server.key}\n",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    directory: Path, server: str, context: ssl.SSLContext
) -> tuple[subprocess.Popen[bytes], str]:
    """A `gridwatch run` of the pipeline with ``server`` settings; its process and base URL."""
    directory.mkdir(exist_ok=True)
    (directory / "p.yaml").write_text(server + SOURCES)
    (directory / "token").write_text(TOKEN)
    port = free_port()
    scheme = "https" if "tls:" in server else "http"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridwatch", "--log-level", "error", "run", "p.yaml",
         "--data-dir", "data", "--listen", f"127.0.0.1:{port}"],
        cwd=directory,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1, context=context).close()  # noqa: S310
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gridwatch did not start in {directory}")


async def rate(url: str, requests: int, context: ssl.SSLContext) -> float:
    """Requests per second of ``requests`` sequential GETs on one connection."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=1, ssl=context)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        for _ in range(50):  # warm up (and the TLS handshake)
            async with session.get(url + "/api/v1/status") as answer:
                await answer.read()
        started = time.perf_counter()
        for _ in range(requests):
            async with session.get(url + "/api/v1/status") as answer:
                if answer.status != 200:
                    raise RuntimeError(f"{url}: HTTP {answer.status}")
                await answer.read()
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="gw-bench-access-") as tmp:
        root = Path(tmp)
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        running = []
        try:
            for index, (name, server) in enumerate(SERVERS.items()):
                directory = root / f"server{index}"
                directory.mkdir()
                issued.private_key_pem.write_to_path(str(directory / "server.key"))
                issued.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
                running.append((name, *start(directory, server, context)))
            rates: dict[str, list[float]] = {name: [] for name in SERVERS}
            for _ in range(args.rounds):
                for name, _, url in running:
                    rates[name].append(asyncio.run(rate(url, args.requests, context)))
        finally:
            for _, proc, _ in running:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    # The best round is the one least disturbed by other work on a shared machine.
    best_baseline = max(rates["open (baseline)"])
    median_baseline = statistics.median(rates["open (baseline)"])
    for name, values in rates.items():
        best, median = max(values), statistics.median(values)
        print(
            f"GET /api/v1/status, {name:16}: best {best:5.0f} requests/s "
            f"({best / best_baseline:.2f}x the open server), median {median:5.0f} "
            f"({median / median_baseline:.2f}x)"
        )


if __name__ == "__main__":
    main()
