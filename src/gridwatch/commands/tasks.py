"""``gridwatch tasks list | runs TASK | logs TASK | run TASK``: the running scheduler's tasks."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from gridwatch.errors import GridwatchError


def register(subparsers: Any) -> None:
    """Add ``tasks`` and its subcommands."""
    tasks = subparsers.add_parser(
        "tasks",
        help="show and start the schedule's tasks and services",
        description="Ask a running gridwatch (its API at --url) about its scheduled tasks.",
    )
    tasks.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help="the running gridwatch's HTTP address (default: http://127.0.0.1:8080)",
    )
    tasks.add_argument("--json", action="store_true", help="print the API's JSON answer")
    actions = tasks.add_subparsers(title="actions", metavar="ACTION", required=True)
    actions.add_parser("list", help="tasks and services with their last run").set_defaults(
        handler=_list
    )
    runs = actions.add_parser("runs", help="the latest runs of a task")
    runs.add_argument("task")
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    runs.set_defaults(handler=_runs)
    logs = actions.add_parser("logs", help="the captured output of a task's last run")
    logs.add_argument("task")
    logs.add_argument("--run", type=int, default=None, help="a run id instead of the last")
    logs.set_defaults(handler=_logs)
    run = actions.add_parser("run", help="start a task now (or restart a service)")
    run.add_argument("task")
    run.set_defaults(handler=_run)


def _call(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method)  # noqa: S310 - the user's own URL
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        raise GridwatchError(f"{method} {url}: {exc.code} {body}") from None
    except OSError as exc:
        raise GridwatchError(f"cannot reach gridwatch at {url}: {exc}") from None


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


def _list(args: argparse.Namespace) -> int:
    answer = _call(f"{args.url}/api/v1/tasks")
    if args.json:
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


def _runs(args: argparse.Namespace) -> int:
    answer = _call(f"{args.url}/api/v1/tasks/{args.task}/runs?limit={args.limit}")
    if args.json:
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


def _logs(args: argparse.Namespace) -> int:
    run_id = args.run
    if run_id is None:
        runs = _call(f"{args.url}/api/v1/tasks/{args.task}/runs?limit=1")["runs"]
        if not runs:
            raise GridwatchError(f"task {args.task!r} has no runs yet")
        run_id = runs[0]["id"]
    run = _call(f"{args.url}/api/v1/runs/{run_id}")
    if args.json:
        _print_json(run)
        return 0
    if run["output_truncated"]:
        print("[... earlier output was not kept ...]")
    sys.stdout.write(run.get("output") or "")
    return 0


def _run(args: argparse.Namespace) -> int:
    answer = _call(f"{args.url}/api/v1/tasks/{args.task}/run", method="POST")
    print(f"{args.task}: {answer['result']}")
    return 0


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    from gridwatch.record import format_ms

    return format_ms(ms)
