"""Runs the atheris target of the envelope decoder for a bounded number of inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

TARGET = Path(__file__).with_name("fuzz_envelope_decoder.py")
SRC = Path(__file__).resolve().parents[2] / "src"
RUNS = 3000


def test_the_envelope_decoder_survives_fuzzing(tmp_path: Path) -> None:
    # A fixed seed: a failure here is reproducible with the same command line.
    result = subprocess.run(
        [sys.executable, str(TARGET), f"-runs={RUNS}", "-max_len=4096", "-seed=1"],
        cwd=tmp_path,  # where libFuzzer writes a crashing input
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert not list(tmp_path.iterdir()), "no crash input was written"
