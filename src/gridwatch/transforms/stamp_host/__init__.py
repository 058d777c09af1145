"""The ``stamp_host`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.stamp_host.transform import StampHost

COMPONENT = StampHost
__all__ = ["COMPONENT", "StampHost"]
