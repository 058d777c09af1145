"""The ``stamp_time`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.stamp_time.transform import StampTime

COMPONENT = StampTime
__all__ = ["COMPONENT", "StampTime"]
