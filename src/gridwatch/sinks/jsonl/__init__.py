"""The ``jsonl`` sink (its options and an example: README.md beside this file)."""

from gridwatch.sinks.jsonl.sink import JsonlSink

COMPONENT = JsonlSink
__all__ = ["COMPONENT", "JsonlSink"]
