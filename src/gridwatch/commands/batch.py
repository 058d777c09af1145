"""``gridwatch batch``: run a pipeline's job over the archive (the lambda's batch layer)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from gridwatch.commands.options import PATH, examples
from gridwatch.config import load_pipeline
from gridwatch.config.pipeline import ComponentSpec
from gridwatch.errors import ConfigurationError, GridwatchError
from gridwatch.record import Record, RecordError, encode, split_topic, to_epoch_ms


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
    "--dataset",
    "datasets",
    multiple=True,
    metavar="PRODUCER/PREFIX/TYPE",
    help="with --archive: a dataset to read (repeatable; default: the datasets that the job's "
    "inputs wrote, as the bus in --data-dir knows them)",
)
@click.option(
    "--data-dir",
    type=PATH,
    default=Path("gridwatch-data"),
    help="with --archive: the pipeline's data dir, whose bus tells the job's input datasets",
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
    datasets: tuple[str, ...],
    data_dir: Path,
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
    if archive is not None:
        files = _archive_files(spec, archive, datasets, data_dir, (from_ms, to_ms))
    else:
        files = _input_files(paths)
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


def _archive_files(
    spec: ComponentSpec,
    archive: Path,
    datasets: tuple[str, ...],
    data_dir: Path,
    window: tuple[int, int],
) -> list[str]:
    """The archive's files of the job's input datasets only (not its own outputs, other jobs'
    or dead letters, which share the archive)."""
    from gridwatch.batch import archive_files

    chosen = [_dataset(d) for d in datasets] or _input_datasets(spec, data_dir)
    span_days = int(getattr(spec.config, "max_span_s", 86400) // 86400) + 1
    files = archive_files(archive, chosen, window[0], window[1], span_days)
    if not files:
        named = ", ".join("/".join(d) for d in chosen)
        raise ConfigurationError(f"no archive files of {named} in {archive} for that time")
    return files


def _dataset(text: str) -> tuple[str, str, str]:
    parts = text.strip("/").split("/")
    if len(parts) != 3:
        raise click.BadParameter(f"{text!r} is not PRODUCER/PREFIX/TYPE", param_hint="--dataset")
    return parts[0], parts[1], parts[2]


def _input_datasets(spec: ComponentSpec, data_dir: Path) -> list[tuple[str, str, str]]:
    """The datasets the job's inputs wrote, from the pipeline's bus."""
    from gridwatch.bus import existing_bus

    try:
        bus = existing_bus(data_dir)
    except GridwatchError as exc:
        raise ConfigurationError(
            f"{exc}: name the job's input datasets with --dataset PRODUCER/PREFIX/TYPE, or "
            "point --data-dir at the pipeline's data dir"
        ) from None
    topics = [t for t in bus.topics_from(spec.inputs) if spec.config.wants(t)]
    bus.close()
    found = [parts for parts in map(split_topic, topics) if parts is not None]
    if not found:
        raise ConfigurationError(f"the bus in {data_dir} has no records of {spec.id}'s inputs")
    return found


def _input_files(paths: list[Path]) -> list[str]:
    from gridwatch.batch import input_files

    files = input_files(paths)
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
