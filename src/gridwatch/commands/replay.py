"""``gridwatch replay``: read the Parquet archive back, to NDJSON on stdout or onto the bus."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from gridwatch.commands.options import PATH, examples
from gridwatch.errors import ConfigurationError
from gridwatch.record import RecordError, to_epoch_ms

if TYPE_CHECKING:
    from gridwatch.archive.layout import ArchiveFilter, Partition


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return to_epoch_ms(value)
    except RecordError as exc:
        raise ConfigurationError(f"{option}: {exc}") from None


@click.command(
    short_help="read the Parquet archive back as NDJSON or onto the bus",
    epilog=examples(
        "gridwatch replay archive --producer panda --since 2024-03-01 --until 2024-03-02",
        "gridwatch replay archive --type jobs --to-bus gridwatch-data --origin ingest",
    ),
)
@click.argument("root", type=PATH)
@click.option("--producer", help="only this producer")
@click.option("--type", "type_", metavar="TYPE", help="only this type")
@click.option("--type-prefix", type=click.Choice(["raw", "enr", "agg"]), help="only this prefix")
@click.option("--since", metavar="TIME", help="from this time on (ISO 8601 or epoch s/ms, UTC)")
@click.option("--until", metavar="TIME", help="before this time (exclusive)")
@click.option(
    "--to-bus",
    type=PATH,
    metavar="DATA_DIR",
    help="append to the bus under this --data-dir instead of printing",
)
@click.option(
    "--origin",
    default="replay",
    help="with --to-bus: the component id the records are appended as; sinks take them "
    "when it is one of their inputs (e.g. the id of the source that first received them)",
)
@click.option("--quiet", is_flag=True, help="no progress bar")
def replay(
    *,
    root: Path,
    producer: str | None,
    type_: str | None,
    type_prefix: str | None,
    since: str | None,
    until: str | None,
    to_bus: Path | None,
    origin: str,
    quiet: bool,
) -> int:
    """Read the archive under ROOT back as NDJSON on stdout, or onto the bus.

    The records under ROOT (a parquet_archive sink's root) come out exactly as they were
    accepted. With --to-bus they are appended to the bus of a data directory so that the
    pipeline's sinks take them again (sinks that write by _id overwrite instead of
    duplicating; an archive sink among them would archive them a second time). A progress bar
    is shown on a terminal.
    """
    from gridwatch.archive.layout import ArchiveFilter
    from gridwatch.archive.reader import plan

    where = ArchiveFilter(
        producer, type_prefix, type_, _time(since, "--since"), _time(until, "--until")
    )
    try:
        files = plan(root, where)
    except FileNotFoundError as exc:
        raise ConfigurationError(str(exc)) from None
    progress = Progress(files_total=len(files), enabled=not quiet and sys.stderr.isatty())
    _copy(files, where, progress, to_bus, origin)
    return 0


def _copy(
    files: list[tuple[Path, Partition]],
    where: ArchiveFilter,
    progress: Progress,
    to_bus: Path | None,
    origin: str,
) -> None:
    """Write the chunks of ``files`` to stdout, or append them to the bus under ``to_bus``."""
    from gridwatch.archive.reader import read_chunks

    bus = publisher = None
    if to_bus is not None:
        from gridwatch.bus import open_bus
        from gridwatch.metrics import Metrics
        from gridwatch.runtime.publish import Publisher

        bus = open_bus(None, to_bus)
        publisher = Publisher(bus, Metrics())
    out = sys.stdout.buffer
    try:
        for chunk in read_chunks(files, where):
            if publisher is not None:
                publisher.publish_lines(origin, chunk.lines)
            else:
                out.write(b"\n".join(chunk.lines) + b"\n")
            progress.update(chunk.path, len(chunk.lines))
    finally:
        if bus is not None:
            bus.close()
        progress.finish()
    out.flush()


class Progress:
    """A one-line progress bar on stderr: files, records and rate."""

    def __init__(self, files_total: int, enabled: bool, stream: IO[str] | None = None) -> None:
        self.files_total = files_total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.files_seen: set[Path] = set()
        self.records = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def update(self, path: Path, records: int) -> None:
        """Count ``records`` read from ``path``; redraw at most ten times a second."""
        self.files_seen.add(path)
        self.records += records
        now = time.monotonic()
        if self.enabled and now - self.shown >= 0.1:
            self.shown = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        done = len(self.files_seen)
        fraction = done / self.files_total if self.files_total else 1.0
        bar = "#" * int(fraction * 30)
        rate = self.records / max(now - self.started, 1e-6)
        self.stream.write(
            f"\rreplay [{bar:<30}] {done}/{self.files_total} files  "
            f"{self.records:,} records  {rate:,.0f}/s"
        )
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
