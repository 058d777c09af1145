"""The ``aggregate`` job (its options and an example: README.md beside this file)."""

from gridwatch.jobs.aggregate.job import AggregateJob

COMPONENT = AggregateJob
__all__ = ["COMPONENT", "AggregateJob"]
