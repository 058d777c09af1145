"""``gridwatch replay``: read the Parquet archive back, to NDJSON on stdout or onto the bus."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO, Any

from gridwatch.errors import ConfigurationError
from gridwatch.record import RecordError, to_epoch_ms


def register(subparsers: Any) -> None:
    """Add ``replay``."""
    replay = subparsers.add_parser(
        "replay",
        help="read the Parquet archive back as NDJSON or onto the bus",
        description="Read the records under ROOT (a parquet_archive sink's root) exactly as "
        "they were accepted and write them as NDJSON on stdout, or append them to the bus of "
        "a data directory so that the pipeline's sinks take them again (sinks that write by _id "
        "overwrite instead of duplicating; an archive sink among them would archive them a "
        "second time). A progress bar is shown on a terminal.",
    )
    replay.add_argument("root", type=Path, help="the archive's root directory")
    replay.add_argument("--producer", help="only this producer")
    replay.add_argument("--type", dest="type_", metavar="TYPE", help="only this type")
    replay.add_argument("--type-prefix", choices=["raw", "enr", "agg"], help="only this prefix")
    replay.add_argument(
        "--since", metavar="TIME", help="from this time on (ISO 8601 or epoch s/ms, UTC)"
    )
    replay.add_argument("--until", metavar="TIME", help="before this time (exclusive)")
    replay.add_argument(
        "--to-bus",
        type=Path,
        metavar="DATA_DIR",
        help="append to the bus under this --data-dir instead of printing",
    )
    replay.add_argument(
        "--origin",
        default="replay",
        help="with --to-bus: the component id the records are appended as; sinks take them "
        "when it is one of their inputs (e.g. the id of the source that first received them)",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(handler=_replay)


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return to_epoch_ms(value)
    except RecordError as exc:
        raise ConfigurationError(f"{option}: {exc}") from None


def _replay(args: argparse.Namespace) -> int:
    from gridwatch.archive.layout import ArchiveFilter
    from gridwatch.archive.reader import plan, read_chunks

    where = ArchiveFilter(
        args.producer,
        args.type_prefix,
        args.type_,
        _time(args.since, "--since"),
        _time(args.until, "--until"),
    )
    try:
        files = plan(args.root, where)
    except FileNotFoundError as exc:
        raise ConfigurationError(str(exc)) from None
    progress = Progress(files_total=len(files), enabled=not args.quiet and sys.stderr.isatty())
    bus = publisher = None
    if args.to_bus is not None:
        from gridwatch.bus import open_bus
        from gridwatch.metrics import Metrics
        from gridwatch.runtime.publish import Publisher

        bus = open_bus(None, args.to_bus)
        publisher = Publisher(bus, Metrics())
    out = sys.stdout.buffer
    try:
        for chunk in read_chunks(files, where):
            if publisher is not None:
                publisher.publish_lines(args.origin, chunk.lines)
            else:
                out.write(b"\n".join(chunk.lines) + b"\n")
            progress.update(chunk.path, len(chunk.lines))
    except BrokenPipeError:  # e.g. `gridwatch replay ... | head`
        sys.stderr.close()
        return 0
    finally:
        if bus is not None:
            bus.close()
        progress.finish()
    out.flush()
    return 0


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
