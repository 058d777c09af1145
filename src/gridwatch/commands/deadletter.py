"""``gridwatch deadletter``: list dead letters, or send their records through the bus again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from gridwatch.bus import existing_bus
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, decode_lines
from gridwatch.record.deadletter import TOPIC, original_of
from gridwatch.runtime.publish import Publisher


def register(subparsers: Any) -> None:
    """Add ``deadletter list`` and ``deadletter replay``."""
    parser = subparsers.add_parser(
        "deadletter",
        help="list or replay rejected records",
        description="Dead letters are the records that a component rejected, with the reason. "
        "List them, or validate their records again and append the good ones to the bus.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("gridwatch-data"),
        help="the pipeline's data directory (default: ./gridwatch-data)",
    )
    parser.add_argument("--component", help="only letters from this component")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="print dead letters as NDJSON")
    listing.set_defaults(handler=_list)
    replay = actions.add_parser(
        "replay",
        help="append the letters' records to the bus again",
        description="Validate each dead letter's record again and append the valid ones to the "
        "bus as if ORIGIN had produced them, so the sinks that take ORIGIN's records get them. "
        "Records that are still invalid are reported and left where they are.",
    )
    replay.add_argument(
        "--as",
        dest="origin",
        required=True,
        metavar="ORIGIN",
        help="the component id to append the records under",
    )
    replay.set_defaults(handler=_replay)


def _letters(args: argparse.Namespace) -> list[Any]:
    bus = existing_bus(args.data_dir)
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
    return [x for x in letters if args.component in (None, x.data.get("component"))]


def _list(args: argparse.Namespace) -> int:
    for letter in _letters(args):
        sys.stdout.write(msgspec.json.encode(letter).decode() + "\n")
    return 0


def _replay(args: argparse.Namespace) -> int:
    letters = _letters(args)
    result = EnvelopeDecoder().decode_objects([original_of(x) for x in letters])
    for rejection in result.rejected:
        print(f"still invalid: {rejection.reason}", file=sys.stderr)
    if result.records:
        publisher = Publisher(existing_bus(args.data_dir), Metrics())
        publisher.publish(args.origin, result.records)
    print(f"replayed {len(result.records)} of {len(letters)} dead letters as {args.origin}")
    return 0 if not result.rejected else 1
