"""Health checks of a service: HTTP, a command, and data liveness on the bus."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from gridwatch.bus.base import Bus
from gridwatch.config.schedule import DataCheck, HealthConfig
from gridwatch.scheduler.process import spawn


class HealthChecker:
    """Runs every configured check once per :meth:`check`; remembers data progress."""

    def __init__(self, config: HealthConfig, bus: Bus, environment: dict[str, str]) -> None:
        self.config = config
        self.bus = bus
        self.environment = environment
        self._topic_end = -1
        self._progress_at = time.monotonic()

    def restart(self) -> None:
        """The service (re)started: data silence counts from now."""
        self._progress_at = time.monotonic()

    async def check(self) -> str | None:
        """``None`` when healthy, else what failed."""
        cfg = self.config
        if cfg.http is not None:
            problem = await self._http(cfg.http.url)
            if problem:
                return problem
        if cfg.command is not None:
            problem = await self._command(cfg.command)
            if problem:
                return problem
        if cfg.data is not None:
            return await asyncio.to_thread(self._data, cfg.data)
        return None

    async def _http(self, url: str) -> str | None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url) as response,
            ):
                if 200 <= response.status < 400:
                    return None
                return f"GET {url} answered {response.status}"
        except TimeoutError:
            return f"GET {url} took longer than {self.config.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"GET {url} failed: {exc}"

    async def _command(self, argv: list[str]) -> str | None:
        try:
            child = await spawn(argv, self.environment, None, 2000)
        except OSError as exc:
            return f"health command {argv[0]!r} cannot start: {exc.strerror}"
        try:
            code = await asyncio.wait_for(child.wait(), self.config.timeout_s)
        except TimeoutError:
            await child.stop(1.0)
            return f"health command took longer than {self.config.timeout_s:g} s"
        if code != 0:
            tail = child.output.value()[-200:].decode(errors="replace").strip()
            return f"health command exited {code}" + (f": {tail}" if tail else "")
        return None

    def _data(self, data: DataCheck) -> str | None:
        if data.max_silence_s is not None:
            infos = self.bus.topics()
            end = sum(infos[t].end for t in data.topics if t in infos)
            now = time.monotonic()
            if end != self._topic_end:
                self._topic_end = end
                self._progress_at = now
            elif now - self._progress_at > data.max_silence_s:
                silent = now - self._progress_at
                return f"no new records on {', '.join(data.topics)} for {silent:.0f} s"
        if data.max_lag_records is not None and data.consumer_group is not None:
            topics = list(self.bus.committed(data.consumer_group).offsets)
            lag = self.bus.lag(data.consumer_group, topics) if topics else 0
            if lag > data.max_lag_records:
                return f"consumer group {data.consumer_group} lags {lag} records"
        return None
