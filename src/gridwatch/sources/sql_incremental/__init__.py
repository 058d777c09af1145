"""The ``sql_incremental`` source (its options and an example: README.md beside this file)."""

from gridwatch.sources.sql_incremental.source import SqlIncrementalSource

COMPONENT = SqlIncrementalSource
__all__ = ["COMPONENT", "SqlIncrementalSource"]
