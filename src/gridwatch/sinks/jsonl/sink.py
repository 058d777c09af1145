"""A sink that appends envelopes as NDJSON files, one file per topic, exactly once.

Each commit stores every file's size with the consumed offsets. On a restart the files are cut
back to those sizes (dropping a torn last line and whatever was written after the last commit),
and the bus hands those records over again: no line is lost, none is written twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from gridwatch.bus.base import joined
from gridwatch.components import Batch, Sink, SinkConfig, WriteResult

TAIL_CHUNK = 1 << 16
"""Bytes read at a time, from the end, to find a file's last complete line."""


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
        # Sizes at the last commit; None: a bus written before sizes were kept.
        self.sizes: dict[str, int] | None = dict(state["sizes"]) if state else None

    def _file(self, topic: str) -> IO[bytes]:
        handle = self.files.get(topic)
        if handle is None:
            self.config.directory.mkdir(parents=True, exist_ok=True)
            path = self.config.directory / f"{topic}.jsonl"
            handle = open(path, "ab")  # noqa: SIM115
            handle.truncate(self._committed_size(path, topic))
            handle.seek(0, os.SEEK_END)
            self.files[topic] = handle
        return handle

    def _committed_size(self, path: Path, topic: str) -> int:
        """How much of the file to keep: its size at the last commit, or up to its last
        complete line when no size was stored."""
        size = path.stat().st_size
        if self.sizes is not None:
            return min(self.sizes.get(topic, 0), size)
        with path.open("rb") as existing:
            end = size
            while end > 0:
                start = max(0, end - TAIL_CHUNK)
                existing.seek(start)
                newline = existing.read(end - start).rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                end = start
        return 0

    def write(self, batch: Batch) -> WriteResult:
        handle = self._file(batch.topic)
        handle.write(joined(batch.lines) + b"\n")
        handle.flush()
        return WriteResult()

    def prepare_commit(self) -> Any:
        sizes = dict(self.sizes or {})
        for topic, handle in self.files.items():
            if self.config.fsync:
                os.fsync(handle.fileno())
            sizes[topic] = handle.tell()
        self.sizes = sizes
        return {"sizes": sizes}

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()
