"""Hostile pipeline files end in located problems, in bounded time and memory, never a crash."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridwatch.components.registry import component_types
from gridwatch.config import yamlfile
from gridwatch.config.limits import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER_CHARS,
    MAX_REPORTED,
    MAX_SECRET_BYTES,
    MIB,
)
from gridwatch.config.pipeline import (
    Pipeline,
    load_pipeline,
    parse_pipeline,
    parse_pipeline_bytes,
)
from gridwatch.config.problems import ConfigProblems, Problem


def problems_of(text: str, base: Path = Path(".")) -> list[Problem]:
    with pytest.raises(ConfigProblems) as raised:
        parse_pipeline(text, "p.yaml", base)
    return raised.value.problems


def rendered(text: str, base: Path = Path(".")) -> list[str]:
    return [p.render("p.yaml") for p in problems_of(text, base)]


def problems_and_peak_mib(text: str) -> tuple[list[Problem], float]:
    """The problems of ``text``, and the most memory Python objects took while finding them."""
    component_types()  # the components' modules, imported once: not part of the figure
    tracemalloc.start()
    try:
        found = problems_of(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return found, peak / MIB


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test that takes this runs with libyaml's event parser and with PyYAML's own."""
    if request.param == "python":
        monkeypatch.setattr(yamlfile, "_LOADER", yamlfile._PythonLoader)
    yield request.param


GOOD = """\
sources:
  gen: {type: generator}
sinks:
  out: {type: jsonl, inputs: [gen], directory: /tmp/out}
"""


# --- aliases ------------------------------------------------------------------------------


def sequence_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["sources:", "  l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def mapping_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["sources:", "  l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"]
    for level in range(1, levels):
        items = ", ".join(f"k{i}: *l{level - 1}" for i in range(width))
        lines.append(f"  l{level}: &l{level} {{{items}}}")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 30, width: int = 3) -> str:
    lines = ["sources:", "  l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"]
    for level in range(1, levels):
        merged = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"  l{level}: &l{level} {{<<: [{merged}]}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bomb", [sequence_bomb, mapping_bomb, merge_bomb])
def test_an_alias_bomb_is_refused(bomb: Callable[[], str], parser: str) -> None:
    text = bomb()
    found = problems_of(text)
    assert [p.message for p in found] == [
        f"aliases expand the document to more than {MAX_NODES} values"
    ]
    assert found[0].line is not None and 2 <= found[0].line <= text.count("\n")


def test_an_alias_bomb_takes_bounded_memory() -> None:
    found, peak_mib = problems_and_peak_mib(sequence_bomb())
    assert len(found) == 1
    assert peak_mib < 64  # the bomb stands for 387,420,489 strings


@pytest.mark.parametrize(
    ("text", "anchor", "line"),
    [
        ("sources: &a [*a]\n", "a", 1),
        ("sources: &a\n  x: *a\n", "a", 2),
        ("sources:\n  x: &b [1, [2, {y: *b}]]\n", "b", 2),
        ("sources: &m\n  <<: *m\n", "m", 2),
    ],
)
def test_an_alias_inside_its_own_anchor_is_refused(
    text: str, anchor: str, line: int, parser: str
) -> None:
    found = problems_of(text)
    assert [(p.message, p.line) for p in found] == [
        (f"alias *{anchor} refers to the value that contains it", line)
    ]


def test_merge_keys_override_without_duplicate_key_problems() -> None:
    pipeline = parse_pipeline(
        GOOD
        + "  first: &base {type: jsonl, inputs: [gen], directory: /tmp/a}\n"
        + "  second: {<<: *base, directory: /tmp/b}\n"
        + "  third: {<<: [{directory: /tmp/c}, *base]}\n",
        "p.yaml",
        Path("."),
    )
    sinks = [spec for spec in pipeline.components.values() if spec.kind == "sink"]
    assert {spec.id: str(spec.config.directory) for spec in sinks} == {
        "out": "/tmp/out",
        "first": "/tmp/a",
        "second": "/tmp/b",
        "third": "/tmp/c",
    }
    assert pipeline.document.line(("sinks", "second", "directory")) == 6
    assert pipeline.document.line(("sinks", "second", "type")) == 5


