"""``gridwatch deadletter``: list dead letters, or send their records through the bus again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import msgspec

from gridwatch.bus import existing_bus
from gridwatch.commands.options import PATH, SharedOption, examples
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, decode_lines
from gridwatch.record.deadletter import TOPIC, original_of
from gridwatch.runtime.publish import Publisher

DATA_DIR = SharedOption(
    "--data-dir",
    type=PATH,
    default=Path("gridwatch-data"),
    help="the pipeline's data directory (default: ./gridwatch-data)",
)
COMPONENT = SharedOption[str | None](
    "--component", default=None, help="only letters from this component"
)


@click.group(
    no_args_is_help=False,
    short_help="list or replay rejected records",
    epilog=examples(
        "gridwatch deadletter list --data-dir gridwatch-data",
        "gridwatch deadletter --component ingest list",
        "gridwatch deadletter replay --as ingest --component ingest",
    ),
)
@DATA_DIR
@COMPONENT
def deadletter() -> None:
    """List the records that a component rejected, or put them back on the bus.

    Dead letters are the records that a component rejected, with the reason. List them, or
    validate their records again and append the good ones to the bus. --data-dir and
    --component may be given before or after the action.
    """


@deadletter.command(
    "list",
    short_help="print dead letters as NDJSON",
    epilog=examples("gridwatch deadletter list --component ingest --data-dir gridwatch-data"),
)
@DATA_DIR
@COMPONENT
def list_letters() -> int:
    """Print the dead letters as NDJSON, oldest first."""
    for letter in _letters(DATA_DIR.value(), COMPONENT.value()):
        sys.stdout.write(msgspec.json.encode(letter).decode() + "\n")
    return 0


@deadletter.command(
    "replay",
    short_help="append the letters' records to the bus again",
    epilog=examples("gridwatch deadletter replay --as ingest --data-dir gridwatch-data"),
)
@click.option(
    "--as",
    "origin",
    required=True,
    metavar="ORIGIN",
    help="the component id to append the records under",
)
@DATA_DIR
@COMPONENT
def replay_letters(origin: str) -> int:
    """Validate each dead letter's record again and append the valid ones to the bus.

    They are appended as if ORIGIN had produced them, so the sinks that take ORIGIN's records
    get them. Records that are still invalid are reported and left where they are (exit
    status 1).
    """
    data_dir = DATA_DIR.value()
    letters = _letters(data_dir, COMPONENT.value())
    result = EnvelopeDecoder().decode_objects([original_of(x) for x in letters])
    for rejection in result.rejected:
        print(f"still invalid: {rejection.reason}", file=sys.stderr)
    if result.records:
        Publisher(existing_bus(data_dir), Metrics()).publish(origin, result.records)
    print(f"replayed {len(result.records)} of {len(letters)} dead letters as {origin}")
    return 0 if not result.rejected else 1


def _letters(data_dir: Path, component: str | None) -> list[Any]:
    """The dead letters on the bus under ``data_dir``, of ``component`` only when given."""
    bus = existing_bus(data_dir)
    info = bus.topics().get(TOPIC)
    lines: list[bytes] = []
    offset = 0 if info is None else info.start
    while True:
        slices = bus.read(TOPIC, offset, 10_000)
        if not slices:
            break
        lines.extend(line for piece in slices for line in piece.lines)
        offset = slices[-1].end
    letters = decode_lines(lines)
    return [x for x in letters if component in (None, x.data.get("component"))]
