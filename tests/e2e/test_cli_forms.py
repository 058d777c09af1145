"""The forms of the installed ``gridwatch`` command: option order, pipes, help and completion."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.record.deadletter import TOPIC, dead_letter
from tests.conftest import GRIDWATCH_EXE, SRC, GridwatchProcess, run_installed
from tests.jobs_data import T0, transfers, write_ndjson

pytestmark = pytest.mark.e2e
EXAMPLE = SRC.parent / "examples" / "xrootd-transfers.yaml"
DAY = 86_400_000

# Every command and action; test_every_command_is_listed keeps this in step with the CLI.
COMMANDS = [
    (),
    ("run",),
    ("demo",),
    ("validate",),
    ("schema",),
    ("replay",),
    ("batch",),
    ("reload",),
    ("tasks",),
    ("tasks", "list"),
    ("tasks", "runs"),
    ("tasks", "logs"),
    ("tasks", "run"),
    ("deadletter",),
    ("deadletter", "list"),
    ("deadletter", "replay"),
    ("sim",),
    ("sim", "panda"),
]

SCHEDULE = """\
schedule:
  tasks:
    hello:
      schedule: "R//PT1S"
      command: [sh, -c, "echo hello"]
"""


def with_letters(data_dir: Path) -> Path:
    """A data dir whose bus holds one fixable and one broken dead letter."""
    fixed = b'{"producer":"p","type":"t","timestamp":1700000000,"data":{"n":5}}'
    letters = [
        dead_letter(fixed, "sink was down", "out", 3),
        dead_letter(b"{broken", "malformed JSON", "ingest"),
    ]
    SqliteBus(data_dir / "bus.db").append([(TOPIC, "_deadletter", letters)])
    return data_dir


def test_the_console_script_is_installed() -> None:
    assert GRIDWATCH_EXE.exists(), f"install the project: no {GRIDWATCH_EXE}"
    assert run_installed("--version").stdout.startswith("gridwatch ")


def test_deadletter_options_go_before_or_after_the_action(tmp_path: Path) -> None:
    data = str(with_letters(tmp_path / "data"))
    after = run_installed("deadletter", "list", "--data-dir", data)
    before = run_installed("deadletter", "--data-dir", data, "list")
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    reasons = [json.loads(line)["data"]["reason"] for line in after.stdout.splitlines()]
    assert sorted(reasons) == ["malformed JSON", "sink was down"]

    mixed = run_installed("deadletter", "--component", "ingest", "list", "--data-dir", data)
    assert mixed.returncode == 0, mixed.stderr
    (line,) = mixed.stdout.splitlines()
    assert json.loads(line)["data"]["record"] == "{broken"

    replayed = run_installed("deadletter", "replay", "--as", "src", "--data-dir", data)
    assert replayed.returncode == 1  # the broken letter is still invalid
    assert replayed.stdout.strip() == "replayed 1 of 2 dead letters as src"
    (piece,) = SqliteBus(Path(data) / "bus.db").read("p_raw_t", 0, 10)
    assert piece.origin == "src"


def test_an_option_given_after_the_action_wins(tmp_path: Path) -> None:
    data = str(with_letters(tmp_path / "data"))
    result = run_installed(
        "deadletter", "--component", "out", "list", "--component", "ingest", "--data-dir", data
    )
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["data"]["component"] == "ingest"


def test_tasks_options_go_before_or_after_the_action(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(SCHEDULE)
    proc = gridwatch_process(pipeline, tmp_path / "data").start()
    after = run_installed("tasks", "list", "--url", proc.url)
    before = run_installed("tasks", "--url", proc.url, "list")
    assert after.returncode == 0, after.stderr
    assert before.returncode == 0, before.stderr
    assert after.stdout.splitlines()[0] == before.stdout.splitlines()[0]
    assert after.stdout.splitlines()[2].split()[:2] == ["hello", "task"]

    as_json = run_installed("tasks", "list", "--json", "--url", proc.url)
    assert [t["id"] for t in json.loads(as_json.stdout)["tasks"]] == ["hello"]
    runs = run_installed("tasks", "runs", "hello", "--url", proc.url, "--limit", "1")
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.split()[:2] == ["RUN", "SLOT"]
    assert len(runs.stdout.splitlines()) <= 2


def test_a_closed_pipe_ends_quietly() -> None:
    """``gridwatch schema | head -1``, with a pipe too small to hold what head does not read."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    with (
        subprocess.Popen([GRIDWATCH_EXE, "schema"], stdout=write_end, stderr=subprocess.PIPE) as gw,
        subprocess.Popen(["head", "-1"], stdin=read_end, stdout=subprocess.PIPE) as head,
    ):
        os.close(read_end)
        os.close(write_end)
        first, _ = head.communicate(timeout=60)
        _, errors = gw.communicate(timeout=60)
    assert first == b"{\n"
    assert errors == b""
    assert gw.returncode == 141  # like any tool whose reader went away


