"""Named areas (territory and EEZ of Japan and South Korea) and the tests made against them.

The polygons (``schemas/data/areas.json``, read through :mod:`schemas.areas` because the ally
services draw them too) are coarse and hand-drawn (errors of tens of km); the
tests run on the latitude/longitude plane, which is fine away from the poles and the
antimeridian. A ground track is a polyline of (lat, lon) points: it *touches* an area when any
point lies inside or any segment crosses the area's boundary.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import ValidationError

from producers.catalog import format_validation_error
from producers.errors import CatalogError
from schemas.areas import AREAS_RESOURCE, Area, AreaFile
from schemas.models import Nation

__all__ = ["AREAS_FILE", "Area", "AreaFile", "AreaMap", "default_areas", "load_areas"]

#: The shipped areas file (a package resource of :mod:`schemas`).
AREAS_FILE: Traversable = AREAS_RESOURCE

LatLon = tuple[float, float]


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


_Box = tuple[float, float, float, float]  # lat min, lat max, lon min, lon max


def _box(points: Sequence[LatLon]) -> _Box:
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    return min(lats), max(lats), min(lons), max(lons)


_Segment = tuple[LatLon, LatLon, float, float, float, float]


def _segments(track: Sequence[LatLon]) -> list[_Segment]:
    return [
        (a, b, min(a[0], b[0]), max(a[0], b[0]), min(a[1], b[1]), max(a[1], b[1]))
        for a, b in itertools.pairwise(track)
    ]


def _overlap(box: _Box, lat0: float, lat1: float, lon0: float, lon1: float) -> bool:
    return not (lat1 < box[0] or lat0 > box[1] or lon1 < box[2] or lon0 > box[3])


def _ring_edges(ring: Sequence[LatLon]) -> tuple[_Box, list[tuple[LatLon, LatLon, _Box]]]:
    pairs = list(zip(ring, [*ring[1:], ring[0]], strict=True))
    return _box(ring), [(a, b, _box([a, b])) for a, b in pairs]


def _unwrap(track: Sequence[LatLon]) -> list[LatLon]:
    out: list[LatLon] = []
    for lat, lon in track:
        shift = 360.0 * round((out[-1][1] - lon) / 360.0) if out else 0.0
        out.append((lat, lon + shift))
    return out


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
        # per ring: its box and its edges with their boxes, for the track-crossing test
        self._edges: dict[str, list[tuple[_Box, list[tuple[LatLon, LatLon, _Box]]]]] = {
            name: [_ring_edges(ring) for ring in a.rings] for name, a in areas.items()
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
        """Whether a ground track lies in, or crosses the boundary of, area ``name``."""
        return bool(track) and self._touches(name, track[0], _segments(track), _box(track))

    def _touches(self, name: str, first: LatLon, segments: list[_Segment], track_box: _Box) -> bool:
        if not _overlap(self._boxes[name], *track_box):
            return False
        # a polyline that crosses no edge of a ring is wholly inside or wholly outside it,
        # so one point-in-ring test per ring is enough
        for ring, (ring_box, edges) in zip(self.areas[name].rings, self._edges[name], strict=True):
            if _in_ring(first, ring):
                return True
            for a, b, lat0, lat1, lon0, lon1 in segments:
                if not _overlap(ring_box, lat0, lat1, lon0, lon1):
                    continue
                for q1, q2, edge_box in edges:
                    if _overlap(edge_box, lat0, lat1, lon0, lon1) and _segments_cross(a, b, q1, q2):
                        return True
        return False

    def areas_touched(self, track: Sequence[LatLon]) -> list[str]:
        """Names of the areas a ground track touches (inside, or crossing a boundary), sorted.

        Longitudes are unwrapped first so a track crossing the antimeridian stays continuous
        (and away from the areas) instead of jumping across the whole map.
        """
        if not track:
            return []
        unwrapped = _unwrap(track)
        segments, box = _segments(unwrapped), _box(unwrapped)
        return sorted(n for n in self.areas if self._touches(n, unwrapped[0], segments, box))

    def nations_of(self, names: Iterable[str]) -> set[Nation]:
        return {self.areas[n].nation for n in names}


def load_areas(path: Path | Traversable = AREAS_FILE) -> AreaMap:
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
