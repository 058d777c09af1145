"""The pipeline file: one YAML document that describes a whole deployment.

Loading collects every problem before failing: YAML syntax, unknown sections, unknown component
types, each component's own settings (validated by its model), secrets that cannot be resolved,
and graph mistakes (unknown or wrongly-typed inputs, duplicate ids, cycles, unused sources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from gridwatch.bus.base import DEFAULT_ID_WINDOW_IDS, DEFAULT_ID_WINDOW_S, IdWindow
from gridwatch.components import (
    DEADLETTER_INPUT,
    KINDS,
    SECTIONS,
    Component,
    ComponentConfig,
    Kind,
)
from gridwatch.components.registry import component_types
from gridwatch.config.dashboard import DashboardSettings
from gridwatch.config.files import FileTooLarge, read_limited, size_text
from gridwatch.config.graph import closing_edges
from gridwatch.config.limits import MAX_FILE_BYTES
from gridwatch.config.problems import ConfigProblems, Path, Problem, listing, shorten
from gridwatch.config.schedule import ScheduleSettings
from gridwatch.config.secrets import resolve
from gridwatch.config.server import ServerSettings
from gridwatch.config.yamlfile import LocatedYaml, load_yaml
from gridwatch.record import DEFAULT_MAX_DEPTH, EnvelopeDecoder, TimePolicy

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusSettings(_Settings):
    """The bus: which kind, where, and how it keeps records and their ids."""

    type: Literal["sqlite"] = Field(
        "sqlite", description="sqlite: the embedded bus, one SQLite file."
    )
    path: FilePath | None = Field(
        None, description="The bus file (default: bus.db in the data dir; relative: under it)."
    )
    durability: Literal["full", "normal"] = Field(
        "full",
        description="full: every acknowledged append survives power loss; "
        "normal: survives a crash of the process only (faster).",
    )
    retention_hours: float | None = Field(
        168.0, gt=0, description="Delete bus data older than this (null: keep)."
    )
    drain_timeout_s: float = Field(
        5.0,
        ge=0,
        description="On SIGTERM, sinks go on writing what the bus holds for at most this long "
        "before they commit and stop (the rest waits on the bus for the next start).",
    )
    retention_bytes_per_topic: int | None = Field(
        None, gt=0, description="Keep at most this many bytes per topic (null: no limit)."
    )
    dedup_window_s: float = Field(
        DEFAULT_ID_WINDOW_S,
        ge=0,
        description="Refuse a record whose _id its topic took less than this long ago "
        "(never longer than the records are kept; 0: no id check).",
    )
    dedup_window_ids: int = Field(
        DEFAULT_ID_WINDOW_IDS,
        ge=0,
        description="Remember at least this many of the newest ids, all topics together "
        "(each costs about 30 bytes of memory in a process that appends; 0: no id check).",
    )

    def id_window(self) -> IdWindow:
        """The window of ids the bus remembers."""
        return IdWindow(self.dedup_window_s, self.dedup_window_ids)


class RecordSettings(_Settings):
    """Which records are accepted: how they are stamped and how deeply they nest."""

    max_future_s: float = Field(
        3600.0, ge=0, description="Reject records stamped further than this in the future."
    )
    max_past_s: float = Field(
        20 * 365 * 86400.0,
        ge=0,
        description="Reject records stamped further than this in the past.",
    )

    max_depth: int = Field(
        DEFAULT_MAX_DEPTH,
        ge=1,
        le=512,
        description="Reject records whose data nests more levels of objects and arrays "
        "(data itself is level 1).",
    )

    def policy(self) -> TimePolicy:
        """As the decoder's policy."""
        return TimePolicy(self.max_future_s, self.max_past_s)

    def decoder(self) -> EnvelopeDecoder:
        """The envelope decoder that applies these settings."""
        return EnvelopeDecoder(self.policy(), max_depth=self.max_depth)


class _TopLevel(_Settings):
    sources: dict[str, Any] = Field(
        default_factory=dict, description="Components that produce records."
    )
    transforms: dict[str, Any] = Field(
        default_factory=dict, description="Pure functions over batches, before the bus."
    )
    sinks: dict[str, Any] = Field(
        default_factory=dict, description="Where the bus's records are written."
    )
    jobs: dict[str, Any] = Field(
        default_factory=dict, description="Stream jobs that write results back to the bus."
    )
    schedule: ScheduleSettings = Field(
        default_factory=ScheduleSettings, description="Batch tasks and supervised services."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    records: RecordSettings = Field(default_factory=RecordSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)


@dataclass
class ComponentSpec:
    """A validated component: what it is, its settings and where it takes records from."""

    id: str
    kind: Kind
    cls: type[Component]
    config: Any
    inputs: list[str] = field(default_factory=list)


@dataclass
class Pipeline:
    """A loaded, validated pipeline file."""

    filename: str
    components: dict[str, ComponentSpec]
    bus: BusSettings
    records: RecordSettings
    server: ServerSettings
    schedule: ScheduleSettings
    document: LocatedYaml
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)

    def of_kind(self, kind: Kind) -> list[ComponentSpec]:
        """The components of one kind, in file order."""
        return [spec for spec in self.components.values() if spec.kind == kind]