def test_a_merge_of_something_else_than_mappings_is_a_problem() -> None:
    found = rendered(GOOD + "  bad: {<<: [1, 2], type: jsonl}\n")
    assert "p.yaml:5: sinks.bad: << takes a mapping or a list of mappings" in found


def test_a_merge_list_with_an_unknown_tag_is_a_problem() -> None:
    found = rendered(
        GOOD + "  a: &a {type: jsonl, inputs: [gen], directory: x}\n  b: {<<: !x [*a]}\n"
    )
    assert "p.yaml:6: sinks.b: unknown tag !x" in found


def test_duplicate_keys_are_still_found_next_to_merges() -> None:
    found = rendered(GOOD + "  b: &b {type: jsonl, inputs: [gen], directory: x}\n  b: *b\n")
    assert found == ["p.yaml:6: sinks.b: duplicate key"]


# --- nesting and size ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sources: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "sources: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
        "sources:\n" + "- " * 100_000 + "1\n",
        "sources:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(200)),
        "sources: " + "[" * 100_000,
    ],
    ids=["flow-sequences", "flow-mappings", "block-sequences", "block-mappings", "unclosed"],
)
def test_deep_nesting_is_refused(text: str, parser: str) -> None:
    found = problems_of(text)
    assert len(found) == 1
    # libyaml stops at 1000 flow levels itself when they stand close together.
    libyaml = "invalid YAML: while increasing flow level\nexceeded maximum nesting depth"
    assert found[0].message == f"nested deeper than {MAX_DEPTH} levels" or (
        parser == "libyaml" and found[0].message.startswith(libyaml)
    )
    assert found[0].line is not None


def test_depth_counts_the_levels_that_aliases_add() -> None:
    half = MAX_DEPTH // 2 + 2
    text = f"sources:\n  a: &a {'[' * half}1{']' * half}\n  b: {'[' * half}*a{']' * half}\n"
    found = problems_of(text)
    assert [p.message for p in found] == [f"nested deeper than {MAX_DEPTH} levels"]


def test_too_many_values_are_refused() -> None:
    found = problems_of("sources: [" + "1, " * MAX_NODES + "]\n")
    assert [(p.message, p.line) for p in found] == [(f"more than {MAX_NODES} values", 1)]


def test_the_file_must_not_be_larger_than_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as out:
        out.write(GOOD.encode())
        out.truncate(4 * MIB + 1)  # a sparse file: no time spent writing it
    for path in (big, Path("/dev/zero")):
        with pytest.raises(ConfigProblems) as raised:
            load_pipeline(path)
        assert [p.message for p in raised.value.problems] == ["the file is larger than 4 MiB"]


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD + "#" * (4 * MIB - len(GOOD) - 1) + "\n")
    assert list(load_pipeline(path).components) == ["gen", "out"]


def test_a_long_number_is_refused_before_it_is_built() -> None:
    base60 = "1" + ":1" * 5_000  # a YAML 1.1 base-60 integer: quadratic to build
    found = rendered(f"bus: {{retention_hours: {base60}}}\n")
    assert found == [
        f"p.yaml:1: bus.retention_hours: a number longer than {MAX_NUMBER_CHARS} characters"
    ]


def test_the_report_shows_the_first_problems_and_counts_the_others() -> None:
    options = "".join(f"  k{i}: 1\n" for i in range(MAX_REPORTED + 50))
    with pytest.raises(ConfigProblems) as raised:
        parse_pipeline("bus:\n" + options, "p.yaml", Path("."))
    lines = str(raised.value).splitlines()
    assert lines[0] == f"{MAX_REPORTED + 50} problems in p.yaml:"
    assert lines[1] == "p.yaml:2: bus.k0: unknown option"
    assert (
        lines[MAX_REPORTED] == f"p.yaml:{MAX_REPORTED + 1}: bus.k{MAX_REPORTED - 1}: unknown option"
    )
    assert lines[MAX_REPORTED + 1 :] == ["... and 50 more problems"]


