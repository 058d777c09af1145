"""``gridwatch reload``: apply a changed pipeline file to a running gridwatch."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from gridwatch.commands.options import PATH, examples
from gridwatch.errors import GridwatchError


@click.command(
    short_help="apply a changed pipeline file to a running gridwatch (like SIGHUP)",
    epilog=examples(
        "gridwatch reload pipeline.yaml --data-dir /var/lib/gridwatch",
        "gridwatch reload",
    ),
)
@click.argument("file", type=PATH, required=False)
@click.option(
    "--data-dir",
    type=PATH,
    default=Path("gridwatch-data"),
    help="the running gridwatch's data dir (default: ./gridwatch-data)",
)
def reload(file: Path | None, data_dir: Path) -> int:
    """Send SIGHUP to the gridwatch running with --data-dir.

    It re-reads its pipeline file and applies the changes: added sources, transforms, sinks,
    jobs and tasks start, removed ones stop, changed ones restart, the others keep running
    (running batch runs finish). A file with mistakes changes nothing. With FILE, the file is
    validated first and nothing is sent when it has mistakes.
    """
    from gridwatch.config import load_pipeline
    from gridwatch.config.problems import ConfigProblems
    from gridwatch.scheduler.core import pid_of

    if file is not None:
        try:
            load_pipeline(file)
        except ConfigProblems as exc:
            print(exc, file=sys.stderr)
            return 1
    pid = pid_of(data_dir)
    if pid is None:
        raise GridwatchError(f"no running gridwatch found in {data_dir} (no gridwatch.pid)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise GridwatchError(f"gridwatch (pid {pid}) is not running any more") from None
    print(f"reload requested from gridwatch pid {pid}")
    return 0
