"""The ``rename_fields`` transform (its options and an example: README.md beside this file)."""

from gridwatch.transforms.rename_fields.transform import RenameFields

COMPONENT = RenameFields
__all__ = ["COMPONENT", "RenameFields"]
