"""Shared test helpers: free ports, temporary pipelines and real `gridwatch run` processes."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
GRIDWATCH_EXE = Path(sys.executable).with_name("gridwatch")  # the venv's console script


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``gridwatch ARGS`` as a user runs it, from this checkout's sources (``env``: extra
    environment variables)."""
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC), **(env or {})),
        cwd=cwd,
        timeout=60,
        check=False,
    )


def run_installed(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``gridwatch ARGS`` through the console script installed in this virtual environment."""
    return subprocess.run(
        [str(GRIDWATCH_EXE), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=60,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 20.0, cafile: Path | None = None) -> None:
    """Wait until ``url`` answers (any status), or fail the test; an https ``url`` is
    verified against the CA in ``cafile``."""
    context = ssl.create_default_context(cafile=cafile) if cafile is not None else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{url} did not answer within {timeout_s} s")


class GridwatchProcess:
    """``gridwatch run FILE`` as a real child process, with its log kept in a file.

    With ``cafile`` the pipeline serves HTTPS (its ``server.tls``) with a certificate that
    this CA signed: :attr:`url` is https and the start waits for ``/health`` over TLS.
    """

    def __init__(
        self,
        pipeline: Path,
        data_dir: Path,
        port: int | None = None,
        cafile: Path | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self.port = port or free_port()
        self.cafile = cafile
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cafile is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> GridwatchProcess:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridwatch",
                "run",
                str(self.pipeline),
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        if wait:
            wait_http(self.url + "/health", cafile=self.cafile)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful path."""
        return self.kill(signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def gridwatch_process(tmp_path: Path) -> Iterator[type[GridwatchProcess]]:
    """A factory of gridwatch processes that are all killed when the test ends."""
    started: list[GridwatchProcess] = []

    class Tracked(GridwatchProcess):
        def start(self, wait: bool = True) -> GridwatchProcess:
            started.append(self)
            return super().start(wait)

    yield Tracked
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
