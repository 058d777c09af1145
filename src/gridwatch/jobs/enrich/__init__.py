"""The ``enrich`` job (its options and an example: README.md beside this file)."""

from gridwatch.jobs.enrich.job import EnrichJob

COMPONENT = EnrichJob
__all__ = ["COMPONENT", "EnrichJob"]
