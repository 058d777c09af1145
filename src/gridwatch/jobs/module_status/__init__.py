"""The ``module_status`` job (its options and an example: README.md beside this file)."""

from gridwatch.jobs.module_status.job import ModuleStatusJob

COMPONENT = ModuleStatusJob
__all__ = ["COMPONENT", "ModuleStatusJob"]
