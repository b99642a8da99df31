"""Crop world-atlas's Natural Earth land TopoJSON to the region the live pages draw.

Run once by a maintainer (the output is committed; users run nothing)::

    npm pack world-atlas@2 && tar xzf world-atlas-2.0.2.tgz
    python consumers/web/vendor/world_atlas/crop.py package/land-50m.json \
        consumers/web/vendor/world_atlas/land-50m-region.json

TopoJSON decoding follows the format's specification (github.com/topojson/topojson-specification):
quantized, delta-encoded arcs; a negative arc index ``i`` means arc ``~i`` reversed. Each ring is
clipped to the box with Sutherland-Hodgman (edges that run along the box border are harmless for
an even-odd fill), rounded to 0.01 degree, with repeated points dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: lon_min, lat_min, lon_max, lat_max (degrees): Korea, Japan and the seas around, wide enough
#: for an IRBM's impact in the western Pacific.
BOX = (110.0, 18.0, 180.0, 56.0)

Point = tuple[float, float]  # (lon, lat), TopoJSON order


def decode_arcs(topology: dict[str, Any]) -> list[list[Point]]:
    scale_x, scale_y = topology["transform"]["scale"]
    translate_x, translate_y = topology["transform"]["translate"]
    arcs: list[list[Point]] = []
    for arc in topology["arcs"]:
        x = y = 0
        points: list[Point] = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * scale_x + translate_x, y * scale_y + translate_y))
        arcs.append(points)
    return arcs


def ring_points(indexes: list[int], arcs: list[list[Point]]) -> list[Point]:
    ring: list[Point] = []
    for index in indexes:
        arc = arcs[index] if index >= 0 else arcs[~index][::-1]
        ring.extend(arc[1:] if ring else arc)  # consecutive arcs share their end point
    return ring


def _clip_edge(ring: list[Point], inside: Any, cross: Any) -> list[Point]:
    out: list[Point] = []
    for i, current in enumerate(ring):
        previous = ring[i - 1]
        if inside(current):
            if not inside(previous):
                out.append(cross(previous, current))
            out.append(current)
        elif inside(previous):
            out.append(cross(previous, current))
    return out


def _at_x(x: float) -> Any:
    def cross(a: Point, b: Point) -> Point:
        t = (x - a[0]) / (b[0] - a[0])
        return (x, a[1] + t * (b[1] - a[1]))

    return cross


def _at_y(y: float) -> Any:
    def cross(a: Point, b: Point) -> Point:
        t = (y - a[1]) / (b[1] - a[1])
        return (a[0] + t * (b[0] - a[0]), y)

    return cross


def clip(ring: list[Point], box: tuple[float, float, float, float] = BOX) -> list[Point]:
    x0, y0, x1, y1 = box
    for inside, cross in (
        (lambda p: p[0] >= x0, _at_x(x0)),
        (lambda p: p[0] <= x1, _at_x(x1)),
        (lambda p: p[1] >= y0, _at_y(y0)),
        (lambda p: p[1] <= y1, _at_y(y1)),
    ):
        if not ring:
            break
        ring = _clip_edge(ring, inside, cross)
    return ring


def rounded(ring: list[Point]) -> list[list[float]]:
    out: list[list[float]] = []
    for lon, lat in ring:
        point = [round(lon, 2), round(lat, 2)]
        if not out or point != out[-1]:
            out.append(point)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def crop(topology: dict[str, Any]) -> list[list[list[float]]]:
    arcs = decode_arcs(topology)
    rings: list[list[list[float]]] = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = [geometry["arcs"]] if geometry["type"] == "Polygon" else geometry["arcs"]
        for polygon in polygons:
            for indexes in polygon:
                ring = rounded(clip(ring_points(indexes, arcs)))
                if len(ring) >= 3:
                    rings.append(ring)
    return rings


def main(source: str, target: str) -> None:
    topology = json.loads(Path(source).read_text(encoding="utf-8"))
    document = {
        "_comment": (
            "Land of Natural Earth 1:50m (public domain, naturalearthdata.com) from the world-atlas "
            "2.0.2 npm package (ISC, see LICENSE), cropped by crop.py to lon_min, lat_min, lon_max, "
            "lat_max = bbox; rings of [lon_deg, lat_deg], fill with the even-odd rule."
        ),
        "bbox": list(BOX),
        "rings": crop(topology),
    }
    Path(target).write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