# --- text encoding ------------------------------------------------------------------------


def test_a_file_that_is_not_utf8_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes("sources:\n  gen: {type: generator}\n# café\n".encode("latin-1"))
    with pytest.raises(ConfigProblems) as raised:
        load_pipeline(path)
    assert [p.render("p.yaml") for p in raised.value.problems] == [
        "p.yaml:3: (top level): not UTF-8 text: byte 0xe9 at offset 39"
    ]


def test_text_that_cannot_be_utf8_is_a_problem() -> None:
    found = problems_of("sources: '\ud800'\n")
    assert len(found) == 1 and "not valid Unicode" in found[0].message


def test_an_out_of_range_escape_is_a_problem(parser: str) -> None:
    found = problems_of('bus: {retention_hours: "\\UFFFFFFFF"}\n')
    assert len(found) == 1
    assert found[0].message.startswith("invalid YAML")
    assert found[0].line == 1


# --- tags and scalars ---------------------------------------------------------------------


def test_tags_other_than_the_standard_ones_are_problems(parser: str) -> None:
    found = rendered(
        "sources: !!python/object/apply:os.system [echo hi]\n"
        "sinks: !!python/object:os.Thing {a: 1}\n"
        "transforms:\n"
        "  a: !!python/name:os.system ''\n"
        "  b: !local 1\n"
        "  c: !!int [1]\n"
        "  d: !!set {x, y}\n"
        "  !!python/none e: 1\n"
    )
    assert [line for line in found if "tag" in line] == [
        "p.yaml:1: sources: unknown tag !!python/object/apply:os.system",
        "p.yaml:2: sinks: unknown tag !!python/object:os.Thing",
        "p.yaml:4: transforms.a: unknown tag !!python/name:os.system",
        "p.yaml:5: transforms.b: unknown tag !local",
        "p.yaml:6: transforms.c: tag !!int cannot be used on a sequence",
        "p.yaml:7: transforms.d: tag !!set cannot be used on a mapping",
        "p.yaml:8: transforms: unknown tag !!python/none",
    ]


def test_standard_tags_still_load() -> None:
    pipeline = parse_pipeline(
        "sources:\n"
        "  gen: !!map {type: !!str generator, rate_per_s: !!float '25', batch_records: !!int '7'}\n"
        "sinks:\n"
        "  out: {type: jsonl, inputs: !!seq [gen], directory: !!str /tmp/x}\n"
        "bus: {retention_hours: !!null ''}\n",
        "p.yaml",
        Path("."),
    )
    config = pipeline.components["gen"].config
    assert (config.rate_per_s, config.batch_records) == (25.0, 7)
    assert pipeline.bus.retention_hours is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!int abc", "'abc' is not a valid !!int"),
        ("!!float abc", "'abc' is not a valid !!float"),
        ("!!bool maybe", "'maybe' is not a valid !!bool"),
        ("2024-13-45", "'2024-13-45' is not a valid !!timestamp"),
        ("!!timestamp soon", "'soon' is not a valid !!timestamp"),
        ('!!binary "abc"', "'abc' is not a valid !!binary"),
    ],
)
def test_a_scalar_that_its_tag_cannot_read_is_a_located_problem(value: str, expected: str) -> None:
    found = problems_of(f"bus:\n  retention_hours: {value}\n")
    assert len(found) == 1
    assert found[0].path == ("bus", "retention_hours")
    assert found[0].line == 2
    assert found[0].message.startswith(expected)


@pytest.mark.parametrize("text", ["bus: {[a]: 1}\n", "bus:\n  ? {a: 1}\n  : x\n"])
def test_a_key_must_be_a_single_value(text: str) -> None:
    found = problems_of(text)
    assert [p.message for p in found] == ["a key must be a single value, not a list or mapping"]
    assert found[0].path == ("bus",)


# --- references ---------------------------------------------------------------------------


