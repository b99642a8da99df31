"""Detection physics of the sensors: the refracted radar horizon and space-infrared lines of sight.

**Radar horizon.** A ground or ship radar sees a target only above the ray it launches at its
minimum elevation. Rays bend downwards in the lower atmosphere; the standard model replaces the
Earth's radius ``R`` by an effective radius ``k R`` with ``k = 4/3`` (the median refractivity
gradient of about -40 N-units/km: ITU-R P.453 and P.834; Skolnik, *Introduction to Radar
Systems*, sec. 8.2), over which rays are straight. Heights, ground distances and local elevation
angles carry over unchanged, so the horizon range between an antenna at height ``a`` and a target
at height ``h`` is ``sqrt(2 k R a) + sqrt(2 k R h)`` instead of ``sqrt(2 R a) + sqrt(2 R h)``.

The 4/3 law describes the troposphere only. Applied to a ray that climbs into space it would bend
the ray without end (a target 3,000 km away at 1,000 km altitude would rise by several degrees),
so the ray here bends only below :data:`REFRACTION_TOP_M` and is straight above it. The total
bending of a grazing ray is then ``sqrt(2 k R top) / (4 R)`` = 0.8 degrees (an assumption chosen
near the 0.6-1 degree total bending of a ray through the whole standard atmosphere).

**Space infrared.** A geostationary infrared sensor sees a hot plume as a point on its focal
plane: it measures a *direction* (a unit line-of-sight vector from the satellite) with an angular
noise, never a range. One satellite alone can place a launch only by assuming the plume's
altitude; two satellites that see the same plume give a 3-D position by triangulation (stereo),
whose uncertainty follows from the angular noise, the ranges and the angle between the lines of
sight (:func:`triangulate`, a weighted least-squares intersection with its covariance).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from producers.geometry import EARTH_RADIUS_M, Vec3, cross, dot, norm, scale, sub, unit

#: Effective Earth-radius factor of the standard refracting atmosphere (ITU-R P.453/P.834: a
#: refractivity gradient of -40 N-units/km gives k = 4/3).
STANDARD_K = 4.0 / 3.0
#: Rays bend (4/3 law) only below this altitude, m (assumption, see the module docstring).
REFRACTION_TOP_M = 8_000.0

Matrix3 = tuple[Vec3, Vec3, Vec3]


def add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


# --------------------------------------------------------------------------- radar horizon


def radar_horizon_range_m(antenna_alt_m: float, target_alt_m: float, k: float = STANDARD_K) -> float:
    """Longest straight-in-the-effective-Earth distance between an antenna and a target that
    both sit below :data:`REFRACTION_TOP_M` (the classic ``sqrt(2kRa) + sqrt(2kRh)``, exact form)."""
    r = k * EARTH_RADIUS_M
    return math.sqrt(max(0.0, (r + antenna_alt_m) ** 2 - r * r)) + math.sqrt(
        max(0.0, (r + target_alt_m) ** 2 - r * r)
    )


def _ray_altitude_m(
    antenna_alt_m: float, elevation_rad: float, ground_angle_rad: float, k: float, top_m: float
) -> float:
    """Altitude of a ray launched from ``antenna_alt_m`` at ``elevation_rad`` when it has flown
    ``ground_angle_rad`` (true Earth-central angle) from the antenna; ``inf`` once it is gone."""
    big_r = EARTH_RADIUS_M
    if antenna_alt_m >= top_m or k == 1.0:
        return _straight_ray_altitude_m(big_r + antenna_alt_m, elevation_rad, ground_angle_rad)
    # inside the layer: a straight line over the effective Earth k R (polar form r = p / cos)
    r_eff = k * big_r + antenna_alt_m
    p = r_eff * math.cos(elevation_rad)
    top_r = k * big_r + top_m
    exit_angle = math.acos(min(1.0, p / top_r)) - elevation_rad  # effective central angle
    phi = ground_angle_rad / k
    if phi <= exit_angle:
        return p / math.cos(phi + elevation_rad) - k * big_r
    # above the layer: straight in the true geometry, leaving at the ray's local elevation
    exit_elevation = exit_angle + elevation_rad
    return _straight_ray_altitude_m(big_r + top_m, exit_elevation, ground_angle_rad - k * exit_angle)


def _straight_ray_altitude_m(r0_m: float, elevation_rad: float, angle_rad: float) -> float:
    a = angle_rad + elevation_rad
    if a >= math.pi / 2.0:
        return math.inf
    return r0_m * math.cos(elevation_rad) / math.cos(a) - EARTH_RADIUS_M


def radar_sees(
    site_m: Vec3,
    target_m: Vec3,
    min_elevation_deg: float,
    *,
    k: float = STANDARD_K,
    top_m: float = REFRACTION_TOP_M,
) -> bool:
    """Whether ``target_m`` is above the refracted ray a radar at ``site_m`` launches at its minimum
    elevation (or above the grazing ray, if that lies higher: a ray aimed into the ground does not
    limit anything beyond the horizon)."""
    r_site, r_target = norm(site_m), norm(target_m)
    antenna_alt = r_site - EARTH_RADIUS_M
    target_alt = r_target - EARTH_RADIUS_M
    cos_angle = dot(site_m, target_m) / (r_site * r_target)
    ground_angle = math.acos(max(-1.0, min(1.0, cos_angle)))
    r_ray = (k if antenna_alt < top_m else 1.0) * EARTH_RADIUS_M
    grazing = -math.acos(min(1.0, r_ray / (r_ray + max(0.0, antenna_alt))))
    elevation = max(math.radians(min_elevation_deg), grazing)
    return target_alt >= _ray_altitude_m(antenna_alt, elevation, ground_angle, k, top_m)


# --------------------------------------------------------------------------- lines of sight


def line_of_sight(observer_m: Vec3, target_m: Vec3) -> Vec3:
    """Unit vector from the observer to the target."""
    return unit(sub(target_m, observer_m))


def _perpendiculars(u: Vec3) -> tuple[Vec3, Vec3]:
    helper: Vec3 = (1.0, 0.0, 0.0) if abs(u[0]) < 0.9 else (0.0, 1.0, 0.0)
    e1 = unit(cross(u, helper))
    return e1, cross(u, e1)


def noisy_line_of_sight(observer_m: Vec3, target_m: Vec3, sigma_rad: float, rng: random.Random) -> Vec3:
    """The line of sight as a focal plane measures it: the true direction turned by independent
    Gaussian angles (``sigma_rad`` each) about two axes across it."""
    u = line_of_sight(observer_m, target_m)
    e1, e2 = _perpendiculars(u)
    a, b = rng.gauss(0.0, sigma_rad), rng.gauss(0.0, sigma_rad)
    return unit(add(u, add(scale(e1, a), scale(e2, b))))


def intersect_sphere(origin_m: Vec3, direction: Vec3, radius_m: float) -> Vec3 | None:
    """The nearer point where the ray ``origin + s direction`` (s >= 0) meets a sphere centred on
    the Earth's centre, or None when it misses."""
    b = dot(origin_m, direction)
    c = dot(origin_m, origin_m) - radius_m * radius_m
    disc = b * b - c
    if disc < 0.0:
        return None
    s = -b - math.sqrt(disc)
    if s < 0.0:
        return None
    return add(origin_m, scale(direction, s))


