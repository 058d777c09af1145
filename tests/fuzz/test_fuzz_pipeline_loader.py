"""A short libFuzzer round over the pipeline-file loader, as a real process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SRC

pytest.importorskip("atheris")

HERE = Path(__file__).resolve().parent
RUNS = 2000


def test_libfuzzer_finds_nothing_but_problems(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"  # libFuzzer adds the inputs it finds interesting here
    corpus.mkdir()
    for example in sorted((SRC.parent / "examples").glob("*.yaml")):
        shutil.copy(example, corpus)
    (corpus / "aliases.yaml").write_text("sources: &a {x: [*b]}\nsinks: &b [*a, *a]\n")
    (corpus / "tags.yaml").write_text("sources: !!python/object/apply:os.system [x]\n")
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_pipeline_loader.py"),
            str(corpus),
            f"-dict={HERE / 'pipeline.dict'}",
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            "-timeout=10",  # seconds for one input
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",  # a crashing input is written there
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done is not None and int(done.group(1)) == RUNS, result.stderr[-2000:]
