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

from gridwatch.config.files import read_limited, size_text
from gridwatch.config.limits import MAX_REPORTED, MAX_RESOLVED_CHARS, MAX_SECRET_BYTES
from gridwatch.config.problems import Path, Problem, shorten

_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")
_LONGEST_PATH = 4096  # longer ones cannot be opened: no need to quote more of them


class Resolved(str):
    """A string whose value came from an environment variable or a file."""

    __slots__ = ()


def resolve(value: Any, path: Path, base_dir: FilePath, problems: list[Problem]) -> Any:
    """Replace references everywhere in a loaded document; missing ones become problems.

    Each file is read once, at most :data:`MAX_SECRET_BYTES` of it and only if it is a
    regular file; all references together put at most :data:`MAX_RESOLVED_CHARS` into the
    document, however often aliases repeat them. Past :data:`MAX_REPORTED` references that
    cannot be resolved, one last problem counts the others.
    """
    references = _References(base_dir, problems)
    resolved = references.resolve(value, path)
    if references.failures > MAX_REPORTED:
        more = references.failures - MAX_REPORTED
        message = f"and {more} more references that cannot be resolved"
        problems.append(Problem(references.last_failure, message))
    return resolved


class _Unresolved(Exception):
    """A reference that cannot be resolved; the message says why."""


class _References:
    def __init__(self, base_dir: FilePath, problems: list[Problem]) -> None:
        self.base_dir = base_dir
        self.problems = problems
        self.budget = MAX_RESOLVED_CHARS
        self.files: dict[FilePath, str | OSError] = {}
        self.failures = 0  # only the first MAX_REPORTED are problems of their own
        self.last_failure: Path = ()

    def resolve(self, value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return Resolved(_REFERENCE.sub(lambda m: self._substitute(m, path), value))
        return value

    def _substitute(self, match: re.Match[str], path: Path) -> str:
        kind, name = match.group(1), match.group(2).strip()
        try:
            found = self._variable(name) if kind == "env" else self._file(name)
        except _Unresolved as exc:
            self.failures += 1
            self.last_failure = path
            if self.failures <= MAX_REPORTED:
                self.problems.append(Problem(path, str(exc)))
            return ""
        if len(found) > self.budget:
            if self.budget > 0:  # reported once, where it ran out
                limit = size_text(MAX_RESOLVED_CHARS)
                self.problems.append(
                    Problem(path, f"references put more than {limit} of text into the file")
                )
            self.budget = 0
            return ""
        self.budget -= len(found)
        return found

    def _variable(self, name: str) -> str:
        try:
            value = os.environ.get(name)
        except ValueError:  # a character that no variable's name can hold
            value = None
        if value is None:
            raise _Unresolved(f"environment variable {shorten(name)} is not set")
        return value

    def _file(self, name: str) -> str:
        try:
            file_path = (self.base_dir / name).expanduser()
        except RuntimeError:  # ~user of an unknown user
            raise _Unresolved(f"cannot read secret file {shorten(name)}: unknown user") from None
        if file_path not in self.files:
            self.files[file_path] = _read_secret(file_path)
        found = self.files[file_path]
        if isinstance(found, OSError):
            shown = shorten(str(file_path), _LONGEST_PATH)
            raise _Unresolved(f"cannot read secret file {shown}: {found.strerror}")
        return found


def _read_secret(file_path: FilePath) -> str | OSError:
    try:
        data = read_limited(file_path, MAX_SECRET_BYTES, regular_only=True)
    except OSError as exc:
        return exc
    try:
        return data.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        return OSError(0, "not UTF-8 text")


def _require_reference(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str) and not isinstance(value, Resolved):
        raise ValueError("secrets must come from ${env:NAME} or ${file:PATH}, not stand inline")
    return value


Secret = Annotated[SecretStr, BeforeValidator(_require_reference)]
"""An option holding a credential: only accepted from a reference, masked when printed."""
