"""``gridwatch sim panda``: run the PanDA job database simulator on the wall clock."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridwatch.sim.panda import PandaSimulator

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``sim`` with its ``panda`` subcommand."""
    sim = subparsers.add_parser(
        "sim",
        help="simulate a monitored system (for demos and tests)",
        description="Simulators of the systems that gridwatch reads.",
    )
    kinds = sim.add_subparsers(title="simulators", metavar="SYSTEM")
    panda = kinds.add_parser(
        "panda",
        help="a PanDA job database with jobs moving through their states",
        description="Create the four PanDA job tables (JOBSDEFINED4, JOBSWAITING4, "
        "JOBSACTIVE4, JOBSARCHIVED4) in the database at --url and move jobs through them "
        "on the wall clock until Ctrl-C, SIGTERM or --duration-s. Every row version is also "
        "recorded in SIM_HISTORY. Running it again continues the same database.",
    )
    panda.add_argument(
        "--url",
        required=True,
        help="SQLAlchemy URL, e.g. sqlite:///panda.db or "
        "postgresql+psycopg://postgres@127.0.0.1/test",
    )
    panda.add_argument("--schema", default=None, help="schema (database in MariaDB) to use")
    panda.add_argument("--rate", type=float, default=5.0, help="new jobs per second (default 5)")
    panda.add_argument(
        "--dwell-min-s", type=float, default=20.0, help="shortest time in a state (default 20)"
    )
    panda.add_argument(
        "--dwell-max-s", type=float, default=300.0, help="longest time in a state (default 300)"
    )
    panda.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    panda.add_argument(
        "--duration-s", type=float, default=None, help="stop after this long (default: never)"
    )
    panda.add_argument("--drop", action="store_true", help="drop existing tables first")
    panda.add_argument(
        "--history-s",
        type=float,
        default=0.0,
        help="on a new database, first make this many seconds of past traffic (default 0)",
    )
    panda.set_defaults(handler=_panda)


def make_history(sim: PandaSimulator, history_s: float, step_s: int = 20) -> int:
    """Simulate the last ``history_s`` seconds in steps; return the row versions written."""
    now = time.time()
    return sum(sim.step(now - ago) for ago in range(int(history_s), 0, -step_s))


def _panda(args: argparse.Namespace) -> int:
    from gridwatch.sim.panda import PandaSimulator  # SQLAlchemy loads only when needed

    if args.dwell_min_s < 1 or args.dwell_max_s < args.dwell_min_s:
        log.error("need 1 <= --dwell-min-s <= --dwell-max-s")
        return 2
    sim = PandaSimulator(
        args.url,
        schema=args.schema,
        rate_per_s=args.rate,
        dwell_min_s=args.dwell_min_s,
        dwell_max_s=args.dwell_max_s,
        seed=args.seed,
    )
    stopping = False
    written = 0

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sim.create(drop=args.drop)
    if args.history_s > 0 and not sim.jobs:
        written += make_history(sim, args.history_s)
    log.info("simulating PanDA at %s: %.2f new jobs/s", args.url, args.rate)
    started = time.monotonic()
    last_report = started
    try:
        while not stopping:
            written += sim.step(time.time())
            if time.monotonic() - last_report >= 10:
                log.info("%d row versions written, %d jobs in flight", written, len(sim.jobs))
                last_report = time.monotonic()
            if args.duration_s is not None and time.monotonic() - started >= args.duration_s:
                break
            time.sleep(1.0)
    finally:
        sim.close()
    log.info("stopped after %d row versions", written)
    return 0
