"""The `gridwatch demo` pipeline, shipped as `pipeline.yaml` beside this file."""
