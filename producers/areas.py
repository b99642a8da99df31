"""Named areas (territory and EEZ of Japan and South Korea) and the tests made against them.

The polygons in ``data/areas.json`` are coarse and hand-drawn (errors of tens of km); the
tests run on the latitude/longitude plane, which is fine away from the poles and the
antimeridian. A ground track is a polyline of (lat, lon) points: it *touches* an area when any
point lies inside or any segment crosses the area's boundary.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers.catalog import DATA_DIR, format_validation_error
from producers.errors import CatalogError
from schemas.models import AREA_PATTERN, Nation

AREAS_FILE = DATA_DIR / "areas.json"

LatLon = tuple[float, float]
Vertex = Annotated[tuple[float, float], Field()]
Ring = Annotated[list[Vertex], Field(min_length=3)]


class Area(BaseModel):
    """One named area: its nation and one or more rings (islands)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    nation: Nation
    rings: list[Ring] = Field(min_length=1)


class AreaFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    comment: list[str] = Field(default_factory=list, alias="_comment")
    areas: dict[Annotated[str, Field(pattern=AREA_PATTERN)], Area]


def _in_ring(point: LatLon, ring: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting along +longitude."""
    lat, lon = point
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        lat_i, lon_i = ring[i]
        lat_j, lon_j = ring[j]
        if (lat_i > lat) != (lat_j > lat):
            cross_lon = lon_i + (lat - lat_i) * (lon_j - lon_i) / (lat_j - lat_i)
            if lon < cross_lon:
                inside = not inside
        j = i
    return inside


def _orient(a: LatLon, b: LatLon, c: LatLon) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _segments_cross(p1: LatLon, p2: LatLon, q1: LatLon, q2: LatLon) -> bool:
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    return ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0))


class AreaMap:
    """All named areas, with point and track tests."""

    def __init__(self, areas: dict[str, Area]) -> None:
        self.areas = areas
        # bounding boxes for a cheap first rejection
        self._boxes = {
            name: (
                min(v[0] for r in a.rings for v in r),
                max(v[0] for r in a.rings for v in r),
                min(v[1] for r in a.rings for v in r),
                max(v[1] for r in a.rings for v in r),
            )
            for name, a in areas.items()
        }

    def contains(self, name: str, point: LatLon) -> bool:
        lo_lat, hi_lat, lo_lon, hi_lon = self._boxes[name]
        if not (lo_lat <= point[0] <= hi_lat and lo_lon <= point[1] <= hi_lon):
            return False
        return any(_in_ring(point, ring) for ring in self.areas[name].rings)

    def areas_at(self, point: LatLon) -> list[str]:
        """Names of the areas containing ``point``, sorted."""
        return sorted(name for name in self.areas if self.contains(name, point))

    def track_touches(self, name: str, track: Sequence[LatLon]) -> bool:
        if any(self.contains(name, p) for p in track):
            return True
        for ring in self.areas[name].rings:
            edges = list(zip(ring, [*ring[1:], ring[0]], strict=True))
            for a, b in itertools.pairwise(track):
                if any(_segments_cross(a, b, q1, q2) for q1, q2 in edges):
                    return True
        return False

    def areas_touched(self, track: Sequence[LatLon]) -> list[str]:
        """Names of the areas a ground track touches (inside, or crossing a boundary), sorted."""
        return sorted(name for name in self.areas if self.track_touches(name, track))

    def nations_of(self, names: Iterable[str]) -> set[Nation]:
        return {self.areas[n].nation for n in names}


def load_areas(path: Path = AREAS_FILE) -> AreaMap:
    """Read and validate an areas file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        parsed = AreaFile.model_validate(document)
    except OSError as exc:
        raise CatalogError("missing_areas", f"{path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError("invalid_areas", f"{path}: not JSON: {exc}") from None
    except ValidationError as exc:
        raise CatalogError("invalid_areas", f"{path}: {format_validation_error(exc)}") from None
    return AreaMap(parsed.areas)


@lru_cache(maxsize=1)
def default_areas() -> AreaMap:
    """The shipped areas (read once)."""
    return load_areas()
