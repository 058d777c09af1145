"""``gridwatch run``, ``validate`` and ``schema``: the pipeline file's commands."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from gridwatch.commands.options import PATH, examples
from gridwatch.config import load_pipeline, pipeline_schema


@click.command(
    short_help="run a pipeline until SIGTERM or Ctrl-C",
    epilog=examples(
        "gridwatch run pipeline.yaml",
        "gridwatch run pipeline.yaml --data-dir /var/lib/gridwatch --listen 0.0.0.0:8080",
    ),
)
@click.argument("file", type=PATH)
@click.option(
    "--data-dir",
    type=PATH,
    default=Path("gridwatch-data"),
    help="where the bus and state live (default: ./gridwatch-data)",
)
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="HTTP address for the API, /health and /metrics "
    "(default: the file's server.listen, else 127.0.0.1:8080)",
)
def run(file: Path, data_dir: Path, listen: str | None) -> int:
    """Run the pipeline described by FILE.

    Data (the bus, checkpoints, state) is kept under --data-dir; a restart resumes exactly
    where the last run stopped.
    """
    from gridwatch.runtime.runner import Runtime

    runtime = Runtime(load_pipeline(file), data_dir, listen)
    asyncio.run(runtime.run())
    return 0


@click.command(
    short_help="check a pipeline file without starting anything",
    epilog=examples("gridwatch validate pipeline.yaml"),
)
@click.argument("file", type=PATH)
def validate(file: Path) -> int:
    """Report every mistake in FILE (with its line), including graph errors.

    Exit status 0 when the file is valid, 1 when it is not.
    """
    pipeline = load_pipeline(file)
    kinds = ", ".join(
        f"{len(pipeline.of_kind(k))} {k}s" for k in ("source", "transform", "sink", "job")
    )
    print(f"{file}: valid ({kinds})")
    return 0


@click.command(
    short_help="print the JSON Schema of pipeline files",
    epilog=examples("gridwatch schema > gridwatch.schema.json"),
)
def schema() -> int:
    """Print the JSON Schema of the pipeline file.

    It has every component's options and their descriptions (for editors and documentation).
    """
    json.dump(pipeline_schema(), sys.stdout, indent=2)
    print()
    return 0
