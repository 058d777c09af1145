"""``gridwatch run``, ``validate`` and ``schema``: the pipeline file's commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gridwatch.config import load_pipeline, pipeline_schema


def register(subparsers: Any) -> None:
    """Add ``run``, ``validate`` and ``schema``."""
    run = subparsers.add_parser(
        "run",
        help="run a pipeline until SIGTERM or Ctrl-C",
        description="Run the pipeline described by FILE. Data (the bus, checkpoints, state) "
        "is kept under --data-dir; a restart resumes exactly where the last run stopped.",
    )
    run.add_argument("file", type=Path, help="the pipeline YAML file")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path("gridwatch-data"),
        help="where the bus and state live (default: ./gridwatch-data)",
    )
    run.add_argument(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help="HTTP address for the API, /health and /metrics "
        "(default: the file's server.listen, else 127.0.0.1:8080)",
    )
    run.set_defaults(handler=_run)

    validate = subparsers.add_parser(
        "validate",
        help="check a pipeline file without starting anything",
        description="Report every mistake in FILE (with its line), including graph errors. "
        "Exit status 0 when the file is valid, 1 when it is not.",
    )
    validate.add_argument("file", type=Path, help="the pipeline YAML file")
    validate.set_defaults(handler=_validate)

    schema = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of pipeline files",
        description="Print the JSON Schema of the pipeline file, with every component's "
        "options and their descriptions (for editors and documentation).",
    )
    schema.set_defaults(handler=_schema)


def _run(args: argparse.Namespace) -> int:
    from gridwatch.runtime.runner import Runtime

    runtime = Runtime(load_pipeline(args.file), args.data_dir, args.listen)
    asyncio.run(runtime.run())
    return 0


def _validate(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.file)
    kinds = ", ".join(
        f"{len(pipeline.of_kind(k))} {k}s" for k in ("source", "transform", "sink", "job")
    )
    print(f"{args.file}: valid ({kinds})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    json.dump(pipeline_schema(), sys.stdout, indent=2)
    print()
    return 0
