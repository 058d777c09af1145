"""Batch schedules, service supervision, reports and leader election (the ``schedule:``
section of the pipeline file). :class:`gridwatch.scheduler.core.Scheduler` is the entry point;
this package imports nothing heavy so that ``python -m gridwatch.scheduler.collect`` starts fast.
"""
