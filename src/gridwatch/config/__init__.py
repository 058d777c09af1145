"""The pipeline file: YAML loading with line numbers, secrets, models and graph checks."""

from gridwatch.config.pipeline import Pipeline, load_pipeline, pipeline_schema
from gridwatch.config.problems import ConfigProblems, Problem

__all__ = ["ConfigProblems", "Pipeline", "Problem", "load_pipeline", "pipeline_schema"]
