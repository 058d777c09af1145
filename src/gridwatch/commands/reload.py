"""``gridwatch reload``: apply a changed pipeline file's schedule to a running gridwatch."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from gridwatch.errors import GridwatchError


def register(subparsers: Any) -> None:
    """Add ``reload``."""
    reload = subparsers.add_parser(
        "reload",
        help="re-read the schedule of a running gridwatch (like SIGHUP)",
        description="Send SIGHUP to the gridwatch running with --data-dir: it re-reads its "
        "pipeline file and applies the schedule's changes (new tasks start, removed ones "
        "stop, changed ones restart; running batch runs finish). With FILE, the file is "
        "validated first and nothing is sent when it has mistakes.",
    )
    reload.add_argument("file", type=Path, nargs="?", help="validate this file first")
    reload.add_argument(
        "--data-dir",
        type=Path,
        default=Path("gridwatch-data"),
        help="the running gridwatch's data dir (default: ./gridwatch-data)",
    )
    reload.set_defaults(handler=_reload)


def _reload(args: argparse.Namespace) -> int:
    from gridwatch.config import load_pipeline
    from gridwatch.config.problems import ConfigProblems
    from gridwatch.scheduler.core import pid_of

    if args.file is not None:
        try:
            load_pipeline(args.file)
        except ConfigProblems as exc:
            print(exc, file=sys.stderr)
            return 1
    pid = pid_of(args.data_dir)
    if pid is None:
        raise GridwatchError(f"no running gridwatch found in {args.data_dir} (no gridwatch.pid)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise GridwatchError(f"gridwatch (pid {pid}) is not running any more") from None
    print(f"reload requested from gridwatch pid {pid}")
    return 0