def load_pipeline(path: FilePath | str) -> Pipeline:
    """Load and validate a pipeline file; raise :class:`ConfigProblems` listing every problem.

    At most :data:`MAX_FILE_BYTES` are read, so a device or a pipe that never ends is fine.
    """
    file_path = FilePath(path)
    try:
        data = read_limited(file_path, MAX_FILE_BYTES)
    except FileTooLarge:
        message = f"the file is larger than {size_text(MAX_FILE_BYTES)}"
        raise ConfigProblems(str(file_path), [Problem((), message)]) from None
    except OSError as exc:
        raise ConfigProblems(
            str(file_path), [Problem((), f"cannot read: {exc.strerror}")]
        ) from None
    return parse_pipeline_bytes(data, str(file_path), file_path.parent)


def parse_pipeline_bytes(data: bytes, filename: str, base_dir: FilePath) -> Pipeline:
    """Validate the pipeline file's content as read from disk: UTF-8 text, then YAML."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise ConfigProblems(filename, [Problem((), message, line)]) from None
    return parse_pipeline(text, filename, base_dir)


def parse_pipeline(text: str, filename: str, base_dir: FilePath) -> Pipeline:
    """Validate pipeline YAML ``text``; ``base_dir`` anchors relative ``${file:...}`` paths."""
    problems: list[Problem] = []
    doc = load_yaml(text, problems)
    if doc.value is None and not problems:
        problems.append(Problem((), "the file is empty; expected sources, sinks, ..."))
    if not isinstance(doc.value, dict | None):
        problems.append(Problem((), "expected a mapping of sections (sources, sinks, ...)", 1))
    value = resolve(doc.value, (), base_dir, problems) if isinstance(doc.value, dict) else {}
    top = _validate_model(_TopLevel, value, (), problems)
    registry = component_types()
    components: dict[str, ComponentSpec] = {}
    mentioned: set[str] = set()  # inputs named anywhere, even by components that are invalid
    for kind in KINDS:
        section = SECTIONS[kind]
        entries = value.get(section)
        for component_id, raw in entries.items() if isinstance(entries, dict) else ():
            mentioned.update(_raw_inputs(raw))
            spec = _component(kind, str(component_id), raw, registry, problems)
            if spec is None:
                continue
            if spec.id in components:
                problems.append(
                    Problem((section, spec.id), f"duplicate id (also a {components[spec.id].kind})")
                )
                continue
            components[spec.id] = spec
    collectors = _schedule_problems(value.get("schedule"), top, components, problems)
    problems.extend(_graph_problems(components, mentioned, collectors))
    located = [Problem(p.path, p.message, p.line or doc.line(p.path)) for p in problems]
    if located or top is None:
        raise ConfigProblems(filename, located)
    return Pipeline(
        filename,
        components,
        top.bus,
        top.records,
        top.server.anchored(base_dir),
        top.schedule,
        doc,
        dashboard=top.dashboard,
    )


def _schedule_problems(
    raw: Any, top: _TopLevel | None, components: dict[str, ComponentSpec], problems: list[Problem]
) -> set[str]:
    """Check the schedule against itself and the components; return the collector task ids."""
    if top is not None:
        for path, message in top.schedule.reference_problems():
            problems.append(Problem(("schedule", *path), message))
    sections = raw if isinstance(raw, dict) else {}
    for section in ("tasks", "services"):
        entries = sections.get(section)
        for entry_id in entries if isinstance(entries, dict) else ():
            if entry_id in components:
                kind = components[entry_id].kind
                problems.append(
                    Problem(("schedule", section, entry_id), f"duplicate id (also a {kind})")
                )
    tasks = sections.get("tasks")
    return {
        str(task_id)
        for task_id, task in (tasks.items() if isinstance(tasks, dict) else ())
        if isinstance(task, dict) and task.get("collector")
    }


def _component(
    kind: Kind,
    component_id: str,
    raw: Any,
    registry: dict[Kind, dict[str, type[Component]]],
    problems: list[Problem],
) -> ComponentSpec | None:
    path: Path = (SECTIONS[kind], component_id)
    if not _ID.fullmatch(component_id):
        problems.append(
            Problem(path, "ids are letters, digits, '_', '.', '-' and start with a letter or digit")
        )
        return None
    if not isinstance(raw, dict):
        problems.append(Problem(path, "expected a mapping with a 'type'"))
        return None
    type_name = raw.get("type")
    known = registry[kind]
    if not isinstance(type_name, str) or type_name not in known:
        shown = shorten(str(type_name))
        what = "missing 'type'" if type_name is None else f"unknown {kind} type {shown!r}"
        problems.append(Problem((*path, "type"), f"{what} (known: {listing(known)})"))
        return None
    cls = known[type_name]
    config = _validate_model(cls.Config, raw, path, problems)
    # An invalid component still takes part in the graph checks, with the inputs it names.
    inputs = _raw_inputs(raw) if config is None else getattr(config, "inputs", [])
    return ComponentSpec(component_id, kind, cls, config, inputs)


def _raw_inputs(raw: Any) -> list[str]:
    inputs = raw.get("inputs") if isinstance(raw, dict) else None
    return [str(i) for i in inputs] if isinstance(inputs, list) else []


def _validate_model(model: type[BaseModel], value: Any, path: Path, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            problems.append(Problem(path + loc, _describe(error)))
        return None


def _describe(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown option"
    if error["type"] == "missing":
        return "required option is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _graph_problems(
    components: dict[str, ComponentSpec], mentioned: set[str], collectors: set[str]
) -> list[Problem]:
    """Input mistakes; ``collectors`` are scheduled tasks that sinks and jobs may consume."""
    problems: list[Problem] = []
    known = listing(components)
    allowed: dict[Kind, set[Kind]] = {
        "source": set(),
        "transform": {"source", "transform"},
        "sink": {"source", "transform", "job"},
        "job": {"source", "transform", "job"},
    }
    for spec in components.values():
        for index, name in enumerate(spec.inputs):
            path: Path = (SECTIONS[spec.kind], spec.id, "inputs", index)
            if name == DEADLETTER_INPUT and spec.kind in ("sink", "job"):
                continue
            if name in collectors and spec.kind in ("sink", "job"):
                continue
            target = components.get(name)
            if target is None:
                problems.append(Problem(path, f"unknown input {shorten(name)!r} (known: {known})"))
            elif target.kind not in allowed[spec.kind]:
                problems.append(
                    Problem(path, f"a {spec.kind} cannot take input from a {target.kind}")
                )
    for spec in components.values():
        if spec.kind in ("source", "transform") and spec.id not in mentioned:
            problems.append(
                Problem(
                    (SECTIONS[spec.kind], spec.id), f"nothing consumes this {spec.kind}'s records"
                )
            )
    problems.extend(_cycles(components))
    return problems


def _cycles(components: dict[str, ComponentSpec]) -> list[Problem]:
    upstream = {component_id: spec.inputs for component_id, spec in components.items()}
    return [
        Problem((SECTIONS[components[node].kind], node, "inputs"), f"cycle: {cycle}")
        for node, _, cycle in closing_edges(upstream, " <- ")
    ]


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema of the pipeline file, with every registered component's options."""
    registry = component_types()
    sections: dict[str, Any] = {}
    for kind in KINDS:
        configs = [_typed(cls) for cls in registry[kind].values()]
        entry: Any = dict[str, ComponentConfig]
        if len(configs) == 1:
            entry = dict[str, configs[0]]  # type: ignore[valid-type]
        elif configs:
            entry = dict[str, Annotated[_union(configs), Field(discriminator="type")]]  # type: ignore[misc]
        sections[SECTIONS[kind]] = (entry, Field(default_factory=dict))
    model = create_model(
        "PipelineFile", __base__=_TopLevel, __doc__="A gridwatch pipeline file.", **sections
    )
    schema: dict[str, Any] = TypeAdapter(model).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _union(configs: list[type[ComponentConfig]]) -> Any:
    union: Any = configs[0]
    for config in configs[1:]:
        union = union | config
    return union


def _typed(cls: type[Component]) -> type[ComponentConfig]:
    """The component's model with ``type`` fixed to its name, to tell them apart in a schema."""
    name: Any = Literal[cls.type_name]
    described = Field(description="Which implementation runs this component.")
    fields: dict[str, Any] = {"type": (name, described)}
    return create_model(
        cls.Config.__name__, __base__=cls.Config, __doc__=cls.Config.__doc__, **fields
    )
