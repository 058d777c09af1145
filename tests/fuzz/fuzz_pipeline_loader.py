"""libFuzzer target: any bytes given to the pipeline-file loader end in a Pipeline or problems.

Anything else that escapes (an exception, a hang past -timeout, memory past -rss_limit_mb) is a
crash that libFuzzer reports with the input that caused it. Run it for as long as you like:

    .venv/bin/python tests/fuzz/fuzz_pipeline_loader.py CORPUS_DIR -max_len=4096

(``-runs=N`` stops after N inputs; tests/fuzz/test_fuzz_pipeline_loader.py runs a short round.)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

# Coverage guidance for the loader and PyYAML's Python parts only: fast enough to get far.
with atheris.instrument_imports(include=["gridwatch.config", "yaml"]):
    from gridwatch.config.pipeline import parse_pipeline_bytes
    from gridwatch.config.problems import ConfigProblems

BASE_DIR = Path(tempfile.mkdtemp(prefix="gridwatch-fuzz-"))  # relative ${file:...} land here


def test_one_input(data: bytes) -> None:
    """Load ``data`` as a pipeline file; only ConfigProblems may come out."""
    try:
        parse_pipeline_bytes(data, "fuzz.yaml", BASE_DIR)
    except ConfigProblems as exc:
        str(exc)


def main() -> None:
    """Fuzz with libFuzzer's command line (``sys.argv``)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
