"""The ``rollup`` job (its options and an example: README.md beside this file)."""

from gridwatch.jobs.rollup.job import RollupJob

COMPONENT = RollupJob
__all__ = ["COMPONENT", "RollupJob"]