def secret_problems(tmp_path: Path, reference: str) -> list[str]:
    text = GOOD.replace("/tmp/out", f"'{reference}'")
    return [p.message for p in problems_of(text, tmp_path)]


def test_a_secret_from_a_device_fifo_or_directory_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading must not wait
    for target in ("/dev/zero", str(fifo), str(tmp_path)):
        assert secret_problems(tmp_path, f"${{file:{target}}}") == [
            f"cannot read secret file {target}: not a regular file"
        ]


def test_a_large_secret_file_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "big").open("wb") as out:
        out.truncate(MAX_SECRET_BYTES + 1)
    assert secret_problems(tmp_path, "${file:big}") == [
        f"cannot read secret file {tmp_path / 'big'}: larger than 1 MiB"
    ]
    (tmp_path / "edge").write_text("x" * (MAX_SECRET_BYTES - 1) + "\n")
    text = GOOD.replace("/tmp/out", "'${file:edge}'")
    directory = parse_pipeline(text, "p.yaml", tmp_path).components["out"].config.directory
    assert str(directory) == "x" * (MAX_SECRET_BYTES - 1)


def test_a_secret_file_must_be_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin").write_bytes("café\n".encode("latin-1"))
    assert secret_problems(tmp_path, "${file:latin}") == [
        f"cannot read secret file {tmp_path / 'latin'}: not UTF-8 text"
    ]


def test_references_expand_within_a_budget(tmp_path: Path) -> None:
    (tmp_path / "blob").write_text("x" * (MIB - 10))
    text = (
        "sources:\n"
        "  gen: {type: generator}\n"
        "sinks:\n"
        "  out: {type: jsonl, inputs: [gen], directory: &blob '${file:blob}'}\n"
        "  copies: {type: jsonl, inputs: [gen], directory: [*blob, *blob, *blob, *blob, *blob]}\n"
    )
    found = [p.message for p in problems_of(text, tmp_path)]
    assert "references put more than 4 MiB of text into the file" in found
    assert found.count("references put more than 4 MiB of text into the file") == 1


def test_past_the_reported_count_unresolved_references_are_counted() -> None:
    references = "${env:GW_SURELY_UNSET}" * (MAX_REPORTED + 30)
    found = rendered(f"bus:\n  retention_hours: 1\n  drain_timeout_s: '{references}'\n")
    unresolved = [line for line in found if "GW_SURELY_UNSET" in line]
    assert len(unresolved) == MAX_REPORTED
    assert "p.yaml:3: bus.drain_timeout_s: and 30 more references that cannot be resolved" in found


# --- the component graph ------------------------------------------------------------------


def chain(length: int, *, closed: bool = False) -> str:
    """t0 <- t1 <- ... written last first, so that a depth-first walk goes the whole way down."""
    lines = ["sources:", "  gen: {type: generator}", "transforms:"]
    lines += [f"  t{i}: {{type: stamp_host, inputs: [t{i - 1}]}}" for i in range(length - 1, 0, -1)]
    first_input = f"t{length - 1}" if closed else "gen"
    lines.append(f"  t0: {{type: stamp_host, inputs: [{first_input}]}}")
    lines += ["sinks:", f"  out: {{type: jsonl, inputs: [t{length - 1}], directory: x}}"]
    return "\n".join(lines) + "\n"


def test_a_long_chain_of_transforms_loads() -> None:
    pipeline = parse_pipeline(chain(1_500), "p.yaml", Path("."))
    assert len(pipeline.components) == 1_502


def test_a_long_cycle_is_one_short_problem() -> None:
    found = [p for p in problems_of(chain(1_500, closed=True)) if "cycle" in p.message]
    assert len(found) == 1
    assert found[0].message.startswith("cycle: ")
    assert "(1501 in all)" in found[0].message
    assert len(found[0].message) < 300


