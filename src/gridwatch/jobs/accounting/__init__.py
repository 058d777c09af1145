"""The ``accounting`` job (its options and an example: README.md beside this file)."""

from gridwatch.jobs.accounting.job import AccountingJob

COMPONENT = AccountingJob
__all__ = ["COMPONENT", "AccountingJob"]
