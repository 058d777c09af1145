"""A small mergeable quantile sketch (DDSketch with a 1 % relative accuracy): its buckets.

Why this one: its state is a map from logarithmic bucket index to a count, so inserting and
merging are additions of integers. The result does not depend on the order in which values
arrive or on how batches were cut, which is what lets the streaming job and the batch
recompute agree to the last digit (a t-digest's centroids depend on arrival order). Buckets
are never collapsed: for positive values between 1 ms and 30 years there are about 1,200 of
them at most, and a bin of similar values uses a few dozen.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
MIN_MAGNITUDE = 1e-9
"""Values closer to zero than this count as zero."""


def bucket_indexes(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """The signed bucket of each value: ``0`` for zero, ``±(k + 1)`` for ``±gamma^k``."""
    magnitude = np.abs(values)
    nonzero = magnitude >= MIN_MAGNITUDE
    safe = np.where(nonzero, magnitude, 1.0)
    k = np.ceil(np.log(safe) / _LOG_GAMMA).astype(np.int64)
    # Shift so that index 0 stays free for zero: positive k+BIAS is always >= 1.
    signed = np.sign(values).astype(np.int64) * (k + _BIAS)
    return np.where(nonzero, signed, 0)


_BIAS = 1 - (math.ceil(math.log(MIN_MAGNITUDE) / _LOG_GAMMA))


def bucket_value(index: int) -> float:
    """The representative value of a bucket (within the relative accuracy of its members)."""
    if index == 0:
        return 0.0
    k = abs(index) - _BIAS
    value = 2 * GAMMA**k / (GAMMA + 1)
    return value if index > 0 else -value
