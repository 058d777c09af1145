"""The JSON form of one bin's mergeable state: the ``_acc`` field of output bins.

``[count, active_ms, ended, sums, n, mins, maxs, sketches]``: the counts, then per field its
fixed-point sum and how many values it holds, its min and max, and its sketch as
``[[bucket, count], ...]`` sorted by bucket. A field is present only where it has values.
:meth:`~gridwatch.windowing.cells.Cells.acc_json` writes it and
:meth:`~gridwatch.windowing.cells.Cells.from_states` reads it back into cells.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

State = list[Any]
EMPTY: State = [0, 0, 0, {}, {}, {}, {}, {}]
"""No values: merging it changes nothing."""
_INT64 = range(-(2**63), 2**63)


def read_state(value: Any) -> State:
    """A state as an input bin carries it, checked and with plain types.

    Raises ``ValueError`` or ``TypeError`` for anything else (a bin the job cannot use).
    """
    count, active, ended, sums, n, mins, maxs, sketches = value
    return [
        _int(count),
        _int(active),
        _int(ended),
        {str(name): _int(v) for name, v in dict(sums).items()},
        {str(name): _int(v) for name, v in dict(n).items()},
        {str(name): float(v) for name, v in dict(mins).items()},
        {str(name): float(v) for name, v in dict(maxs).items()},
        {
            str(name): [[_int(bucket), _int(c)] for bucket, c in pairs]
            for name, pairs in dict(sketches).items()
        },
    ]


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _INT64:
        raise ValueError(f"expected a 64-bit integer, got {value!r}")
    return value


def state_fields(state: State) -> Iterator[tuple[str, str]]:
    """The ``(kind, field)`` pairs a state holds (kinds as in ``AggSpec.kept``)."""
    for name in (*state[3], *state[4]):
        yield "sum", name
    for name in (*state[5], *state[6]):
        yield "range", name
    for name in state[7]:
        yield "sketch", name
