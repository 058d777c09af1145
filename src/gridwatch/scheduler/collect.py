"""Runs one Python collector in a child process: ``python -m gridwatch.scheduler.collect``.

Usage: ``collect MODULE:FUNCTION [JSON_KWARGS]``. The function returns or yields envelope dicts
(or one dict); each is written to the original stdout as one JSON line, while anything the
collector prints goes to stderr, which the scheduler keeps as the run's output.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO


def _emit(out: BinaryIO, item: Any) -> None:
    try:
        line = json.dumps(item, default=str, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        line = json.dumps({"_unserialisable": repr(item), "_error": str(exc)})
    out.write(line.encode() + b"\n")


def main(argv: list[str]) -> int:
    """Run the collector named in ``argv``; exit status 0 when it returned normally."""
    if len(argv) not in (1, 2) or ":" not in argv[0]:
        print(
            "usage: python -m gridwatch.scheduler.collect MODULE:FUNCTION [JSON]", file=sys.stderr
        )
        return 2
    records = os.fdopen(os.dup(1), "wb", buffering=65536)
    os.dup2(2, 1)  # the collector's own prints must not mix with the records
    sys.stdout = sys.stderr
    module_name, function_name = argv[0].split(":", 1)
    kwargs = json.loads(argv[1]) if len(argv) == 2 else {}
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**kwargs)
    items: Iterable[Any] = [result] if isinstance(result, dict) else (result or [])
    for item in items:
        _emit(records, item)
        records.flush()  # a slow generator's records reach the bus as they come
    records.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
