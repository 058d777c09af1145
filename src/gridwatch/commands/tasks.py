"""``gridwatch tasks list | runs TASK | logs TASK | run TASK``: the running scheduler's tasks."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gridwatch.commands.client import CAFILE, TOKEN, call_api
from gridwatch.commands.options import SharedOption, examples
from gridwatch.errors import GridwatchError

URL = SharedOption(
    "--url",
    default="http://127.0.0.1:8080",
    help="the running gridwatch's HTTP address (default: http://127.0.0.1:8080)",
)
JSON = SharedOption("--json", default=False, is_flag=True, help="print the API's JSON answer")


@click.group(
    no_args_is_help=False,
    short_help="show and start the schedule's tasks and services",
    epilog=examples(
        "gridwatch tasks list --url http://127.0.0.1:8080",
        "gridwatch tasks runs eventindex --limit 5",
        "gridwatch tasks --url http://monitor:8080 logs eventindex",
        "GRIDWATCH_TOKEN=... gridwatch tasks --url https://monitor:8443 --cafile ca.pem list",
    ),
)
@URL
@JSON
@TOKEN
@CAFILE
def tasks() -> None:
    """Ask a running gridwatch (its API at --url) about its scheduled tasks.

    --url, --json, --token and --cafile may be given before or after the action. Listing
    needs a token with the read role, `run` one with the admin role (when the server has
    tokens).
    """


def _call(path: str, method: str = "GET") -> Any:
    """The JSON answer of ``METHOD --url + path``, with --token and --cafile."""
    url = URL.value().rstrip("/") + path
    return call_api(url, method, TOKEN.value(), CAFILE.value())[1]


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


@tasks.command(
    "list",
    short_help="tasks and services with their last run",
    epilog=examples(
        "gridwatch tasks list", "gridwatch tasks list --json --url http://monitor:8080"
    ),
)
@URL
@JSON
@TOKEN
@CAFILE
def list_tasks() -> int:
    """Print the tasks and services with their state, last run and next run."""
    answer = _call("/api/v1/tasks")
    if JSON.value():
        _print_json(answer)
        return 0
    role = "leader" if answer["leader"] else "follower"
    print(f"scheduler {answer['holder']} ({role}, token {answer['token']})")
    print(f"{'ID':24} {'KIND':8} {'STATE':10} {'LAST':10} {'ENDED':24} NEXT")
    for entry in answer["tasks"] + answer["services"]:
        last = entry.get("last_run") or {}
        state = entry.get("state") or ("running" if entry.get("running") else "idle")
        ended = _time(last.get("ended_ms"))
        print(
            f"{entry['id']:24} {entry['kind']:8} {state:10} {last.get('state', '-'):10} "
            f"{ended:24} {entry.get('next_run') or '-'}"
        )
    return 0


@tasks.command(
    short_help="the latest runs of a task",
    epilog=examples("gridwatch tasks runs eventindex", "gridwatch tasks runs eventindex --limit 5"),
)
@click.argument("task")
@click.option("--limit", type=int, default=20, help="how many runs (default 20)")
@URL
@JSON
@TOKEN
@CAFILE
def runs(task: str, limit: int) -> int:
    """Print the latest runs of TASK, newest first."""
    answer = _call(f"/api/v1/tasks/{task}/runs?limit={limit}")
    if JSON.value():
        _print_json(answer)
        return 0
    print(
        f"{'RUN':>6} {'SLOT':24} {'TRIGGER':9} {'TRY':>3} {'STATE':10} {'EXIT':>4} "
        f"{'SECONDS':>8} REASON"
    )
    for run in answer["runs"]:
        duration = "-" if run["duration_s"] is None else f"{run['duration_s']:.2f}"
        exit_code = "-" if run["exit_code"] is None else str(run["exit_code"])
        print(
            f"{run['id']:>6} {_time(run['slot_ms']):24} {run['trigger']:9} {run['attempt']:>3} "
            f"{run['state']:10} {exit_code:>4} {duration:>8} {run['reason'] or ''}"
        )
    return 0


@tasks.command(
    short_help="the captured output of a task's last run",
    epilog=examples("gridwatch tasks logs eventindex", "gridwatch tasks logs eventindex --run 42"),
)
@click.argument("task")
@click.option("--run", "run_id", type=int, default=None, help="a run id instead of the last")
@URL
@JSON
@TOKEN
@CAFILE
def logs(task: str, run_id: int | None) -> int:
    """Print the captured output of TASK's last run (or of run --run)."""
    if run_id is None:
        latest = _call(f"/api/v1/tasks/{task}/runs?limit=1")["runs"]
        if not latest:
            raise GridwatchError(f"task {task!r} has no runs yet")
        run_id = latest[0]["id"]
    run = _call(f"/api/v1/runs/{run_id}")
    if JSON.value():
        _print_json(run)
        return 0
    if run["output_truncated"]:
        print("[... earlier output was not kept ...]")
    sys.stdout.write(run.get("output") or "")
    return 0


@tasks.command(
    "run",
    short_help="start a task now (or restart a service)",
    epilog=examples("gridwatch tasks run eventindex"),
)
@click.argument("task")
@URL
@JSON
@TOKEN
@CAFILE
def run_task(task: str) -> int:
    """Start TASK now, outside its schedule (or restart it, when it is a service)."""
    answer = _call(f"/api/v1/tasks/{task}/run", method="POST")
    print(f"{task}: {answer['result']}")
    return 0


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    from gridwatch.record import format_ms

    return format_ms(ms)
