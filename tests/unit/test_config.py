"""The pipeline file: every problem at once, with lines; secrets; graph checks; schema."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from gridwatch.components import SinkConfig
from gridwatch.config.pipeline import parse_pipeline, pipeline_schema
from gridwatch.config.problems import ConfigProblems
from gridwatch.config.secrets import Secret


def parse(text: str, base: Path = Path(".")) -> object:
    return parse_pipeline(textwrap.dedent(text), "p.yaml", base)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        parse(text)
    return [p.render("p.yaml") for p in info.value.problems]


GOOD = """
sources:
  gen: {type: generator, rate_per_s: 10}
sinks:
  out:
    type: jsonl
    inputs: [gen]
    directory: /tmp/out
"""


def test_a_good_file_loads() -> None:
    pipeline = parse(GOOD)
    specs = pipeline.components  # type: ignore[attr-defined]
    assert list(specs) == ["gen", "out"]
    assert specs["gen"].config.rate_per_s == 10
    assert specs["out"].inputs == ["gen"]


def test_every_mistake_is_reported_with_its_line() -> None:
    found = problems("""
        sources:
          gen:
            type: generator
            rate_per_s: fast
            colour: blue
          other: {type: nope}
          idle: {type: generator}
        sinks:
          out:
            type: jsonl
            inputs: [gen, ghost]
          gen:
            type: jsonl
            inputs: [gen]
            directory: x
        nonsense: 1
        """)
    # Other tests may register more types: only the listed names' start is fixed here.
    found = [re.sub(r"type (.*) \(known: [^)]*\)", r"type \1 (known: ...)", line) for line in found]
    assert found == [
        "p.yaml:5: sources.gen.rate_per_s: Input should be a valid number, unable to parse "
        "string as a number",
        "p.yaml:6: sources.gen.colour: unknown option",
        "p.yaml:7: sources.other.type: unknown source type 'nope' (known: ...)",
        "p.yaml:8: sources.idle: nothing consumes this source's records",
        "p.yaml:10: sinks.out.directory: required option is missing",
        "p.yaml:12: sinks.out.inputs[1]: unknown input 'ghost' (known: gen, idle, out)",
        "p.yaml:13: sinks.gen: duplicate id (also a source)",
        "p.yaml:17: nonsense: unknown option",
    ]


def test_yaml_syntax_and_duplicate_keys() -> None:
    assert problems("sources: [\n")[0].startswith("p.yaml:2: (top level): invalid YAML")
    found = problems("""
        sources:
          gen: {type: generator}
          gen: {type: generator}
        sinks:
          out: {type: jsonl, inputs: [gen], directory: x}
        """)
    assert found == ["p.yaml:4: sources.gen: duplicate key"]


def test_empty_and_non_mapping_files() -> None:
    assert problems("") == ["p.yaml: (top level): the file is empty; expected sources, sinks, ..."]
    assert "expected a mapping of sections" in problems("- 1\n")[0]


def test_inputs_must_have_the_right_kind_and_no_cycles() -> None:
    found = problems("""
        sources:
          gen: {type: generator}
        sinks:
          a: {type: jsonl, inputs: [gen, b], directory: x}
          b: {type: jsonl, inputs: [a], directory: x}
        """)
    assert "p.yaml:5: sinks.a.inputs[1]: a sink cannot take input from a sink" in found
    assert "p.yaml:6: sinks.b.inputs[0]: a sink cannot take input from a sink" in found


def test_dead_letters_are_a_valid_input() -> None:
    parse(GOOD.replace("inputs: [gen]", "inputs: [gen, _deadletter]"))


def test_env_and_file_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_DIR", "/data/out")
    (tmp_path / "rate").write_text("25\n")
    pipeline = parse(
        GOOD.replace("/tmp/out", "${env:GW_DIR}").replace("10}", "'${file:rate}'}"), tmp_path
    )
    specs = pipeline.components  # type: ignore[attr-defined]
    assert str(specs["out"].config.directory) == "/data/out"
    assert specs["gen"].config.rate_per_s == 25
    found = problems(GOOD.replace("/tmp/out", "${env:GW_SURELY_UNSET}"))
    assert found == [
        "p.yaml:8: sinks.out.directory: environment variable GW_SURELY_UNSET is not set"
    ]


class _SecretSinkConfig(SinkConfig):
    type: Literal["jsonl"] = "jsonl"
    directory: Path = Field(description="x")
    token: Secret = Field(description="x")


def test_secrets_must_not_stand_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TOKEN", "s3cret")
    base = {"type": "jsonl", "inputs": ["gen"], "directory": "x"}
    from gridwatch.config.secrets import Resolved

    good = _SecretSinkConfig.model_validate(base | {"token": Resolved("s3cret")})
    assert good.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(good)
    with pytest.raises(ValueError, match=r"must come from \$\{env:NAME\}"):
        _SecretSinkConfig.model_validate(base | {"token": "inline"})


def test_schema_lists_components_and_descriptions() -> None:
    schema = pipeline_schema()
    text = str(schema)
    assert schema["properties"]["sources"]["type"] == "object"
    assert "GeneratorConfig" in schema["$defs"] and "JsonlConfig" in schema["$defs"]
    assert "Records per second (0: as fast as possible)." in text
