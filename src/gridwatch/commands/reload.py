"""``gridwatch reload``: apply a changed pipeline file to a running gridwatch."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from gridwatch.commands.client import CAFILE, TOKEN, call_api
from gridwatch.commands.options import PATH, examples
from gridwatch.errors import GridwatchError


@click.command(
    short_help="apply a changed pipeline file to a running gridwatch (SIGHUP, or --url)",
    epilog=examples(
        "gridwatch reload pipeline.yaml --data-dir /var/lib/gridwatch",
        "gridwatch reload",
        "GRIDWATCH_TOKEN=... gridwatch reload --url https://monitor:8443 --cafile ca.pem",
    ),
)
@click.argument("file", type=PATH, required=False)
@click.option(
    "--data-dir",
    type=PATH,
    default=Path("gridwatch-data"),
    help="the running gridwatch's data dir (default: ./gridwatch-data)",
)
@click.option(
    "--url",
    default=None,
    help="reload through the API at this address (POST /api/v1/reload, admin role) and "
    "print what changed, instead of sending SIGHUP",
)
@TOKEN
@CAFILE
def reload(file: Path | None, data_dir: Path, url: str | None) -> int:
    """Make the gridwatch running with --data-dir (or at --url) re-read its pipeline file.

    It applies the changes: added sources, transforms, sinks, jobs and tasks start, removed
    ones stop, changed ones restart, the others keep running (running batch runs finish);
    changed server tokens apply at once. A file with mistakes changes nothing. With FILE, the
    file is validated here first and nothing is asked when it has mistakes. Without --url,
    SIGHUP is sent and the outcome is in the running gridwatch's log; with --url, the outcome
    is printed and the exit status is 1 when the server refused the file.
    """
    from gridwatch.config import load_pipeline
    from gridwatch.config.problems import ConfigProblems

    if file is not None:
        try:
            load_pipeline(file)
        except ConfigProblems as exc:
            print(exc, file=sys.stderr)
            return 1
    if url is not None:
        return _reload_by_api(url)
    return _reload_by_signal(data_dir)


def _reload_by_signal(data_dir: Path) -> int:
    from gridwatch.scheduler.core import pid_of

    pid = pid_of(data_dir)
    if pid is None:
        raise GridwatchError(f"no running gridwatch found in {data_dir} (no gridwatch.pid)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise GridwatchError(f"gridwatch (pid {pid}) is not running any more") from None
    print(f"reload requested from gridwatch pid {pid}")
    return 0


def _reload_by_api(url: str) -> int:
    endpoint = url.rstrip("/") + "/api/v1/reload"
    status, answer = call_api(endpoint, "POST", TOKEN.value(), CAFILE.value(), answered=(422,))
    if status == 422:
        print("reload refused, the running pipeline stays:", file=sys.stderr)
        for problem in answer["problems"]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(_describe(answer))
    return 0


def _describe(answer: dict[str, Any]) -> str:
    parts = [
        f"{label}: {', '.join(answer[key])}"
        for key, label in (
            ("components", "components"),
            ("schedule", "schedule"),
            ("restart_needed", "after a restart only"),
        )
        if answer.get(key)
    ]
    return "reload applied: " + ("; ".join(parts) or "no changes")
