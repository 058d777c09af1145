"""Dead letters: records that could not be taken, kept as envelopes with the reason.

A dead letter is itself an envelope (``producer: gridwatch``, ``type: deadletter``), so any sink
can store it and ``gridwatch deadletter replay`` can send the original back through the bus.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gridwatch.record.envelope import Record, encode, topic_name
from gridwatch.record.ids import record_id
from gridwatch.record.nesting import DEFAULT_MAX_DEPTH, nests_deeper_than

PRODUCER = "gridwatch"
TYPE = "deadletter"
TOPIC = topic_name(PRODUCER, "raw", TYPE)
DEADLETTER_ORIGIN = "_deadletter"
"""The origin of dead letters on the bus (sinks name it as the input ``_deadletter``)."""


ORIGINAL_MAX_DEPTH = DEFAULT_MAX_DEPTH + 3
"""How deeply an original may nest and still be kept as an object: an envelope whose data is
at the default limit, itself inside a dead letter (a sink's dead letter of a dead letter)."""


def dead_letter(
    raw: bytes,
    reason: str,
    component: str,
    attempts: int = 1,
    max_depth: int = ORIGINAL_MAX_DEPTH,
) -> bytes:
    """The envelope line that records why ``raw`` (one input record) was rejected.

    The original is kept as an object when it is JSON that nests at most ``max_depth`` levels,
    else as its text, exactly as sent: nothing here recurses further than ``max_depth``.
    """
    data = {
        "reason": reason,
        "component": component,
        "attempts": attempts,
        "record": _original(raw, max_depth),
    }
    ts = round(time.time() * 1000)
    return encode(Record(PRODUCER, TYPE, ts, record_id(PRODUCER, TYPE, ts, data), data=data))


def _original(raw: bytes, max_depth: int) -> Any:
    """``raw`` decoded, or its text when it is not JSON or nests deeper than ``max_depth``."""
    try:
        original = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return raw.decode("utf-8", errors="replace")
    if isinstance(original, dict | list) and nests_deeper_than(original, max_depth):
        return raw.decode("utf-8", errors="replace")
    return original


def original_of(letter: Record) -> Any:
    """The rejected input that a dead letter carries (an object, or the raw text)."""
    return letter.data.get("record")
