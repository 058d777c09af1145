"""The `gridwatch` command as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import SRC
from tests.conftest import run_cli as gridwatch

pytestmark = pytest.mark.e2e
ROOT = SRC.parent


def test_validate_lists_every_mistake_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sources:\n"
        "  gen: {type: generator, rate_per_s: -1}\n"
        "sinks:\n"
        "  out: {type: jsonl, inputs: [gem]}\n"
        "  more: {type: kafka_maybe, inputs: [gen]}\n"
    )
    result = gridwatch("validate", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"4 problems in {bad}:"
    assert lines[1].startswith(f"{bad}:2: sources.gen.rate_per_s: Input should be greater")
    assert f"{bad}:4: sinks.out.directory: required option is missing" in lines
    assert f"{bad}:4: sinks.out.inputs[0]: unknown input 'gem' (known: gen, out)" in lines
    assert any(line.startswith(f"{bad}:5: sinks.more.type: unknown sink type") for line in lines)


def test_validate_accepts_the_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples)
    for example in sorted(examples.glob("*.yaml")):
        text = example.read_text()
        # The examples take their secrets from files and variables that a deployment provides
        # (each its own, long enough for a server token).
        for name in re.findall(r"\$\{env:([^}]+)\}", text):
            monkeypatch.setenv(name, f"example-secret-of-{name}")
        for name in re.findall(r"\$\{file:([^}]+)\}", text):
            secret = examples / name
            if not secret.exists():
                secret.parent.mkdir(parents=True, exist_ok=True)
                secret.write_text(f"example-secret-of-{name}\n")
        result = gridwatch("validate", str(example), cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert "valid" in result.stdout


def test_run_reports_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    result = gridwatch("run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_schema_version_and_help() -> None:
    schema = json.loads(gridwatch("schema").stdout)
    assert {"sources", "sinks", "transforms", "jobs"} <= set(schema["properties"])
    assert gridwatch("--version").stdout.startswith("gridwatch ")
    help_text = gridwatch("--help").stdout
    for command in ("run", "validate", "schema"):
        assert command in help_text
    assert "--data-dir" in gridwatch("run", "--help").stdout


def test_the_readme_pipeline_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## A pipeline file\n\n```yaml\n(.*?)```", readme, re.S)
    assert match, "the README lost its pipeline example"
    text = match.group(1).replace("/etc/gridwatch/panda-db.secret", "panda-db.secret")
    (tmp_path / "p.yaml").write_text(text)
    (tmp_path / "panda-db.secret").write_text("secret\n")
    shutil.copy(ROOT / "examples" / "panda.query", tmp_path / "panda.query")
    monkeypatch.setenv("EI_TOKEN", "token")
    monkeypatch.setenv("GW_OPS_TOKEN", "an-operators-token-of-some-length")
    result = gridwatch("validate", str(tmp_path / "p.yaml"))
    assert result.returncode == 0, result.stderr
