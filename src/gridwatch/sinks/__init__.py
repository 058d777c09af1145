"""Sinks: one module or package per kind of system that records are written to."""
