"""`gridwatch validate` on files built to blow up a loader: each is a located problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli as gridwatch

pytestmark = pytest.mark.e2e


def alias_bomb() -> str:
    lines = ["sources:", "  l0: &l0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def validate(path: Path, content: bytes) -> list[str]:
    """The problem lines that `gridwatch validate` prints for a file of ``content``."""
    path.write_bytes(content)
    result = gridwatch("validate", str(path))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert lines[0].endswith(f"in {path}:"), lines[0]
    return [line.removeprefix(str(path)) for line in lines[1:]]


def test_validate_reports_hostile_files_as_problems(tmp_path: Path) -> None:
    found = validate(tmp_path / "bomb.yaml", alias_bomb().encode())
    assert len(found) == 1
    assert found[0].endswith(": aliases expand the document to more than 100000 values")

    latin1 = "sources:\n  caf\xe9: {type: generator}\n".encode("latin-1")
    found = validate(tmp_path / "latin1.yaml", latin1)
    assert found == [":2: (top level): not UTF-8 text: byte 0xe9 at offset 14"]

    mixed = (
        b"sources: !!python/object/apply:os.system [echo hi]\n"
        b"sinks:\n"
        b"  out: {type: jsonl, directory: '${file:/dev/zero}'}\n"
    )
    found = validate(tmp_path / "mixed.yaml", mixed)
    assert ":1: sources: unknown tag !!python/object/apply:os.system" in found
    assert ":3: sinks.out.directory: cannot read secret file /dev/zero: not a regular file" in found