@dataclass(frozen=True, slots=True)
class StereoFix:
    """A 3-D position triangulated from lines of sight, with its covariance (m^2)."""

    position_m: Vec3
    covariance_m2: Matrix3

    @property
    def sigma_max_m(self) -> float:
        """1-sigma along the worst axis (square root of the covariance's largest eigenvalue)."""
        return math.sqrt(max(symmetric_eigenvalues(self.covariance_m2)))

    @property
    def sigma_min_m(self) -> float:
        return math.sqrt(max(0.0, min(symmetric_eigenvalues(self.covariance_m2))))

    def mahalanobis2(self, truth_m: Vec3) -> float:
        """Squared Mahalanobis distance of ``truth_m`` from the fix (chi-square, 3 dof, if honest)."""
        d = sub(truth_m, self.position_m)
        inv = _inverse(self.covariance_m2)
        assert inv is not None
        return dot(d, _mat_vec(inv, d))


def triangulate(origins_m: Sequence[Vec3], directions: Sequence[Vec3], sigma_rad: float) -> StereoFix | None:
    """Least-squares intersection of two or more lines of sight, each with an angular noise of
    ``sigma_rad`` per axis; None when they are (nearly) parallel.

    Each line constrains the two directions across it with a standard deviation of range x sigma;
    the information matrix is ``sum (I - u u^T) / (rho sigma)^2`` and its inverse the covariance.
    The ranges come from a first unweighted solution (one refinement is plenty at these ratios).
    """
    if len(origins_m) != len(directions) or len(origins_m) < 2 or sigma_rad <= 0.0:
        return None
    weights = [1.0] * len(origins_m)
    point: Vec3 | None = None
    info: Matrix3 | None = None
    for _ in range(2):
        info, rhs = _normal_equations(origins_m, directions, weights)
        inv = _inverse(info)
        if inv is None:
            return None
        point = _mat_vec(inv, rhs)
        weights = [1.0 / (max(norm(sub(point, o)), 1.0) * sigma_rad) ** 2 for o in origins_m]
    assert point is not None
    info, _ = _normal_equations(origins_m, directions, weights)
    cov = _inverse(info)
    if cov is None:
        return None
    return StereoFix(point, cov)


