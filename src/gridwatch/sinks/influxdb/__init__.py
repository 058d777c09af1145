"""The ``influxdb`` sink (its options and an example: README.md beside this file)."""

from gridwatch.sinks.influxdb.sink import InfluxdbSink

COMPONENT = InfluxdbSink
__all__ = ["COMPONENT", "InfluxdbSink"]
