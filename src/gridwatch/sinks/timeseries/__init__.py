"""The ``timeseries`` sink (its options and an example: README.md beside this file)."""

from gridwatch.sinks.timeseries.sink import TimeseriesSink

COMPONENT = TimeseriesSink
__all__ = ["COMPONENT", "TimeseriesSink"]
