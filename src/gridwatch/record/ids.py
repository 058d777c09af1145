"""Record ids and content hashes: the one place gridwatch hashes things.

Ids are 128-bit (seed 000 shows what 32-bit hashes cost), deterministic, and computed over
canonical JSON so that equal values always give equal ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec
from xxhash import xxh3_128_hexdigest

_sorted_encoder = msgspec.json.Encoder(order="sorted")


def record_id(producer: str, type_: str, timestamp_ms: int, data: dict[str, Any]) -> str:
    """The deterministic 128-bit id of a record, as 32 hex digits.

    The payload is hashed in canonical JSON (sorted keys, keys and values both encoded), so
    ``{"a": "b"}`` and ``{"b": "a"}`` differ and key order does not matter. XXH3-128 is not
    cryptographic, which ids do not need, and is several times faster than BLAKE2b here.
    """
    prefix = f"{producer}\0{type_}\0{timestamp_ms}\0".encode()
    return xxh3_128_hexdigest(prefix + _sorted_encoder.encode(data))


def hash128(*parts: bytes) -> str:
    """A 128-bit hex digest of byte strings, unambiguous about where each part ends."""
    return PartsHash().hexdigest(*parts)


class PartsHash:
    """:func:`hash128` of leading parts hashed once, continued for each call:
    ``PartsHash(a, b).hexdigest(c, d) == hash128(a, b, c, d)``.

    BLAKE2b-128 over each part preceded by its length (8 bytes, little-endian).
    """

    __slots__ = ("_base",)

    def __init__(self, *parts: bytes) -> None:
        self._base = hashlib.blake2b(digest_size=16)
        self._base.update(b"".join(map(_framed, parts)))

    def hexdigest(self, *parts: bytes, tail: bytes = b"") -> str:
        """The digest of the leading parts, then ``parts``, then ``tail`` as it is (unframed:
        callers whose last part has a fixed or self-delimiting form)."""
        data = tail
        for part in reversed(parts):  # one bytes object, one update: ids of many rows or bins
            size = len(part)
            data = (_LENGTHS[size] if size < 256 else size.to_bytes(8, "little")) + part + data
        h = self._base.copy()
        h.update(data)
        return h.hexdigest()


_LENGTHS = [n.to_bytes(8, "little") for n in range(256)]


def _framed(part: bytes) -> bytes:
    size = len(part)
    return (_LENGTHS[size] if size < 256 else size.to_bytes(8, "little")) + part


def labelled_digest(fields: Iterable[tuple[str, bytes]], payload: bytes | None) -> bytes:
    """A 16-byte BLAKE2b digest of named values (``{len(name)}:{name}={len(value)}:{value}``
    each), then of ``payload`` after ``data=`` (when given): the identity of a record's content
    for duplicate detection."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in fields:
        h.update(b"%d:%s=%d:" % (len(name), name.encode(), len(value)))
        h.update(value)
    if payload is not None:
        h.update(b"data=")
        h.update(payload)
    return h.digest()


def hash64(data: bytes) -> int:
    """A stable signed 64-bit integer of ``data`` (BLAKE2b, 8 bytes, little-endian), for ids
    stored in 64-bit integer columns."""
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys: equal values always give equal bytes."""
    return _sorted_encoder.encode(value)
