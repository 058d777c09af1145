"""Child processes: started in their own process group, their output's tail kept, stopped whole.

Every child gets ``PR_SET_PDEATHSIG`` (Linux) so that it dies with the scheduler: a killed
leader leaves no orphan behind to run a slot a second time next to the new leader's run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class OutputTail:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        """Append, dropping the oldest bytes beyond the limit."""
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]
            self.truncated = True

    def value(self) -> bytes:
        """What is kept."""
        return bytes(self.data)


class Child:
    """A running child process whose stdout and stderr go to an :class:`OutputTail`.

    With ``split_stdout`` the child's stdout is left for the caller (:attr:`stdout`).
    """

    def __init__(self, proc: asyncio.subprocess.Process, output: OutputTail) -> None:
        self.proc = proc
        self.output = output
        self.stdout = proc.stdout if proc.stderr is not None else None
        stream = proc.stderr if proc.stderr is not None else proc.stdout
        self._pump = asyncio.ensure_future(self._read(stream))

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self.proc.pid

    async def _read(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.output.add(chunk)

    async def wait(self) -> int:
        """Wait for the exit and for the rest of the output; return the exit code."""
        code = await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pump, 5.0)
        return code

    def signal_group(self, signum: int) -> None:
        """Send a signal to the child's whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM the group, SIGKILL it after ``grace_s``; return the exit code."""
        if self.proc.returncode is None:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace_s)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
        code = await self.wait()
        self.signal_group(signal.SIGKILL)  # anything the child left behind in its group
        return code


async def spawn(
    argv: Sequence[str],
    environment: Mapping[str, str],
    working_dir: str | None,
    output_limit: int,
    split_stdout: bool = False,
) -> Child:
    """Start ``argv`` (no shell) with extra ``environment``; raises OSError if it cannot."""
    env = dict(os.environ)
    env.update(environment)
    preexec: Callable[[], None] | None = _die_with_parent
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if split_stdout else asyncio.subprocess.STDOUT,
        env=env,
        cwd=working_dir,
        start_new_session=True,
        preexec_fn=preexec,
        limit=1024 * 1024 * 16,
    )
    return Child(proc, OutputTail(output_limit))
