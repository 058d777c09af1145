"""The pipeline file's ``dashboard`` section: title, refresh and the time-series panels."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RANGES = ("6h", "2d", "7d", "30d", "1y")
Range = Literal["6h", "2d", "7d", "30d", "1y"]


class Panel(BaseModel):
    """One chart: a query of the time-series store and how to draw it."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="The panel's heading.")
    measurement: str = Field(description="The measurement to chart (`{producer}_{type}`).")
    fields: list[str] = Field(
        default_factory=list, description="Fields to chart (empty: every field)."
    )
    aggregate: Literal["mean", "sum", "min", "max", "count", "last", "worst"] = Field(
        "mean", description="How values within a bucket are combined."
    )
    group_by: list[str] = Field(
        default_factory=list, description="Tags that split the chart into series."
    )
    where: dict[str, list[str]] = Field(
        default_factory=dict, description="Tag filters: tag → accepted values."
    )
    kind: Literal["line", "area", "bar", "status"] = Field(
        "line",
        description="line, stacked area, stacked bar, or status (a timeline of status codes "
        "in the module colours).",
    )
    unit: str | None = Field(None, description="Shown on the value axis.")
    store: str | None = Field(None, description="Which timeseries sink (default: the first).")
    max_points: int = Field(300, ge=2, le=10_000, description="Points per series at most.")


class DashboardSettings(BaseModel):
    """The web dashboard served at ``/``."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("gridwatch", description="Shown in the page header.")
    refresh_s: float = Field(10.0, ge=1, description="The page reloads its data this often.")
    default_range: Range = Field("6h", description="The time range shown first.")
    panels: list[Panel] = Field(default_factory=list, description="Time-series charts.")
