"""The ``gridwatch`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from gridwatch import __version__, commands
from gridwatch.config.problems import ConfigProblems
from gridwatch.errors import GridwatchError


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand found in :mod:`gridwatch.commands`."""
    parser = argparse.ArgumentParser(
        prog="gridwatch",
        description="Monitoring pipeline for grid computing: collect jobs, transfers, services "
        "and logs; buffer them durably; enrich, aggregate, archive and serve them.",
    )
    parser.add_argument("--version", action="version", version=f"gridwatch {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: info)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        status: int = handler(args)
    except ConfigProblems as exc:  # every problem of a pipeline file, one per line
        print(exc, file=sys.stderr)
        return 1
    except GridwatchError as exc:
        print(f"gridwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
