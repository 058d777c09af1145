"""The ``schedule:`` section is validated with line numbers, like the components."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridwatch.config import ConfigProblems
from gridwatch.config.pipeline import parse_pipeline

VALID = """\
schedule:
  tasks:
    eventindex:
      schedule: "R/2016-07-21T00:00:00Z/PT1H"
      collector: collectors.eventindex:collect
    report:
      parents: [eventindex]
      command: [make-report, --daily]
  services:
    flume:
      command: [flume-ng, agent]
      health:
        http: {url: "http://127.0.0.1:41414/metrics"}
sinks:
  files:
    type: jsonl
    inputs: [eventindex]
    directory: out
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigProblems) as raised:
        parse_pipeline(text, "p.yaml", Path("."))
    return [p.render("p.yaml") for p in raised.value.problems]


def test_valid_schedule_and_collector_as_sink_input() -> None:
    pipeline = parse_pipeline(VALID, "p.yaml", Path("."))
    assert set(pipeline.schedule.tasks) == {"eventindex", "report"}
    assert pipeline.schedule.tasks["report"].parents == ["eventindex"]
    assert pipeline.schedule.services["flume"].health is not None
    assert pipeline.schedule.collector_ids() == {"eventindex"}
    assert pipeline.components["files"].inputs == ["eventindex"]


def test_bad_schedule_reported_with_its_line() -> None:
    text = VALID.replace('"R/2016-07-21T00:00:00Z/PT1H"', '"R/2016-07-21T00:00:00Z/P1.5H"')
    found = problems_of(text)
    assert len(found) == 1
    assert found[0].startswith("p.yaml:4: schedule.tasks.eventindex.schedule: ")
    assert "the period 'P1.5H' is not an ISO 8601 duration" in found[0]


def test_every_mistake_at_once() -> None:
    text = """\
schedule:
  tasks:
    a:
      schedule: "0 * * * *"
      command: ["true"]
      collector: x:y
      time_zone: Mars/Olympus
      retries: -1
    b:
      parents: [a, ghost]
      command: ["true"]
    c:
      parents: [d]
      command: ["true"]
    d:
      parents: [c]
      command: ["true"]
  services:
    s:
      command: [sleep, "1"]
      restart_max_s: fast
      health:
        data: {max_silence_s: 60}
sinks:
  files:
    type: jsonl
    inputs: [b]
    directory: out
"""
    found = "\n".join(problems_of(text))
    assert "p.yaml:7: schedule.tasks.a.time_zone: unknown time zone 'Mars/Olympus'" in found
    assert "p.yaml:8: schedule.tasks.a.retries: Input should be greater than or equal to 0" in found
    assert "p.yaml:21: schedule.services.s.restart_max_s: Input should be a valid number" in found
    assert "p.yaml:23: schedule.services.s.health.data: max_silence_s needs" in found
    # a command task puts nothing on the bus, so it is no input
    assert "p.yaml:27: sinks.files.inputs[0]: unknown input 'b'" in found


def test_references_between_tasks_checked() -> None:
    text = """\
schedule:
  tasks:
    a:
      schedule: "@daily"
      command: ["true"]
    b:
      parents: [a, ghost]
      command: ["true"]
    c:
      parents: [d]
      command: ["true"]
    d:
      parents: [c]
      command: ["true"]
    files:
      schedule: "@daily"
      command: ["true"]
sinks:
  files:
    type: jsonl
    inputs: [_deadletter]
    directory: out
"""
    found = "\n".join(problems_of(text))
    assert "p.yaml:7: schedule.tasks.b.parents: unknown task 'ghost'" in found
    assert "p.yaml:10: schedule.tasks.c.parents: dependency cycle: c -> d -> c" in found
    assert "p.yaml:15: schedule.tasks.files: duplicate id (also a sink)" in found


def test_exactly_one_kind_of_trigger_and_action() -> None:
    text = """\
schedule:
  tasks:
    neither:
      command: ["true"]
    both:
      schedule: "@daily"
      parents: [neither]
      command: ["true"]
    nothing:
      schedule: "@daily"
"""
    found = "\n".join(problems_of(text))
    assert "p.yaml:3: schedule.tasks.neither: give exactly one of `schedule` and `parents`" in found
    assert "p.yaml:5: schedule.tasks.both: give exactly one of `schedule` and `parents`" in found
    assert (
        "p.yaml:9: schedule.tasks.nothing: give exactly one of `command` and `collector`" in found
    )


def test_smtp_password_must_come_from_a_secret() -> None:
    text = """\
schedule:
  reports:
    digest:
      smtp_host: 127.0.0.1
      sender: gridwatch@example.org
      recipients: [ops@example.org]
      username: ops
      password: hunter2
"""
    found = "\n".join(problems_of(text))
    assert "p.yaml:8: schedule.reports.digest.password: secrets must come from" in found


def test_example_pipeline_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWATCH_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    root = Path(__file__).resolve().parents[2]
    from gridwatch.config import load_pipeline

    pipeline = load_pipeline(root / "examples" / "scheduler.yaml")
    assert pipeline.schedule.collector_ids() == {"eventindex-status"}
    assert pipeline.schedule.tasks["compaction-report"].parents == ["nightly-compaction"]
