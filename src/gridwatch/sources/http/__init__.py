"""The ``http`` source (its options and an example: README.md beside this file)."""

from gridwatch.sources.http.source import HttpSource

COMPONENT = HttpSource
__all__ = ["COMPONENT", "HttpSource"]
