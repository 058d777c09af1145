"""Module status rules: thresholds, listed values, freshness and N/A."""

from __future__ import annotations

from gridwatch.serving.status import Check, Latest, ModuleRule, evaluate

NOW = 1_000_000


def rule(**kw: object) -> ModuleRule:
    return ModuleRule.model_validate(kw)


def test_no_data_and_not_expected_are_white() -> None:
    assert evaluate(rule(), None, NOW).status == "N/A"
    assert evaluate(rule(expected=False), Latest({"x": 1}, NOW), NOW).colour == "white"


def test_thresholds_give_the_worst_status_with_every_reason() -> None:
    checks = [
        Check(field="dead", degraded_above=0, unavailable_above=4),
        Check(field="free", degraded_below=0.2, unavailable_below=0.05),
    ]
    module = rule(checks=checks)
    assert evaluate(module, Latest({"dead": 0, "free": 0.5}, NOW), NOW).status == "available"
    degraded = evaluate(module, Latest({"dead": 1, "free": 0.5}, NOW), NOW)
    assert (degraded.status, degraded.colour, degraded.reasons) == (
        "degraded",
        "yellow",
        ("dead = 1 > 0",),
    )
    down = evaluate(module, Latest({"dead": 2, "free": 0.01}, NOW), NOW)
    assert down.status == "unavailable"
    assert down.reasons == ("free = 0.01 < 0.05", "dead = 2 > 0")
    assert down.code == 2


def test_listed_values_and_missing_fields() -> None:
    module = rule(
        checks=[
            Check(field="http", unavailable_values=[503]),
            Check(field="mode", degraded_values=["readonly"], when_missing="ignore"),
            Check(field="lag"),
        ]
    )
    assert evaluate(module, Latest({"http": 503, "lag": 1}, NOW), NOW).status == "unavailable"
    status = evaluate(module, Latest({"http": 200, "mode": "readonly", "lag": 1}, NOW), NOW)
    assert status.reasons == ("mode is 'readonly'",)
    assert evaluate(module, Latest({"http": 200}, NOW), NOW).reasons == ("lag: no value",)


def test_stale_data_turns_a_module_yellow_then_red() -> None:
    module = rule(degraded_after_s=10, unavailable_after_s=60)
    latest = Latest({"x": 1}, NOW)
    assert evaluate(module, latest, NOW + 5_000).status == "available"
    assert evaluate(module, latest, NOW + 20_000).status == "degraded"
    red = evaluate(module, latest, NOW + 61_000)
    assert red.status == "unavailable"
    assert red.reasons == ("no data for 61 s (limit 60 s)",)


def test_older_records_do_not_overwrite_newer_values() -> None:
    latest = Latest()
    latest.update({"x": 2}, NOW)
    latest.update({"x": 1}, NOW - 1)
    assert (latest.values, latest.timestamp_ms) == ({"x": 2}, NOW)
