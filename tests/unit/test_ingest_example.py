"""The shipped example pipeline loads, with its secrets from a file and the environment."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gridwatch.config import load_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ingest-archive.yaml"


def test_example_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(EXAMPLE, tmp_path / "p.yaml")
    (tmp_path / "panda.token").write_text("a-long-random-token\n")
    monkeypatch.setenv("GRIDWATCH_OPS_TOKEN", "another-token")
    pipeline = load_pipeline(tmp_path / "p.yaml")
    source = pipeline.components["ingest"].config
    assert source.tokens[0].token.get_secret_value() == "a-long-random-token"
    assert pipeline.components["archive"].inputs == ["received", "_deadletter"]
