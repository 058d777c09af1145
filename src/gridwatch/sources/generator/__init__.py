"""The ``generator`` source (its options and an example: README.md beside this file)."""

from gridwatch.sources.generator.source import GeneratorSource

COMPONENT = GeneratorSource
__all__ = ["COMPONENT", "GeneratorSource"]
