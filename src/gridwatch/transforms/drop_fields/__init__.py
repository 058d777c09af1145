"""The ``drop_fields`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.drop_fields.transform import DropFields

COMPONENT = DropFields
__all__ = ["COMPONENT", "DropFields"]
