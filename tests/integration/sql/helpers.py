"""Shared pieces of the SQL source tests: databases, a source on a real bus, a TCP proxy."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.clock import SYSTEM_CLOCK, Clock
from gridwatch.components import Context, SourceBatch
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, decode_lines, encode_lines
from gridwatch.sim.panda import PandaSimulator, panda_query
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from gridwatch.sources.sql_incremental.source import SqlIncrementalSource

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"
BACKENDS = ["sqlite", "postgresql", "mariadb"]


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function in its own event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@dataclass
class Db:
    """One test's database: a URL and a private schema (none for SQLite)."""

    backend: str
    url: str
    schema: str | None

    def simulator(self, **options: Any) -> PandaSimulator:
        sim = PandaSimulator(self.url, schema=self.schema, **options)
        sim.create(drop=True)
        return sim

    def query(self, sim: PandaSimulator) -> str:
        return panda_query(sim.dialect, self.schema)

    def with_port(self, port: int) -> str:
        """The URL through another port on 127.0.0.1 (a proxy)."""
        default = "5432" if self.backend == "postgresql" else "3306"
        return self.url.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")


def make_db(backend: str, tmp_path: Path) -> Db:
    schema = f"gw_sql_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        return Db(backend, f"sqlite:///{tmp_path / 'panda.db'}", None)
    return Db(backend, PG if backend == "postgresql" else MARIADB, schema)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """A private PanDA schema in SQLite, PostgreSQL or MariaDB, dropped afterwards."""
    database = make_db(request.param, tmp_path)
    yield database
    if database.schema:
        PandaSimulator(database.url, schema=database.schema).drop()


class Harness:
    """A source wired to a real SQLite bus, delivering as the runtime does."""

    def __init__(
        self, tmp_path: Path, config: SqlIncrementalConfig, host_clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.config = config
        self.bus = SqliteBus(tmp_path / "bus.db")
        self.metrics = Metrics()
        self.context = Context(
            data_dir=tmp_path,
            metrics=self.metrics,
            bus=self.bus,
            decoder=EnvelopeDecoder(),
            clock=host_clock,
        )
        self.source: SqlIncrementalSource | None = None
        self.clock: Any = None

    async def start(self) -> SqlIncrementalSource:
        """A fresh source opened at the bus's stored position (as after a restart)."""
        if self.source is not None:
            await self.source.close()
        source = SqlIncrementalSource("panda", self.config, self.context)
        if self.clock is not None:
            source.clock = self.clock
        await source.open(self.bus.position("panda"))
        self.source = source
        return source

    def deliver(self, batch: SourceBatch) -> None:
        lines = encode_lines(batch.records)
        entries = [("panda_raw_all", "panda", lines)] if lines else []
        self.bus.append(entries, ("panda", batch.position))

    async def round(self) -> int:
        """One read round, every batch appended with its position; return records read."""
        assert self.source is not None
        count = 0
        async for batch in self.source.read_round():
            self.deliver(batch)
            count += len(batch.records)
        return count

    def delivered(self) -> list[dict[str, Any]]:
        """Every record on the bus, in order, as (``_id``, data)."""
        out = []
        offset = 0
        while True:
            slices = self.bus.read("panda_raw_all", offset, 10_000)
            if not slices:
                return out
            for piece in slices:
                out.extend({"_id": r.id, **r.data} for r in decode_lines(piece.lines))
                offset = piece.end

    async def close(self) -> None:
        if self.source is not None:
            await self.source.close()
        self.bus.close()


def config(db: Db, sim: PandaSimulator, **options: Any) -> SqlIncrementalConfig:
    settings: dict[str, Any] = {
        "url": db.url,
        "query": db.query(sim),
        "min_interval_s": 0,
        "safety_lag_s": 0,
    }
    settings.update(options)
    return SqlIncrementalConfig(**settings)


class TcpProxy:
    """A TCP proxy on 127.0.0.1 that can be dropped (refusing and cutting connections)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def up(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

        self._run(start())

    def down(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in list(self.writers):
                writer.transport.abort()
            self.writers.clear()

        self._run(stop())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self.server is None:  # dropped while this connection was being made: cut it too
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.discard(writer)
        self.writers.discard(up_writer)

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
