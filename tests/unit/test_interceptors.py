"""The interceptor transforms: static fields, stamps, renames and drops."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, Record
from gridwatch.transforms.drop_fields import DropFields
from gridwatch.transforms.rename_fields import RenameFields
from gridwatch.transforms.set_fields import SetFields
from gridwatch.transforms.stamp_host import StampHost
from gridwatch.transforms.stamp_time import StampTime
from tests.unit.jobs_support import FixedClock


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context(
        tmp_path,
        Metrics(),
        SqliteBus(tmp_path / "bus.db"),
        EnvelopeDecoder(),
        host="collector01.cern.ch",
    )


def rec(data: dict[str, Any], **envelope: Any) -> Record:
    return Record(
        producer=envelope.pop("producer", "panda"),
        type="jobs",
        timestamp=1,
        id="x",
        data=data,
        **envelope,
    )


def make(cls: Any, context: Context, **config: Any) -> Any:
    return cls("t", cls.Config(inputs=["src"], **config), context)


def test_set_fields_sets_envelope_and_payload(context: Context) -> None:
    t = make(
        SetFields,
        context,
        envelope={"producer": "atlas", "type_prefix": "enr", "version": "2"},
        data={"vo": "atlas", "a.b": 1},
    )
    original = rec({"vo": "cms", "a": {"c": 2}}, version="1")
    (out,) = t.process([original])
    assert (out.producer, out.type, out.type_prefix, out.version) == ("atlas", "jobs", "enr", "2")
    assert out.data == {"vo": "atlas", "a": {"c": 2, "b": 1}}
    assert original.data == {"vo": "cms", "a": {"c": 2}}, "the input record is not changed"
    assert original.producer == "panda"


def test_set_fields_preserve_existing(context: Context) -> None:
    t = make(
        SetFields,
        context,
        envelope={"version": "2", "host": "h"},
        data={"vo": "atlas"},
        preserve_existing=True,
    )
    (out,) = t.process([rec({"vo": "cms"}, version="1")])
    assert (out.version, out.host, out.data["vo"]) == ("1", "h", "cms")


def test_set_fields_rejects_bad_names() -> None:
    with pytest.raises(ValidationError, match="producer"):
        SetFields.Config(type="set_fields", inputs=["s"], envelope={"producer": "Bad Name"})


def test_stamp_time_and_host(context: Context) -> None:
    before = round(time.time() * 1000)
    (stamped,) = make(StampTime, context).process([rec({})])
    assert before <= stamped.data["received_ms"] <= round(time.time() * 1000)
    (seconds,) = make(StampTime, context, field="meta.t", unit="s").process([rec({})])
    assert isinstance(seconds.data["meta"]["t"], float)
    stopped = dataclasses.replace(context, clock=FixedClock(1_714_521_600.25))
    (fixed,) = make(StampTime, stopped).process([rec({})])
    assert fixed.data["received_ms"] == 1_714_521_600_250
    host = make(StampHost, context, field="collector")
    kept, set_ = host.process([rec({}, host="wn1"), rec({})])
    assert (kept.host, set_.host) == ("wn1", "collector01.cern.ch")
    assert set_.data == {"collector": "collector01.cern.ch"}
    (forced,) = make(StampHost, context, host="x", preserve_existing=False).process(
        [rec({}, host="wn1")]
    )
    assert forced.host == "x"


def test_rename_and_drop(context: Context) -> None:
    original = rec({"PANDAID": 7, "job": {"site": "CERN", "secret": "s"}, "keep": 1})
    rename = make(
        RenameFields, context, fields={"PANDAID": "pandaid", "job.site": "site", "missing": "other"}
    )
    (renamed,) = rename.process([original])
    assert renamed.data == {"pandaid": 7, "job": {"secret": "s"}, "keep": 1, "site": "CERN"}
    drop = make(DropFields, context, fields=["job.secret", "keep", "nothing.here"])
    (dropped,) = drop.process([renamed])
    assert dropped.data == {"pandaid": 7, "job": {}, "site": "CERN"}
    assert original.data["job"] == {"site": "CERN", "secret": "s"}
    untouched = rec({"a": 1})
    assert drop.process([untouched])[0] is untouched
