"""Each component's README carries an options table generated from its config model.

``python -m gridwatch.components.docs`` rewrites the tables in place (between the markers
below); the registry's conformance test fails when a table is out of date.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gridwatch.components.base import SECTIONS, Component, Kind
from gridwatch.components.registry import BUILTINS, component_types

BEGIN = "<!-- options: generated from the config model, do not edit -->"
END = "<!-- end of options -->"
_TABLE = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def folder_of(kind: Kind, type_name: str) -> Path:
    """Where a built-in component lives: ``src/gridwatch/<section>/<type>/``."""
    return SOURCE_ROOT / SECTIONS[kind] / type_name


def options_table(cls: type[Component]) -> str:
    """The Markdown table of a component's options (name, default, description)."""
    rows = ["| option | default | description |", "|---|---|---|"]
    for name, info in cls.Config.model_fields.items():
        if name == "type":
            continue
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_default(info)} | {description} |")
    return "\n".join([BEGIN, *rows, END])


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value: Any = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps(value, default=str)
    return f"`{text}`".replace("|", "\\|")


def refreshed(readme: str, cls: type[Component]) -> str:
    """The README text with its options table regenerated (appended when it has none)."""
    table = options_table(cls)
    if _TABLE.search(readme):
        return _TABLE.sub(lambda _: table, readme)
    return readme.rstrip() + "\n\n## Options\n\n" + table + "\n"


def main() -> int:
    """Rewrite every built-in component's options table; print the files changed."""
    types = component_types()
    for kind, names in BUILTINS.items():
        for type_name in names:
            readme = folder_of(kind, type_name) / "README.md"
            old = readme.read_text() if readme.exists() else f"# `{type_name}` {kind}\n"
            new = refreshed(old, types[kind][type_name])
            if new != old:
                readme.write_text(new)
                print(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
