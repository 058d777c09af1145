"""``gridwatch batch``: run a pipeline's job over the archive (the lambda's batch layer)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from gridwatch.config import load_pipeline
from gridwatch.errors import ConfigurationError
from gridwatch.record import RecordError, encode, to_epoch_ms


def register(subparsers: Any) -> None:
    """Add ``batch``."""
    batch = subparsers.add_parser(
        "batch",
        help="recompute a job's results over archived data",
        description="Run JOB of the pipeline file over the Parquet archive or NDJSON files, "
        "with the same logic as the stream, and print its output records (NDJSON). Aggregate "
        "bins starting in [--from, --to) are computed; their _id is the stream's, so storing "
        "them replaces the stream's revisions.",
    )
    batch.add_argument("job", help="the id of the job in the pipeline file")
    batch.add_argument(
        "--pipeline",
        type=Path,
        default=Path("gridwatch.yaml"),
        help="the pipeline YAML file (default: ./gridwatch.yaml)",
    )
    batch.add_argument(
        "--from", dest="from_", required=True, help="start (ISO 8601 or epoch s/ms, UTC)"
    )
    batch.add_argument("--to", required=True, help="end, exclusive (ISO 8601 or epoch s/ms)")
    where = batch.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--input",
        type=Path,
        nargs="+",
        help="NDJSON or Parquet files, or directories holding them",
    )
    where.add_argument(
        "--archive",
        type=Path,
        help="root of the Parquet archive ({root}/{producer}/{type_prefix}/{type}/YYYY/MM/DD)",
    )
    batch.add_argument(
        "--json-column",
        default=None,
        help="the Parquet column holding the envelope JSON (default: envelope)",
    )
    batch.add_argument(
        "--output", type=Path, default=None, help="write the records here (default: stdout)"
    )
    batch.set_defaults(handler=_batch)


def _batch(args: argparse.Namespace) -> int:
    from gridwatch.batch import archive_files, input_files, run_batch

    pipeline = load_pipeline(args.pipeline)
    spec = pipeline.components.get(args.job)
    if spec is None or spec.kind != "job":
        jobs = ", ".join(s.id for s in pipeline.of_kind("job")) or "none"
        raise ConfigurationError(f"{args.job!r} is not a job of {args.pipeline} (jobs: {jobs})")
    try:
        from_ms, to_ms = to_epoch_ms(args.from_), to_epoch_ms(args.to)
    except RecordError as exc:
        raise ConfigurationError(f"--from/--to: {exc}") from None
    if to_ms <= from_ms:
        raise ConfigurationError("--to must be after --from")
    if args.archive is not None:
        span_days = int(getattr(spec.config, "max_span_s", 86400) // 86400) + 1
        files = archive_files(args.archive, from_ms, to_ms, span_days)
    else:
        files = input_files(args.input)
    if not files:
        raise ConfigurationError("no input files found")
    started = time.monotonic()
    result = run_batch(spec.config, files, from_ms, to_ms, args.json_column)
    out = args.output.open("wb") if args.output else sys.stdout.buffer
    try:
        for record in result.records:
            out.write(encode(record) + b"\n")
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    print(
        f"{args.job}: {len(files)} files, {result.rows} records read, "
        f"{len(result.rejected)} rejected, "
        f"{len(result.records)} results in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
    )
    return 0
