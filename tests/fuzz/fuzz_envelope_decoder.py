"""Atheris target: the envelope decoder must never raise anything but ``RecordError``.

Every accepted record must round-trip through the bus encoding, and every rejection must make a
dead letter that decodes. Run by ``test_fuzz_envelope_decoder.py`` for a bounded number of runs,
or by hand for longer:

    .venv/bin/python tests/fuzz/fuzz_envelope_decoder.py -runs=1000000
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["gridwatch"]):
    from gridwatch.record import (
        EnvelopeDecoder,
        Record,
        RecordError,
        decode_lines,
        decode_one,
        encode_lines,
    )
    from gridwatch.record.deadletter import dead_letter

DECODER = EnvelopeDecoder(max_depth=8)
FIELDS = ["producer", "type", "type_prefix", "timestamp", "host", "_id", "version", "data"]


SCALARS: list[Callable[[atheris.FuzzedDataProvider], Any]] = [
    lambda fdp: None,
    lambda fdp: fdp.ConsumeBool(),
    lambda fdp: fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 16)),  # up to 128-bit integers
    lambda fdp: fdp.ConsumeRegularFloat(),
    lambda fdp: fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12)),
    lambda fdp: fdp.PickValueInList(["panda", "jobs", "raw", "agg", "2024-01-01T00:00:00Z"]),
]


def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """A JSON value drawn from the input, nesting deeper than the decoder allows sometimes."""
    kind = fdp.ConsumeIntInRange(0, len(SCALARS) + (1 if depth < 12 else -1))
    if kind < len(SCALARS):
        return SCALARS[kind](fdp)
    if kind == len(SCALARS):
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {
        fdp.PickValueInList([*FIELDS, "x"]): value(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    }


def envelope(fdp: atheris.FuzzedDataProvider) -> dict[str, Any]:
    """Something close to an envelope: a good one with fields replaced or removed."""
    env: dict[str, Any] = {"producer": "panda", "type": "jobs", "timestamp": 1_700_000_000}
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        name = fdp.PickValueInList([*FIELDS, "x"])
        if fdp.ConsumeBool():
            env.pop(name, None)
        else:
            env[name] = value(fdp)
    return env


def body(data: bytes) -> tuple[bytes, bool]:
    """The request body to decode, and whether it is NDJSON."""
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:  # the raw bytes, as JSON
        return fdp.ConsumeBytes(fdp.remaining_bytes()), False
    if mode == 1:  # the raw bytes, as NDJSON
        return fdp.ConsumeBytes(fdp.remaining_bytes()), True
    envelopes = [envelope(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    if fdp.ConsumeBool():  # a deep record that json.dumps would not write (it recurses)
        levels = fdp.ConsumeIntInRange(0, 3000)
        envelopes[0]["data"] = {"d": "DEEP"}
        text = json.dumps(envelopes).replace('"DEEP"', "[" * levels + "]" * levels)
        return text.encode(), False
    if mode == 2:
        return json.dumps(envelopes).encode(), False
    return "\n".join(json.dumps(e) for e in envelopes).encode(), True


def check(records: list[Record], rejections: list[Any]) -> None:
    for record in records:
        (back,) = decode_lines(encode_lines([record]))
        assert back == record, (back, record)
    for rejection in rejections:
        assert rejection.reason.startswith(f"$[{rejection.index}]"), rejection.reason
        letter = decode_one(dead_letter(rejection.raw, rejection.reason, "fuzz", max_depth=9))
        assert letter.data["reason"] == rejection.reason


def test_one_input(data: bytes) -> None:
    """The fuzzer's entry point: decode, then check what came out."""
    payload, ndjson = body(data)
    decode = DECODER.decode_ndjson if ndjson else DECODER.decode_json
    try:
        result = decode(payload)
    except RecordError:
        return
    check(result.records, result.rejected)


def main() -> None:
    """Fuzz with libFuzzer's command line (e.g. ``-runs=3000``)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
