"""``gridwatch batch``: run a pipeline's job over the archive (the lambda's batch layer)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from gridwatch.commands.options import PATH, examples
from gridwatch.config import load_pipeline
from gridwatch.config.pipeline import ComponentSpec
from gridwatch.errors import ConfigurationError
from gridwatch.record import Record, RecordError, encode, to_epoch_ms


class _Unlisted(click.Argument):
    """An argument left out of the usage line: the further files of ``--input A B C``."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


@click.command(
    short_help="recompute a job's results over archived data",
    epilog=examples(
        "gridwatch batch rates --from 2024-05-01 --to 2024-05-02 --archive archive",
        "gridwatch batch rates --pipeline p.yaml --from 2024-05-01 --to 2024-05-02 \\",
        "    --input day1.ndjson day2.ndjson --output bins.ndjson",
    ),
)
@click.argument("job")
@click.argument("more_inputs", nargs=-1, type=PATH, cls=_Unlisted)
@click.option(
    "--pipeline",
    type=PATH,
    default=Path("gridwatch.yaml"),
    help="the pipeline YAML file (default: ./gridwatch.yaml)",
)
@click.option("--from", "from_", required=True, help="start (ISO 8601 or epoch s/ms, UTC)")
@click.option("--to", required=True, help="end, exclusive (ISO 8601 or epoch s/ms)")
@click.option(
    "--input",
    "inputs",
    type=PATH,
    multiple=True,
    metavar="PATH...",
    help="NDJSON or Parquet files, or directories holding them (one or more)",
)
@click.option(
    "--archive",
    type=PATH,
    help="root of the Parquet archive ({root}/{producer}/{type_prefix}/{type}/YYYY/MM/DD)",
)
@click.option(
    "--json-column",
    default=None,
    help="the Parquet column holding the envelope JSON (default: envelope)",
)
@click.option("--output", type=PATH, default=None, help="write the records here (default: stdout)")
def batch(
    *,
    job: str,
    more_inputs: tuple[Path, ...],
    pipeline: Path,
    from_: str,
    to: str,
    inputs: tuple[Path, ...],
    archive: Path | None,
    json_column: str | None,
    output: Path | None,
) -> int:
    """Recompute JOB of the pipeline file over archived data.

    Run JOB over the Parquet archive or NDJSON files, with the same logic as the stream, and
    print its output records (NDJSON). Aggregate bins starting in [--from, --to) are computed;
    their _id is the stream's, so storing them replaces the stream's revisions. Exactly one of
    --input (followed by one or more paths) and --archive is needed.
    """
    from gridwatch.batch import run_batch

    paths = _input_paths(inputs, more_inputs, archive)
    spec = _job_spec(pipeline, job)
    from_ms, to_ms = _window(from_, to)
    files = _files(spec.config, paths, archive, from_ms, to_ms)
    started = time.monotonic()
    result = run_batch(spec.config, files, from_ms, to_ms, json_column)
    _write(result.records, output)
    print(
        f"{job}: {len(files)} files, {result.rows} records read, "
        f"{len(result.rejected)} rejected, "
        f"{len(result.records)} results in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
    )
    return 0


def _input_paths(
    inputs: tuple[Path, ...], more_inputs: tuple[Path, ...], archive: Path | None
) -> list[Path]:
    """The paths of ``--input A B C`` (or ``--input A --input B``); checks --input xor --archive."""
    if more_inputs and not inputs:
        extra = " ".join(str(p) for p in more_inputs)
        raise click.UsageError(f"unexpected extra arguments: {extra}")
    if inputs and archive is not None:
        raise click.UsageError("--input and --archive cannot be used together")
    if not inputs and archive is None:
        raise click.UsageError("one of --input or --archive is required")
    return [*inputs, *more_inputs]


def _job_spec(pipeline_file: Path, job: str) -> ComponentSpec:
    pipeline = load_pipeline(pipeline_file)
    spec = pipeline.components.get(job)
    if spec is None or spec.kind != "job":
        jobs = ", ".join(s.id for s in pipeline.of_kind("job")) or "none"
        raise ConfigurationError(f"{job!r} is not a job of {pipeline_file} (jobs: {jobs})")
    return spec


def _window(from_: str, to: str) -> tuple[int, int]:
    try:
        from_ms, to_ms = to_epoch_ms(from_), to_epoch_ms(to)
    except RecordError as exc:
        raise ConfigurationError(f"--from/--to: {exc}") from None
    if to_ms <= from_ms:
        raise ConfigurationError("--to must be after --from")
    return from_ms, to_ms


def _files(
    config: Any, inputs: list[Path], archive: Path | None, from_ms: int, to_ms: int
) -> list[str]:
    from gridwatch.batch import archive_files, input_files

    if archive is not None:
        span_days = int(getattr(config, "max_span_s", 86400) // 86400) + 1
        files = archive_files(archive, from_ms, to_ms, span_days)
    else:
        files = input_files(inputs)
    if not files:
        raise ConfigurationError("no input files found")
    return files


def _write(records: list[Record], output: Path | None) -> None:
    out = output.open("wb") if output else sys.stdout.buffer
    try:
        for record in records:
            out.write(encode(record) + b"\n")
    finally:
        if output:
            out.close()
        else:
            out.flush()
