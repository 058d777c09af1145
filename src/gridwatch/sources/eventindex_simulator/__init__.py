"""The ``eventindex_simulator`` source (its options and an example: README.md beside this file)."""

from gridwatch.sources.eventindex_simulator.source import EventIndexSimulator

COMPONENT = EventIndexSimulator
__all__ = ["COMPONENT", "EventIndexSimulator"]
