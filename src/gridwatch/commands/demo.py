"""``gridwatch demo``: a simulated grid, the pipeline and the dashboard, with nothing to set up."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

import click
import yaml

from gridwatch.commands.options import PATH, examples
from gridwatch.config.pipeline import Pipeline, parse_pipeline

log = logging.getLogger(__name__)
DEMO_FILE = "pipeline.yaml"


def demo_text() -> str:
    """The demo's pipeline file, as shipped inside the package."""
    return resources.files("gridwatch.demo").joinpath(DEMO_FILE).read_text()


def demo_pipeline(rate: float | None = None, backfill_days: float | None = None) -> Pipeline:
    """The demo's pipeline, with the command line's overrides applied."""
    document = yaml.safe_load(demo_text())
    if rate is not None:
        document["sources"]["grid"]["rate_per_s"] = rate
    if backfill_days is not None:
        document["sources"]["eventindex"]["backfill_hours"] = backfill_days * 24
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return parse_pipeline(text, f"gridwatch.demo/{DEMO_FILE}", Path.cwd())


@click.command(
    short_help="run a simulated grid with the dashboard at http://127.0.0.1:8080",
    epilog=examples(
        "gridwatch demo",
        "gridwatch demo --listen 127.0.0.1:9090 --data-dir demo-data --rate 50",
        "gridwatch demo --print-pipeline > demo.yaml",
    ),
)
@click.option("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="dashboard address")
@click.option(
    "--data-dir",
    type=PATH,
    default=None,
    help="keep the demo's data here (default: a temporary directory, removed at the end)",
)
@click.option(
    "--rate", type=float, default=None, help="simulated XRootD transfers per second (200)"
)
@click.option(
    "--backfill-days",
    type=float,
    default=None,
    help="days of EventIndex history made on the first start (30)",
)
@click.option("--print-pipeline", is_flag=True, help="print the demo's pipeline file and exit")
def demo(
    *,
    listen: str,
    data_dir: Path | None,
    rate: float | None,
    backfill_days: float | None,
    print_pipeline: bool,
) -> int:
    """Run a simulated grid, the pipeline and the dashboard, with nothing to set up.

    Start simulated PanDA job traffic, XRootD transfers and EventIndex-like modules, the
    pipeline with its time-series store and module statuses, and the dashboard. Stop it with
    Ctrl-C.
    """
    from gridwatch.runtime.runner import Runtime

    if print_pipeline:
        sys.stdout.write(demo_text())
        return 0
    temporary = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="gridwatch-demo-")) if data_dir is None else data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRIDWATCH_DEMO_DIR"] = str(data_dir.resolve())
    os.environ["GRIDWATCH_PYTHON"] = sys.executable
    try:
        pipeline = demo_pipeline(rate, backfill_days)
        # The job database's tables exist before the reader's first query; the simulator
        # service fills in recent history and then carries on live.
        from gridwatch.sim.panda import PandaSimulator

        PandaSimulator(f"sqlite:///{data_dir.resolve()}/panda.db").create()
        runtime = Runtime(pipeline, data_dir, listen)
        print(f"gridwatch demo: open http://{listen}/ (Ctrl-C stops)", file=sys.stderr)
        asyncio.run(runtime.run())
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0