def _normal_equations(
    origins_m: Sequence[Vec3], directions: Sequence[Vec3], weights: Sequence[float]
) -> tuple[Matrix3, Vec3]:
    a = [[0.0] * 3 for _ in range(3)]
    b = [0.0, 0.0, 0.0]
    for o, u, w in zip(origins_m, directions, weights, strict=True):
        for i in range(3):
            for j in range(3):
                p = w * ((1.0 if i == j else 0.0) - u[i] * u[j])
                a[i][j] += p
                b[i] += p * o[j]
    return (
        (a[0][0], a[0][1], a[0][2]),
        (a[1][0], a[1][1], a[1][2]),
        (a[2][0], a[2][1], a[2][2]),
    ), (b[0], b[1], b[2])


def _mat_vec(m: Matrix3, v: Vec3) -> Vec3:
    return (dot(m[0], v), dot(m[1], v), dot(m[2], v))


def _inverse(m: Matrix3) -> Matrix3 | None:
    (a, b, c), (d, e, f), (g, h, i) = m
    co = (
        (e * i - f * h, c * h - b * i, b * f - c * e),
        (f * g - d * i, a * i - c * g, c * d - a * f),
        (d * h - e * g, b * g - a * h, a * e - b * d),
    )
    det = a * co[0][0] + b * co[1][0] + c * co[2][0]
    scale_ = max(abs(x) for row in m for x in row)
    if scale_ == 0.0 or abs(det) <= 1e-12 * scale_**3:
        return None
    return (
        (co[0][0] / det, co[0][1] / det, co[0][2] / det),
        (co[1][0] / det, co[1][1] / det, co[1][2] / det),
        (co[2][0] / det, co[2][1] / det, co[2][2] / det),
    )


def symmetric_eigenvalues(m: Matrix3) -> tuple[float, float, float]:
    """Eigenvalues of a symmetric 3x3 matrix, largest first (closed form, Smith 1961)."""
    p1 = m[0][1] ** 2 + m[0][2] ** 2 + m[1][2] ** 2
    q = (m[0][0] + m[1][1] + m[2][2]) / 3.0
    if p1 == 0.0:
        d = sorted((m[0][0], m[1][1], m[2][2]), reverse=True)
        return d[0], d[1], d[2]
    p2 = (m[0][0] - q) ** 2 + (m[1][1] - q) ** 2 + (m[2][2] - q) ** 2 + 2.0 * p1
    p = math.sqrt(p2 / 6.0)
    b = tuple(tuple((m[i][j] - (q if i == j else 0.0)) / p for j in range(3)) for i in range(3))
    det_b = (
        b[0][0] * (b[1][1] * b[2][2] - b[1][2] * b[2][1])
        - b[0][1] * (b[1][0] * b[2][2] - b[1][2] * b[2][0])
        + b[0][2] * (b[1][0] * b[2][1] - b[1][1] * b[2][0])
    )
    phi = math.acos(max(-1.0, min(1.0, det_b / 2.0))) / 3.0
    e1 = q + 2.0 * p * math.cos(phi)
    e3 = q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)
    return e1, 3.0 * q - e1 - e3, e3