def test_many_unknown_inputs_keep_each_message_short() -> None:
    sinks = "".join(f"  s{i}: {{type: jsonl, inputs: [nope], directory: x}}\n" for i in range(1500))
    found = problems_of("sources:\n  gen: {type: generator}\nsinks:\n" + sinks)
    unknown = [p.message for p in found if p.message.startswith("unknown input")]
    assert len(unknown) == 1500
    assert unknown[0].endswith(", ... (1501 in all))")
    assert max(len(m) for m in unknown) < 400


def test_a_long_chain_of_task_parents_loads() -> None:
    tasks = "".join(
        f"    t{i}: {{command: [x], parents: [t{i - 1}]}}\n" for i in range(1_499, 0, -1)
    )
    text = f"schedule:\n  tasks:\n{tasks}    t0: {{command: [x], schedule: '@daily'}}\n"
    assert len(parse_pipeline(text, "p.yaml", Path(".")).schedule.tasks) == 1_500
    looped = text.replace("schedule: '@daily'", "parents: [t1499]")
    found = rendered(looped)
    assert len(found) == 1
    assert found[0].startswith("p.yaml:3: schedule.tasks.t1499.parents: dependency cycle: ")
    assert found[0].endswith("(1501 in all)") and len(found[0]) < 300


# --- anything at all ----------------------------------------------------------------------


def loads_or_reports(action: Callable[[], Pipeline]) -> None:
    """Loading either succeeds or raises ConfigProblems that render; nothing else escapes."""
    try:
        action()
    except ConfigProblems as exc:
        assert exc.problems
        assert str(exc).startswith(f"{len(exc.problems)} problem")


FUZZ = settings(
    max_examples=150,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
)

FRAGMENTS = [
    "sources:", "sinks:", "transforms:", "schedule:", "tasks:", "bus:", "gen:", "out:",
    "type: generator", "type: jsonl", "inputs:", "\n", "\n  ", "\n    ", " ", "- ", "? ",
    ": ", ",", "[", "]", "{", "}", "&a ", "&b ", "*a", "*b", "<<: ", "!!python/object:x ",
    "!!int ", "!!float ", "!!binary ", "!!set ", "!!omap ", "!local ", "!", "'", '"', "#",
    "${env:HOME}", "${file:/dev/zero}", "${file:.}", "${env:", "1:2:3", "2024-13-45",
    "0x1F", ".nan", "~", "null", "%YAML 1.1\n---\n", "---\n", "...\n", "|\n  ", ">-\n  ",
    "\\UFFFFFFFF", "\ufeff", "\t", "\x00", "é", "=",
]  # fmt: skip


@FUZZ
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    loads_or_reports(lambda: parse_pipeline(text, "p.yaml", Path("/nonexistent")))


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes(data: bytes) -> None:
    loads_or_reports(lambda: parse_pipeline_bytes(data, "p.yaml", Path("/nonexistent")))


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=80).map("".join))
def test_yaml_fragments(text: str) -> None:
    loads_or_reports(lambda: parse_pipeline(text, "p.yaml", Path("/nonexistent")))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["gen", "out", "generator", "jsonl", "stamp_host", "${env:HOME}"]),
)
KEYS = st.one_of(
    st.sampled_from(["type", "inputs", "directory", "gen", "out", "<<", "tasks", "parents"]),
    st.text(max_size=8),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Nested sections whose parts are shared, so that the dump has anchors and aliases."""
    tree = st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4)
        ),
        max_leaves=25,
    )
    shared = draw(tree)
    sections = st.sampled_from(["sources", "transforms", "sinks", "jobs", "schedule", "bus"])
    document: dict[str, Any] = {}
    for section in draw(st.lists(sections, max_size=4)):
        entries = draw(st.dictionaries(KEYS, tree | st.just(shared), max_size=3))
        document[section] = entries if draw(st.booleans()) else [shared, entries, shared]
    return document


@settings(FUZZ, max_examples=80)
@given(documents())
def test_nested_documents_with_aliases(document: dict[str, Any]) -> None:
    text = yaml.safe_dump(document)
    loads_or_reports(lambda: parse_pipeline(text, "p.yaml", Path("/nonexistent")))
