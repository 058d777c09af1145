"""How large and how deep a pipeline file may be.

A pipeline file is read by people's tools and sometimes written by other programs; whatever it
holds, loading it ends in a list of problems, in bounded time and memory. Each limit is far above
what a real deployment writes (a large one has a few thousand values, nested ten levels deep).
"""

from __future__ import annotations

MIB = 1024 * 1024

MAX_FILE_BYTES = 4 * MIB
"""The pipeline file itself."""

MAX_DEPTH = 64
"""Levels of nested mappings and sequences, counted after aliases are expanded."""

MAX_NODES = 100_000
"""Values (keys included) in the file, and again once aliases are expanded."""

MAX_EXPANDED_CHARS = 16 * MIB
"""Characters of text once aliases are expanded: what a few aliases may multiply."""

MAX_NUMBER_CHARS = 100
"""Characters of one number (YAML 1.1 base-60 integers take quadratic time to build)."""

MAX_SECRET_BYTES = 1 * MIB
"""One ``${file:...}`` reference's file."""

MAX_RESOLVED_CHARS = 4 * MIB
"""Characters that all ``${env:...}`` and ``${file:...}`` references put into the file."""

MAX_REPORTED = 200
"""Problems printed; the count of the others follows them."""

MAX_LISTED = 20
"""Names listed in one message (such as the known inputs)."""

MAX_SHOWN_CHARS = 80
"""Characters of a value, key or name quoted in a message."""
