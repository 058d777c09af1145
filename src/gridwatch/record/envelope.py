"""The MONIT envelope: decoding, validation and the canonical identity of records.

Every piece of data in gridwatch is one :class:`Record`. Records arrive as JSON envelopes
(``producer``, ``type``, ``type_prefix``, ``timestamp``, ``host``, ``_id``, ``version``,
``data``, ``idb_tags``, ``idb_fields``), are validated a whole batch at a time, and are stored
with the timestamp in UTC milliseconds and a deterministic 128-bit ``_id``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

import msgspec

from gridwatch.record.ids import record_id
from gridwatch.record.nesting import DEFAULT_MAX_DEPTH, bounded_value, nests_deeper_than

TypePrefix = Literal["raw", "enr", "agg"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Producer and type names. ``$`` ends the text in pydantic's (Rust) engine and in JSON
Schema, but Python's ``re`` lets it match before a final newline: check names in Python with
:func:`is_name` (a full match), never with ``re.match``."""
_NAME = re.compile(NAME_PATTERN)
# Epoch values at or above this magnitude are milliseconds: 1e11 s is the year 5138,
# while 1e11 ms is March 1973, so real-world data is never ambiguous.
_MS_THRESHOLD = 1e11
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Timestamps must name an instant between the years 1 and 9999 (what datetime, Parquet and
# every sink can represent), whatever the time policy allows.
MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class Record(msgspec.Struct, omit_defaults=True, gc=False):
    """A validated envelope. ``timestamp`` is UTC epoch milliseconds, ``id`` is never empty.

    Records are not tracked by the cyclic garbage collector (a record never refers back to
    itself), so decoding thousands of them does not set off collections.
    """

    producer: str
    type: str
    timestamp: int
    id: str = msgspec.field(name="_id", default="")
    type_prefix: TypePrefix = "raw"
    host: str | None = None
    version: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    idb_tags: list[str] | None = None
    idb_fields: list[str] | None = None

    @property
    def topic(self) -> str:
        """The bus topic that this record is routed to."""
        return topic_name(self.producer, self.type_prefix, self.type)


class _Wire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An envelope as senders write it, before normalisation."""

    producer: str
    type: str
    type_prefix: TypePrefix = "raw"
    timestamp: int | float | str | None = None
    host: str | None = None
    id: str | None = msgspec.field(name="_id", default=None)
    version: str | int | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    idb_tags: list[str] | None = None
    idb_fields: list[str] | None = None


def topic_name(producer: str, type_prefix: str, type_: str) -> str:
    """The bus topic of an envelope: ``{producer}_{type_prefix}_{type}``."""
    return f"{producer}_{type_prefix}_{type_}"


_TOPIC = re.compile(r"^(?P<producer>.+?)_(?P<prefix>raw|enr|agg)_(?P<type>.+)$")


def is_name(text: str) -> bool:
    """Whether ``text`` is a producer or type name (:data:`NAME_PATTERN`, to its very end)."""
    return _NAME.fullmatch(text) is not None


def split_topic(topic: str) -> tuple[str, str, str] | None:
    """(producer, type_prefix, type) of a topic name (``None`` if it is not one); a producer
    name that itself holds ``_raw_``, ``_enr_`` or ``_agg_`` is split at its first one."""
    match = _TOPIC.match(topic)
    return None if match is None else (match["producer"], match["prefix"], match["type"])


class RecordError(ValueError):
    """A record that cannot be accepted; the message says where and why."""


@dataclass(frozen=True)
class TimePolicy:
    """How far from now a record's timestamp may be before it is rejected."""

    max_future_s: float = 3600.0
    max_past_s: float = 20 * 365 * 86400.0


@dataclass(frozen=True)
class Rejection:
    """One rejected record: its position in the input, the reason, and the input itself."""

    index: int
    reason: str
    raw: bytes


@dataclass
class DecodeResult:
    """The outcome of decoding a batch: accepted records and rejections, in input order."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(Record)
_records_decoder = msgspec.json.Decoder(list[Record])
_wire_decoder = msgspec.json.Decoder(_Wire)
_wire_list_decoder = msgspec.json.Decoder(list[_Wire])
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
TYPED_LEVELS = 10
"""Up to this depth msgspec itself bounds ``data`` while it decodes (its type doubles with
every level); a deeper limit is checked by a walk, only for bodies that go past this depth."""


@functools.cache
def _bounded_decoders(levels: int) -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]:
    """Decoders of an envelope array and of one envelope whose data nests at most ``levels``
    levels: a body they take needs no depth walk."""
    data: Any = msgspec.field(default_factory=dict)
    wire = msgspec.defstruct(
        "_BoundedWire",
        [("data", dict[str, bounded_value(levels - 1)], data)],  # type: ignore[misc]
        bases=(_Wire,),
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(list[wire]), msgspec.json.Decoder(wire)  # type: ignore[valid-type]


_AT_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def encode(record: Record) -> bytes:
    """One record as envelope JSON (no newline)."""
    return _encoder.encode(record)


def encode_envelopes(
    producer: str,
    type_: str,
    type_prefix: TypePrefix,
    version: str | None,
    rows: Iterable[tuple[int, str, Any]],
) -> list[bytes]:
    """Envelope lines of records of one producer and type from ``(timestamp, _id, data)`` rows,
    byte for byte as :func:`encode` writes their records; ``data`` may also be a struct that
    encodes as the JSON object (a page of rows needs no dict per row)."""
    enc = _encoder.encode
    return [
        enc(Record(producer, type_, stamp, id_, type_prefix, None, version, data))
        for stamp, id_, data in rows
    ]


def encode_lines(records: Iterable[Record]) -> list[bytes]:
    """Records as envelope JSON lines, ready for the bus."""
    if isinstance(records, EncodedRecords):
        return list(records.lines)
    enc = _encoder.encode
    return [enc(r) for r in records]


class EncodedRecords(Sequence[Record]):
    """Records of one topic that a source built directly as envelope JSON lines.

    The runtime appends the lines as they are; the :class:`Record` objects are made only when
    something reads them (a transform downstream, a test): by ``build`` when given (so the
    values are exactly what the source would have put in them), else by decoding the lines.
    """

    __slots__ = ("_build", "_records", "lines", "topic")

    def __init__(
        self, topic: str, lines: list[bytes], build: Callable[[], list[Record]] | None = None
    ) -> None:
        self.topic = topic
        self.lines = lines
        self._build = build
        self._records: list[Record] | None = None

    def records(self) -> list[Record]:
        """The records as objects (built once, on first use)."""
        if self._records is None:
            self._records = self._build() if self._build is not None else decode_lines(self.lines)
            self._build = None
        return self._records

    def __len__(self) -> int:
        return len(self.lines)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        return self.records()[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())


def encode_joined(records: Sequence[Record]) -> bytes:
    """Records as envelope JSON lines joined by newlines, in one call (no trailing newline)."""
    return _encoder.encode_lines(records)[:-1]


def decode_lines(lines: Sequence[bytes]) -> list[Record]:
    """Decode envelope lines that gridwatch itself wrote (already validated)."""
    payload = getattr(lines, "payload", None)
    if isinstance(payload, bytes):  # one newline-joined buffer (JSON has no raw newlines)
        return (
            _records_decoder.decode(b"[" + payload.replace(b"\n", b",") + b"]") if payload else []
        )
    return _records_decoder.decode(b"[" + b",".join(lines) + b"]")


def decode_one(line: bytes) -> Record:
    """Decode one envelope line that gridwatch itself wrote."""
    return _record_decoder.decode(line)


def to_epoch_ms(value: int | float | str) -> int:
    """Epoch seconds, epoch milliseconds (detected by magnitude) or ISO 8601, as UTC ms."""
    if isinstance(value, str):
        return _parse_time_string(value)
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise RecordError(f"expected epoch seconds or milliseconds, got {value!r}")
    ms = value if abs(value) >= _MS_THRESHOLD else value * 1000
    return round(ms)


def to_epoch_ms_at(path: str, value: int | float | str) -> int:
    """:func:`to_epoch_ms`, with the field's path in the error message."""
    try:
        return to_epoch_ms(value)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def _parse_time_string(text: str) -> int:
    stripped = text.strip()
    try:
        return to_epoch_ms(float(stripped))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(stripped)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):  # not ISO 8601, or out of datetime's range in UTC
        raise RecordError(f"expected epoch or ISO 8601 time, got {text!r}") from None