@pytest.mark.parametrize("action", [("list",), ("replay", "--as", "src")])
def test_deadletter_refuses_a_missing_data_dir(tmp_path: Path, action: tuple[str, ...]) -> None:
    missing = tmp_path / "nonexistent"
    result = run_installed("deadletter", *action, "--data-dir", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip() == f"gridwatch: no bus at {missing / 'bus.db'}"
    assert not missing.exists()


def test_usage_mistakes_exit_2() -> None:
    for args in (("nope",), ("tasks",), ("run",), ("deadletter", "list", "--bogus")):
        result = run_installed(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
    assert "Missing argument 'FILE'" in run_installed("run").stderr
    bare = run_installed()
    assert bare.returncode == 2 and "Commands:" in bare.stdout


def test_bash_completion() -> None:
    script = run_installed(env={"_GRIDWATCH_COMPLETE": "bash_source"})
    assert script.returncode == 0
    assert "complete -o nosort -F _gridwatch_completion gridwatch" in script.stdout

    def complete(words: str) -> list[str]:
        env = {
            "_GRIDWATCH_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        return run_installed(env=env).stdout.split()

    assert complete("gridwatch dead") == ["plain,deadletter"]
    actions = complete("gridwatch tasks ")
    assert sorted(actions) == [f"plain,{a}" for a in ("list", "logs", "run", "runs")]
    assert "plain,--data-dir" in complete("gridwatch deadletter list --")


def test_the_readme_tells_how_to_turn_on_completion() -> None:
    readme = (SRC.parent / "README.md").read_text()
    commands = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert "_GRIDWATCH_COMPLETE=bash_source gridwatch" in commands


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gridwatch")
def test_help_describes_and_shows_an_example(command: tuple[str, ...]) -> None:
    result = run_installed(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout
    example = result.stdout.split("Example", 1)[1]
    assert f"gridwatch {' '.join(command)}".strip() in example


def test_every_command_is_listed() -> None:
    import click

    from gridwatch.cli import cli

    def walk(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [path]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += walk(sub, (*path, name))
        return found

    assert sorted(walk(cli, ())) == sorted(COMMANDS)


def test_batch_takes_one_or_more_paths_after_input(tmp_path: Path) -> None:
    records = transfers(300, seed=5)
    write_ndjson(tmp_path / "a.ndjson", records[:150])
    write_ndjson(tmp_path / "b.ndjson", records[150:])
    a, b = str(tmp_path / "a.ndjson"), str(tmp_path / "b.ndjson")
    window = ("--from", str(T0 - DAY), "--to", str(T0 + DAY))

    def bins(*args: str) -> list[str]:
        result = run_installed("batch", "stats_10m", "--pipeline", str(EXAMPLE), *window, *args)
        assert result.returncode == 0, result.stderr
        return sorted(result.stdout.splitlines())

    together = bins("--input", a, b)
    assert together == bins("--input", a, "--input", b) == bins(a, "--input", b)
    assert len(together) > 10 and together != bins("--input", a)
    assert {json.loads(line)["type"] for line in together} == {"transfer_stats_10m"}

    for mistake in (("--input", a, "--archive", str(tmp_path)), (), (a, "--archive", a)):
        result = run_installed("batch", "stats_10m", "--pipeline", str(EXAMPLE), *window, *mistake)
        assert result.returncode == 2, mistake
        assert "Error:" in result.stderr
