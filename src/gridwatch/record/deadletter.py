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

PRODUCER = "gridwatch"
TYPE = "deadletter"
TOPIC = topic_name(PRODUCER, "raw", TYPE)
DEADLETTER_ORIGIN = "_deadletter"
"""The origin of dead letters on the bus (sinks name it as the input ``_deadletter``)."""


def dead_letter(raw: bytes, reason: str, component: str, attempts: int = 1) -> bytes:
    """The envelope line that records why ``raw`` (one input record) was rejected."""
    original: Any
    try:
        original = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        original = raw.decode("utf-8", errors="replace")
    data = {
        "reason": reason,
        "component": component,
        "attempts": attempts,
        "record": original,
    }
    ts = round(time.time() * 1000)
    return encode(Record(PRODUCER, TYPE, ts, record_id(PRODUCER, TYPE, ts, data), data=data))


def original_of(letter: Record) -> Any:
    """The rejected input that a dead letter carries (an object, or the raw text)."""
    return letter.data.get("record")