def format_ms(ms: int) -> str:
    """UTC milliseconds as ISO 8601, for messages and file names (``{ms} ms`` outside the
    years 1 to 9999)."""
    if not MIN_MS <= ms <= MAX_MS:
        return f"{ms} ms"
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class _Clock:
    """Now, and the accepted range of timestamps, fixed for one batch."""

    now_ms: int
    earliest_ms: float
    latest_ms: float


class EnvelopeDecoder:
    """Decodes and validates batches of envelopes, keeping every good record.

    One bad record never fails its batch: it becomes a :class:`Rejection` with a reason
    that names its position, e.g. ``$[3].producer: Expected `str`, got `int```. A record whose
    ``data`` nests more than ``max_depth`` levels of objects and arrays is one of them.
    """

    def __init__(
        self,
        policy: TimePolicy | None = None,
        clock: Callable[[], float] = time.time,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.policy = policy or TimePolicy()
        self.clock = clock
        self.max_depth = max_depth
        self._bounded_list, self._bounded_one = _bounded_decoders(min(max_depth, TYPED_LEVELS))
        self._valid_names: set[str] = set()

    def decode_json(self, body: bytes) -> DecodeResult:
        """Decode one JSON envelope or a JSON array of envelopes.

        Raises :class:`RecordError` when the body is not JSON at all or not an object/array.
        """
        stripped = body.lstrip()
        if stripped[:1] == b"{":
            return self._decode_items([body])
        if stripped[:1] != b"[":
            raise RecordError("expected a JSON object or array of envelope objects")
        decoded = self._decode_wires(body)
        if decoded is not None:
            # A record nested almost as deep as the recursion limit can be decoded once but
            # not found again for its bytes: then go record by record.
            with contextlib.suppress(RecursionError):
                return self._normalise_all(*decoded, body)
        try:
            items = _raw_list_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise RecordError(f"malformed JSON: {exc}") from None
        except RecursionError:
            # Too deep even to find where each record ends: refuse the body as a whole.
            raise RecordError(
                f"the body nests too deeply to be split into records "
                f"(a record's data may nest at most {self.max_depth} levels)"
            ) from None
        return self._decode_items([bytes(item) for item in items])

    def _decode_wires(self, body: bytes) -> tuple[list[_Wire], bool] | None:
        """The envelopes of a JSON array in one pass, and whether their depth is known to be
        within the limit; ``None`` when some record needs a look on its own."""
        for decoder, bounded in ((self._bounded_list, True), (_wire_list_decoder, False)):
            try:
                return decoder.decode(body), bounded
            except (msgspec.ValidationError, RecursionError):
                continue
            except msgspec.DecodeError as exc:
                raise RecordError(f"malformed JSON: {exc}") from None
        return None

    def decode_ndjson(self, body: bytes) -> DecodeResult:
        """Decode newline-delimited envelopes; blank lines are ignored, bad lines rejected."""
        lines = [line for line in body.split(b"\n") if line.strip()]
        return self._decode_items(lines)

    def decode_objects(self, objects: Sequence[Any]) -> DecodeResult:
        """Validate Python objects (dicts or Records) as envelopes, e.g. from a collector."""
        result = DecodeResult()
        clock = self._clock()
        for index, obj in enumerate(objects):
            try:
                plain = msgspec.to_builtins(obj) if isinstance(obj, Record) else obj
                wire = msgspec.convert(plain, _Wire)
                result.records.append(self._normalise(wire, clock))
            except (msgspec.ValidationError, RecordError, RecursionError) as exc:
                raw = _safe_encode(obj)
                result.rejected.append(Rejection(index, self._reason(index, exc), raw))
        return result

    def _decode_items(self, items: Sequence[bytes]) -> DecodeResult:
        result = DecodeResult()
        clock = self._clock()
        for index, item in enumerate(items):
            try:
                result.records.append(self._decode_one(item, clock))
            except (msgspec.DecodeError, RecordError, RecursionError) as exc:
                result.rejected.append(Rejection(index, self._reason(index, exc), item))
        return result

    def _decode_one(self, item: bytes, clock: _Clock) -> Record:
        try:
            return self._normalise(self._bounded_one.decode(item), clock, bounded=True)
        except msgspec.ValidationError:  # deeper than the typed bound, or invalid: say why
            return self._normalise(_wire_decoder.decode(item), clock)

    def _normalise_all(self, wires: list[_Wire], bounded: bool, body: bytes) -> DecodeResult:
        result = DecodeResult()
        records = result.records
        clock = self._clock()
        names = self._valid_names
        originals: list[msgspec.Raw] | None = None
        for index, wire in enumerate(wires):
            # The common case inline: names seen before, an epoch number in range, flat data.
            ts = wire.timestamp
            if (
                type(ts) is int
                and wire.producer in names
                and wire.type in names
                and (bounded or not nests_deeper_than(wire.data, self.max_depth))
            ):
                ms = ts * 1000 if -_MS_THRESHOLD < ts < _MS_THRESHOLD else ts
                if clock.earliest_ms <= ms <= clock.latest_ms:
                    records.append(_record(wire, ms))
                    continue
            try:
                records.append(self._normalise(wire, clock, bounded))
            except RecordError as exc:
                # Keep the sender's exact bytes for the dead letter (decoded only when needed).
                originals = originals or _raw_list_decoder.decode(body)
                raw = bytes(originals[index])
                result.rejected.append(Rejection(index, self._reason(index, exc), raw))
        return result

    def _normalise(self, wire: _Wire, clock: _Clock, bounded: bool = False) -> Record:
        """The record of ``wire``; ``bounded``: its data is known to be within the depth."""
        names = self._valid_names
        if wire.producer not in names:
            self._check_name("producer", wire.producer)
        if wire.type not in names:
            self._check_name("type", wire.type)
        if not bounded and nests_deeper_than(wire.data, self.max_depth):
            raise RecordError(f"$.data: {self._too_deep}")
        value = wire.timestamp
        if value is None:
            ts = clock.now_ms
        elif type(value) is int:  # the common case: epoch seconds or milliseconds
            ts = value * 1000 if -_MS_THRESHOLD < value < _MS_THRESHOLD else value
        else:
            ts = to_epoch_ms_at("$.timestamp", value)
        if not clock.earliest_ms <= ts <= clock.latest_ms:
            self._explain_time(ts)
        return _record(wire, ts)

    @property
    def _too_deep(self) -> str:
        return f"nested deeper than {self.max_depth} levels"

    def _reason(self, index: int, exc: Exception) -> str:
        if isinstance(exc, RecursionError):  # only ``data`` can nest without bound
            return f"$[{index}].data: {self._too_deep}"
        return _reason(index, exc)

    def _check_name(self, field: str, name: str) -> None:
        if not is_name(name):
            raise RecordError(f"$.{field}: {name!r} is not a lowercase name ({NAME_PATTERN})")
        if len(self._valid_names) > 100_000:  # names repeat; a flood of new ones must not grow it
            self._valid_names.clear()
        self._valid_names.add(name)

    def _clock(self) -> _Clock:
        now_ms = round(self.clock() * 1000)
        return _Clock(
            now_ms,
            max(now_ms - self.policy.max_past_s * 1000, MIN_MS),
            min(now_ms + self.policy.max_future_s * 1000, MAX_MS),
        )

    def _explain_time(self, ts: int) -> None:
        if not MIN_MS <= ts <= MAX_MS:
            raise RecordError(
                f"$.timestamp: {ts} ms is outside the years 1 to 9999 "
                "(check the unit: seconds, milliseconds or ISO 8601)"
            )
        if ts > self._clock().latest_ms:
            raise RecordError(
                f"$.timestamp: {format_ms(ts)} is more than {self.policy.max_future_s:g} s "
                "in the future (check the sender's clock)"
            )
        raise RecordError(
            f"$.timestamp: {format_ms(ts)} is more than {self.policy.max_past_s:g} s in the past"
        )


def _record(wire: _Wire, ts: int) -> Record:
    """The record of a validated envelope whose timestamp is ``ts`` (UTC ms)."""
    return Record(
        wire.producer,
        wire.type,
        ts,
        wire.id or record_id(wire.producer, wire.type, ts, wire.data),
        wire.type_prefix,
        wire.host,
        None if wire.version is None else str(wire.version),
        wire.data,
        wire.idb_tags,
        wire.idb_fields,
    )


def _reason(index: int, exc: Exception) -> str:
    """Prefix a decoder message with the record's position: ``$[3].producer: ...``."""
    message = str(exc)
    match = _AT_PATH.match(message)
    if match:
        hint = " (expected raw, enr or agg)" if match["path"] == ".type_prefix" else ""
        return f"$[{index}]{match['path']}: {match['msg']}{hint}"
    if message.startswith("$"):
        return f"$[{index}]{message[1:]}"
    return f"$[{index}]: {message}"


def _safe_encode(obj: Any) -> bytes:
    """``obj`` as JSON for a dead letter, else its repr, else only its type's name."""
    try:
        return _encoder.encode(obj)
    except (TypeError, msgspec.EncodeError, RecursionError):
        pass
    try:
        return repr(obj).encode()
    except RecursionError:
        return f"<a {type(obj).__name__} nested too deeply to show>".encode()
