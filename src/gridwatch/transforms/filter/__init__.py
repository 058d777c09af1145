"""The ``filter`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.filter.transform import Filter

COMPONENT = Filter
__all__ = ["COMPONENT", "Filter"]
