"""The ``parquet_archive`` sink (its options and an example: README.md beside this file)."""

from gridwatch.sinks.parquet_archive.sink import ParquetArchiveSink

COMPONENT = ParquetArchiveSink
__all__ = ["COMPONENT", "ParquetArchiveSink"]
