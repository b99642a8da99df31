"""The named areas of the contract: territory and EEZ polygons of Japan and South Korea.

Events name areas (``impact_areas``, ``overflown_areas``, ``affected_areas``); this module and
``data/areas.json`` say what those names cover. The file lives here, in the lowest layer, because
both sides need it: the producing side decides which areas an impact or a ground track touches
(:mod:`producers.areas`), and an ally service draws the areas on its live picture. Read as a
package resource, so an installed wheel finds it outside the repository.
"""

from __future__ import annotations

from functools import cache
from importlib.resources.abc import Traversable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.models import AREA_PATTERN, Nation
from trilink.resources import package_path

__all__ = ["AREAS_RESOURCE", "Area", "AreaFile", "parse_area_file", "shipped_area_file"]

#: The shipped areas file (a package resource of :mod:`schemas`).
AREAS_RESOURCE: Traversable = package_path("schemas", "data", "areas.json")

Vertex = Annotated[tuple[float, float], Field()]  # (lat_deg, lon_deg), WGS-84
Ring = Annotated[list[Vertex], Field(min_length=3)]


class Area(BaseModel):
    """One named area: its nation and one or more rings (islands) of (lat_deg, lon_deg)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    nation: Nation
    rings: list[Ring] = Field(min_length=1)


class AreaFile(BaseModel):
    """The areas file: a free-text comment and the areas by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    comment: list[str] = Field(default_factory=list, alias="_comment")
    areas: dict[Annotated[str, Field(pattern=AREA_PATTERN)], Area]


def parse_area_file(text: str) -> AreaFile:
    """Validate an areas file's text; raises ``pydantic.ValidationError`` (JSON errors included)."""
    return AreaFile.model_validate_json(text)


@cache
def shipped_area_file() -> AreaFile:
    """The shipped areas (read and validated once)."""
    return parse_area_file(AREAS_RESOURCE.read_text(encoding="utf-8"))
