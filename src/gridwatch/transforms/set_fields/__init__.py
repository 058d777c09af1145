"""The ``set_fields`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.set_fields.transform import SetFields

COMPONENT = SetFields
__all__ = ["COMPONENT", "SetFields"]
