"""Frames and conversions shared by the trajectory and sensor models.

The physics runs on a *spherical, rotating Earth* (radius :data:`EARTH_RADIUS_M`) in an
Earth-centred, Earth-fixed Cartesian frame whose axes coincide with WGS-84 ECEF ("model frame";
:mod:`producers.trajectory` adds the Coriolis and centrifugal terms). A point's spherical latitude/longitude are read as WGS-84 geodetic
latitude/longitude and its height above the sphere as height above the ellipsoid; only at the
edges (events, exports) are true WGS-84 ECEF coordinates computed. The sphere/ellipsoid mismatch
(at most ~21 km in radius, a few km in horizontal position) shifts a whole flight coherently and
matters little for an engineering model of warning latency and releasability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Standard gravitational parameter of the Earth, m^3/s^2 (WGS-84 / IERS value).
MU_EARTH_M3_S2 = 3.986004418e14
#: Mean Earth radius R1 = (2a+b)/3, m (IUGG; Moritz, Geodetic Reference System 1980).
EARTH_RADIUS_M = 6_371_008.8
#: WGS-84 semi-major axis, m, and flattening (NIMA TR8350.2).
WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)

Vec3 = tuple[float, float, float]


def dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def norm(a: Vec3) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def sub(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def scale(a: Vec3, k: float) -> Vec3:
    return (a[0] * k, a[1] * k, a[2] * k)


def unit(a: Vec3) -> Vec3:
    n = norm(a)
    return (a[0] / n, a[1] / n, a[2] / n)


@dataclass(frozen=True, slots=True)
class Enu:
    """The local east/north/up unit vectors at a point of the sphere."""

    east: Vec3
    north: Vec3
    up: Vec3


def enu_basis(lat_deg: float, lon_deg: float) -> Enu:
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
    return Enu(east=(-so, co, 0.0), north=(-sl * co, -sl * so, cl), up=(cl * co, cl * so, sl))


def to_model(lat_deg: float, lon_deg: float, alt_m: float = 0.0) -> Vec3:
    """A (lat, lon, height) point as a model-frame position on the sphere."""
    return scale(enu_basis(lat_deg, lon_deg).up, EARTH_RADIUS_M + alt_m)


def from_model(position: Vec3) -> tuple[float, float, float]:
    """Model-frame position -> (lat_deg, lon_deg, height above the sphere in m)."""
    r = norm(position)
    lat = math.degrees(math.asin(max(-1.0, min(1.0, position[2] / r))))
    lon = math.degrees(math.atan2(position[1], position[0]))
    return lat, lon, r - EARTH_RADIUS_M


def geodetic_to_ecef(lat_deg: float, lon_deg: float, height_m: float) -> Vec3:
    """WGS-84 geodetic -> ECEF, m (used only at the edges)."""
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    sl, cl = math.sin(lat), math.cos(lat)
    n = WGS84_A_M / math.sqrt(1.0 - WGS84_E2 * sl * sl)
    return (
        (n + height_m) * cl * math.cos(lon),
        (n + height_m) * cl * math.sin(lon),
        (n * (1.0 - WGS84_E2) + height_m) * sl,
    )


def great_circle_m(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """Distance along the sphere's surface (haversine), m."""
    p1, p2 = math.radians(lat1_deg), math.radians(lat2_deg)
    dp, dl = p2 - p1, math.radians(lon2_deg - lon1_deg)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def destination(lat_deg: float, lon_deg: float, azimuth_deg: float, range_m: float) -> tuple[float, float]:
    """The point ``range_m`` along the great circle leaving (lat, lon) at ``azimuth_deg``."""
    enu = enu_basis(lat_deg, lon_deg)
    az, ang = math.radians(azimuth_deg), range_m / EARTH_RADIUS_M
    heading = tuple(math.cos(az) * n + math.sin(az) * e for n, e in zip(enu.north, enu.east, strict=True))
    p = tuple(math.cos(ang) * u + math.sin(ang) * h for u, h in zip(enu.up, heading, strict=True))
    lat, lon, _ = from_model((p[0] * EARTH_RADIUS_M, p[1] * EARTH_RADIUS_M, p[2] * EARTH_RADIUS_M))
    return lat, lon


def initial_azimuth_deg(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north."""
    p1, p2 = math.radians(lat1_deg), math.radians(lat2_deg)
    dl = math.radians(lon2_deg - lon1_deg)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass(frozen=True, slots=True)
class LookAngles:
    """Where a target appears from a site: slant range, azimuth and elevation above the horizon."""

    range_m: float
    azimuth_deg: float
    elevation_deg: float


def look_angles(site: Vec3, site_enu: Enu, target: Vec3) -> LookAngles:
    """Slant range, azimuth (clockwise from north) and elevation of ``target`` seen from ``site``.

    Elevation below zero means the target is under the site's geometric horizon: on the sphere
    this is exactly the Earth-curvature limit (refraction is neglected).
    """
    d = sub(target, site)
    rng = norm(d)
    if rng == 0.0:
        return LookAngles(0.0, 0.0, 90.0)
    e, n, u = dot(d, site_enu.east), dot(d, site_enu.north), dot(d, site_enu.up)
    return LookAngles(
        range_m=rng,
        azimuth_deg=math.degrees(math.atan2(e, n)) % 360.0,
        elevation_deg=math.degrees(math.asin(max(-1.0, min(1.0, u / rng)))),
    )


def horizon_range_m(site_alt_m: float, target_alt_m: float) -> float:
    """Longest straight line between two heights that clears the sphere (geometric horizon)."""
    r = EARTH_RADIUS_M
    return math.sqrt(max(0.0, (r + site_alt_m) ** 2 - r * r)) + math.sqrt(
        max(0.0, (r + target_alt_m) ** 2 - r * r)
    )
