"""``${env:NAME}`` and ``${file:PATH}`` references, resolved when the file is loaded.

A value that came from a reference is a :class:`Resolved` string, so that secret options can
insist on it: credentials never stand inline in a pipeline file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path as FilePath
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

from gridwatch.config.problems import Path, Problem

_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")


class Resolved(str):
    """A string whose value came from an environment variable or a file."""

    __slots__ = ()


def resolve(value: Any, path: Path, base_dir: FilePath, problems: list[Problem]) -> Any:
    """Replace references everywhere in a loaded document; missing ones become problems."""
    if isinstance(value, dict):
        return {k: resolve(v, (*path, str(k)), base_dir, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, (*path, i), base_dir, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _resolve_string(value, path, base_dir, problems)
    return value


def _resolve_string(text: str, path: Path, base_dir: FilePath, problems: list[Problem]) -> str:
    def substitute(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            if name not in os.environ:
                problems.append(Problem(path, f"environment variable {name} is not set"))
                return ""
            return os.environ[name]
        file_path = (base_dir / name).expanduser()
        try:
            return file_path.read_text().rstrip("\n")
        except OSError as exc:
            problems.append(Problem(path, f"cannot read secret file {file_path}: {exc.strerror}"))
            return ""

    return Resolved(_REFERENCE.sub(substitute, text))


def _require_reference(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str) and not isinstance(value, Resolved):
        raise ValueError("secrets must come from ${env:NAME} or ${file:PATH}, not stand inline")
    return value


Secret = Annotated[SecretStr, BeforeValidator(_require_reference)]
"""An option holding a credential: only accepted from a reference, masked when printed."""
