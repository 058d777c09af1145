"""A sink that appends envelopes as NDJSON files, one file per topic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from gridwatch.bus.base import joined
from gridwatch.components import Batch, Sink, SinkConfig, WriteResult


class JsonlConfig(SinkConfig):
    """Settings of the ``jsonl`` sink."""

    directory: Path = Field(description="Where the files go; one `{topic}.jsonl` per topic.")
    fsync: bool = Field(True, description="fsync the files before offsets are committed.")


class JsonlSink(Sink):
    """Appends each batch's envelope lines to ``{directory}/{topic}.jsonl``.

    The lines are written as they are on the bus, without decoding them.
    """

    Config = JsonlConfig
    config: JsonlConfig

    def open(self, state: Any) -> None:
        self.files: dict[str, IO[bytes]] = {}

    def _file(self, topic: str) -> IO[bytes]:
        handle = self.files.get(topic)
        if handle is None:
            self.config.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.config.directory / f"{topic}.jsonl", "ab")  # noqa: SIM115
            self.files[topic] = handle
        return handle

    def write(self, batch: Batch) -> WriteResult:
        handle = self._file(batch.topic)
        handle.write(joined(batch.lines) + b"\n")
        handle.flush()
        return WriteResult()

    def prepare_commit(self) -> Any:
        if self.config.fsync:
            for handle in self.files.values():
                os.fsync(handle.fileno())
        return None

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()
