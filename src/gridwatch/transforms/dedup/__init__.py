"""The ``dedup`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.dedup.transform import Dedup

COMPONENT = Dedup
__all__ = ["COMPONENT", "Dedup"]
