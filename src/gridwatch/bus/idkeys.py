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
_SHIFT_1 = np.uint64(30)
_SHIFT_2 = np.uint64(27)
_SHIFT_3 = np.uint64(31)


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
    """A 64-bit fingerprint of each key in which every bit depends on every bit of the key.

    Each half goes through SplitMix64's finalizer (a bijection whose every output bit depends
    on every input bit), the second one before it is folded into the first: ids that senders
    number by counters, whose halves differ in a few bytes only, spread over the whole index.
    """
    halves = np.frombuffer(keys, dtype=np.uint64).reshape(-1, 2)
    return _mixed(halves[:, 0] ^ _mixed(halves[:, 1]))


def _mixed(words: Fingerprints) -> Fingerprints:
    with np.errstate(over="ignore"):
        words = words ^ (words >> _SHIFT_1)
        words = words * _MIX_1
        words = words ^ (words >> _SHIFT_2)
        words = words * _MIX_2
        return words ^ (words >> _SHIFT_3)


def key_at(keys: bytes, index: int) -> bytes:
    """The ``index``-th key of concatenated ``keys``."""
    return keys[index * KEY_BYTES : (index + 1) * KEY_BYTES]
