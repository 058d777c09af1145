"""The ``gridwatch`` command."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click
from click.shell_completion import shell_complete

from gridwatch import __version__
from gridwatch.commands import batch, deadletter, demo, pipeline, reload, replay, sim, tasks
from gridwatch.commands.options import examples
from gridwatch.config.problems import ConfigProblems
from gridwatch.errors import GridwatchError

PROG = "gridwatch"
COMPLETE_VAR = "_GRIDWATCH_COMPLETE"  # _GRIDWATCH_COMPLETE=bash_source gridwatch: the script
SIGPIPE_STATUS = 141  # what a shell reports for a command whose reader went away (128 + 13)

COMMANDS: list[click.Command] = [
    pipeline.run,
    demo.demo,
    pipeline.validate,
    pipeline.schema,
    replay.replay,
    batch.batch,
    tasks.tasks,
    reload.reload,
    deadletter.deadletter,
    sim.sim,
]


@click.group(
    PROG,
    commands=COMMANDS,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=examples(
        "gridwatch demo",
        "gridwatch validate pipeline.yaml && gridwatch run pipeline.yaml",
        "gridwatch --log-level debug run pipeline.yaml --data-dir /var/lib/gridwatch",
        "gridwatch COMMAND --help",
    ),
)
@click.version_option(__version__, prog_name=PROG, message="%(prog)s %(version)s")
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="how much to log on stderr (default: info)",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """Monitoring pipeline for grid computing.

    Collect jobs, transfers, services and logs; buffer them durably; enrich, aggregate,
    archive and serve them.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(2)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:
        return shell_complete(cli, {}, PROG, COMPLETE_VAR, instruction)
    try:
        status = _invoke(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, not at exit, where a closed pipe would print a traceback
    except BrokenPipeError:  # e.g. `gridwatch schema | head -1`
        _discard_stdout()
        return SIGPIPE_STATUS
    return status


def _invoke(args: list[str]) -> int:
    """Parse ``args`` and run the command; errors become messages and exit statuses."""
    try:
        with cli.make_context(PROG, args) as ctx:
            return int(cli.invoke(ctx) or 0)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.ClickException as exc:  # usage mistakes: exit status 2
        exc.show()
        return exc.exit_code
    except ConfigProblems as exc:  # every problem of a pipeline file, one per line
        print(exc, file=sys.stderr)
        return 1
    except GridwatchError as exc:
        print(f"gridwatch: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, click.Abort):
        return 130


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush finds nothing to complain of."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
