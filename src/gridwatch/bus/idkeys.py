"""Record ids as 16-byte keys, and the 64-bit fingerprints that an :class:`IdIndex` holds.

A record's ``_id`` is normally 32 lowercase hex digits (128 bits); such an id is its own key.
A sender may choose any other text as ``_id``: its key is a 128-bit hash of the text, so two
ids share a key only if they are equal (or with a chance of 2^-128).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from xxhash import xxh3_128_digest

KEY_BYTES = 16
HEX_DIGITS = 2 * KEY_BYTES

Fingerprints = npt.NDArray[np.uint64]

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def id_keys(ids: Sequence[str]) -> bytes:
    """The keys of ``ids``, concatenated (16 bytes each, in order)."""
    spaced = " ".join(ids)
    if len(spaced) == (HEX_DIGITS + 1) * len(ids) - 1:
        try:
            keys = bytes.fromhex(spaced)
        except ValueError:
            keys = b""
        # Written back the same way only if every id is exactly 32 lowercase hex digits.
        if keys.hex(" ", KEY_BYTES) == spaced:
            return keys
    return b"".join(map(id_key, ids))


def id_key(record_id: str) -> bytes:
    """One id's 16-byte key: its bytes when it is 32 lowercase hex digits, else a hash."""
    if len(record_id) == HEX_DIGITS:
        try:
            key = bytes.fromhex(record_id)
        except ValueError:
            key = b""
        if key.hex() == record_id:  # "ABCD..." is another id than "abcd...", and no spaces
            return key
    return xxh3_128_digest(b"\0" + record_id.encode(errors="surrogatepass"))


def fingerprints(keys: bytes) -> Fingerprints:
    """A 64-bit fingerprint of each key whose top bits depend on every bit of the key (an
    index takes its buckets from them).

    Multiplying spreads each bit over the bits above it: enough, as only the top bits must
    be well mixed, for ids chosen by senders that share most of their bits (counters) too.
    """
    halves = np.frombuffer(keys, dtype=np.uint64).reshape(-1, 2)
    with np.errstate(over="ignore"):
        return (halves[:, 0] ^ halves[:, 1] * _MIX_1) * _MIX_2


def key_at(keys: bytes, index: int) -> bytes:
    """The ``index``-th key of concatenated ``keys``."""
    return keys[index * KEY_BYTES : (index + 1) * KEY_BYTES]
