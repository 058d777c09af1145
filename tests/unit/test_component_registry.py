"""Every built-in component is where its type name says, documented, exampled and tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gridwatch.components import SECTIONS
from gridwatch.components.docs import BEGIN, END, folder_of, options_table
from gridwatch.components.registry import BUILTINS, component_types
from gridwatch.config import load_pipeline

TESTS = Path(__file__).resolve().parents[1]
ALL = [(kind, name) for kind, names in BUILTINS.items() for name in names]
_ENV = re.compile(r"\$\{env:([^}]+)\}")


@pytest.fixture(scope="module")
def test_sources() -> str:
    return "\n".join(p.read_text() for p in TESTS.rglob("*.py"))


@pytest.mark.parametrize(("kind", "name"), ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_the_folder_is_named_by_the_type(kind: str, name: str) -> None:
    cls = component_types()[kind][name]  # type: ignore[index]
    assert cls.kind == kind and cls.type_name == name
    assert cls.__module__.startswith(f"gridwatch.{SECTIONS[kind]}.{name}.")  # type: ignore[index]
    assert folder_of(kind, name).is_dir()  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "name"), ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_every_option_is_described_in_an_up_to_date_readme(kind: str, name: str) -> None:
    cls = component_types()[kind][name]  # type: ignore[index]
    undescribed = [f for f, info in cls.Config.model_fields.items() if not info.description]
    assert undescribed == []
    readme = folder_of(kind, name) / "README.md"  # type: ignore[arg-type]
    assert readme.is_file(), f"{readme} is missing"
    text = readme.read_text()
    assert BEGIN in text and END in text
    assert options_table(cls) in text, "run: python -m gridwatch.components.docs"
    assert len(text.split(BEGIN)[0].split()) > 30, "say what it does before the options"


@pytest.mark.parametrize(("kind", "name"), ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_the_example_is_a_valid_pipeline_using_the_component(
    kind: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = folder_of(kind, name) / "example.yaml"  # type: ignore[arg-type]
    assert example.is_file(), f"{example} is missing"
    for variable in _ENV.findall(example.read_text()):
        monkeypatch.setenv(variable, "example-value")
    pipeline = load_pipeline(example)
    assert any(s.cls.type_name == name and s.kind == kind for s in pipeline.components.values())
    readme = (folder_of(kind, name) / "README.md").read_text()  # type: ignore[arg-type]
    assert example.read_text().strip() in readme, "the README shows the example as it is"


@pytest.mark.parametrize(("kind", "name"), ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_the_component_has_tests(kind: str, name: str, test_sources: str) -> None:
    package = f"gridwatch.{SECTIONS[kind]}.{name}"  # type: ignore[index]
    assert package in test_sources or re.search(rf"type:\s*\"?{name}\b", test_sources)
