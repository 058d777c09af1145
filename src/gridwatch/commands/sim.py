"""``gridwatch sim panda``: run the PanDA job database simulator on the wall clock."""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING, Any

import click

from gridwatch.commands.options import examples

if TYPE_CHECKING:
    from gridwatch.sim.panda import PandaSimulator

log = logging.getLogger(__name__)


def make_history(sim: PandaSimulator, history_s: float, step_s: int = 20) -> int:
    """Simulate the last ``history_s`` seconds in steps; return the row versions written."""
    now = time.time()
    return sum(sim.step(now - ago) for ago in range(int(history_s), 0, -step_s))


@click.group(
    no_args_is_help=False,
    short_help="simulate a monitored system (for demos and tests)",
    epilog=examples("gridwatch sim panda --url sqlite:///panda.db"),
)
def sim() -> None:
    """Simulators of the systems that gridwatch reads."""


@sim.command(
    short_help="a PanDA job database with jobs moving through their states",
    epilog=examples(
        "gridwatch sim panda --url sqlite:///panda.db --rate 20 --history-s 3600",
        "gridwatch sim panda --url postgresql+psycopg://postgres@127.0.0.1/test --drop",
    ),
)
@click.option(
    "--url",
    required=True,
    help="SQLAlchemy URL, e.g. sqlite:///panda.db or postgresql+psycopg://postgres@127.0.0.1/test",
)
@click.option("--schema", default=None, help="schema (database in MariaDB) to use")
@click.option("--rate", type=float, default=5.0, help="new jobs per second (default 5)")
@click.option(
    "--dwell-min-s", type=float, default=20.0, help="shortest time in a state (default 20)"
)
@click.option(
    "--dwell-max-s", type=float, default=300.0, help="longest time in a state (default 300)"
)
@click.option("--seed", type=int, default=1, help="random seed (default 1)")
@click.option(
    "--duration-s", type=float, default=None, help="stop after this long (default: never)"
)
@click.option("--drop", is_flag=True, help="drop existing tables first")
@click.option(
    "--history-s",
    type=float,
    default=0.0,
    help="on a new database, first make this many seconds of past traffic (default 0)",
)
def panda(
    *,
    url: str,
    schema: str | None,
    rate: float,
    dwell_min_s: float,
    dwell_max_s: float,
    seed: int,
    duration_s: float | None,
    drop: bool,
    history_s: float,
) -> int:
    """Run a PanDA job database on the wall clock.

    Create the four PanDA job tables (JOBSDEFINED4, JOBSWAITING4, JOBSACTIVE4, JOBSARCHIVED4)
    in the database at --url and move jobs through them on the wall clock until Ctrl-C,
    SIGTERM or --duration-s. Every row version is also recorded in SIM_HISTORY. Running it
    again continues the same database.
    """
    from gridwatch.sim.panda import PandaSimulator  # SQLAlchemy loads only when needed

    if dwell_min_s < 1 or dwell_max_s < dwell_min_s:
        log.error("need 1 <= --dwell-min-s <= --dwell-max-s")
        return 2
    simulator = PandaSimulator(
        url,
        schema=schema,
        rate_per_s=rate,
        dwell_min_s=dwell_min_s,
        dwell_max_s=dwell_max_s,
        seed=seed,
    )
    stopping = False
    written = 0

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    simulator.create(drop=drop)
    if history_s > 0 and not simulator.jobs:
        written += make_history(simulator, history_s)
    log.info("simulating PanDA at %s: %.2f new jobs/s", url, rate)
    started = time.monotonic()
    last_report = started
    try:
        while not stopping:
            written += simulator.step(time.time())
            if time.monotonic() - last_report >= 10:
                log.info("%d row versions written, %d jobs in flight", written, len(simulator.jobs))
                last_report = time.monotonic()
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            time.sleep(1.0)
    finally:
        simulator.close()
    log.info("stopped after %d row versions", written)
    return 0
