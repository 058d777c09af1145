"""gridwatch: monitoring pipeline for large scientific computing infrastructures."""

__version__ = "0.1.0"
