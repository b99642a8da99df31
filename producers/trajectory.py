"""Synthetic ballistic-missile flights: launch point to impact, time-stamped and in WGS-84.

Physics (deliberately simple, and stated so a reviewer can check it):

* **Earth**: a sphere of radius :data:`~producers.geometry.EARTH_RADIUS_M`, non-rotating,
  with inverse-square gravity ``-mu r / |r|^3``. Positions are converted to WGS-84 only at the
  edges (see :mod:`producers.geometry`).
* **Boost**: one continuous burn of the class's burn time with a constant thrust acceleration
  ``thrust_accel_m_s2`` (a stand-in for staged constant-thrust-with-mass-flow: the burnout
  *state* is what matters downstream, not the acceleration history). Steering: vertical rise
  for the first 8 % of the burn, then the thrust's pitch above the local horizontal falls
  linearly to ``pitch_end`` by mid-burn (a quarter of the burn for depressed flights) and is
  held there to burnout (a simplified gravity turn). How the burn is shaped changes the
  burnout altitude by tens of km and the total flight time by well under 5 %.
* **Solving**: the burnout state (speed, flight-path angle) whose *Kepler ellipse* reaches
  the requested apogee and meets the sphere at the requested ground range is found by closed
  form (:func:`target_arc`); the two boost parameters that produce that burnout state are
  found by Newton iteration on the integrated boost.
* **Integration**: classical RK4, fixed step :data:`BALLISTIC_STEP_S` on the ballistic arc and
  about :data:`BOOST_STEP_S` in boost (the step divides the burn so that steering kinks fall on
  step boundaries). Measured for the Hwasong-15 case: halving either step moves the impact by
  well under a millimetre and the flight time by under a microsecond; specific energy and
  angular momentum on the ballistic arc stay constant to ~1e-13 relative. The tests assert
  the looser bounds 1 m, 1 ms and 1e-9 (``tests/producers/test_trajectory.py``).

Neglected, and why that is acceptable here: **drag** (matters below ~40 km, i.e. the first
tens of seconds of boost and the last tens of seconds of re-entry; it shortens range and adds
seconds, not minutes, to the flights modelled), **Earth rotation and Coriolis** (the ground
under a 50-minute lofted flight moves ~1,000 km eastward at the equator's speed but the flight
time and apogee are frame-independent to first order; impact points are off by up to a few
tens of km for the longest flights), **oblateness (J2)** (a ~0.1 % perturbation of gravity),
**pull-up and glide manoeuvres** of depressed SRBMs such as KN-23 (modelled as a low, purely
ballistic arc with the published apogee and range). None of these change which sensor sees
a flight or the order of magnitude of warning times, which is what trilink measures.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from producers.errors import TrajectoryError
from producers.geometry import (
    EARTH_RADIUS_M,
    MU_EARTH_M3_S2,
    Vec3,
    enu_basis,
    from_model,
    geodetic_to_ecef,
    great_circle_m,
    initial_azimuth_deg,
    norm,
)

#: Fixed RK4 step on the ballistic arc, s.
BALLISTIC_STEP_S = 1.0
#: Target RK4 step in boost, s (the actual step divides the burn time evenly).
BOOST_STEP_S = 0.5
#: Fractions of the burn: end of the vertical rise, end of the pitch-over (depressed flights
#: pitch over twice as fast, which is how a low apogee is reached without thrusting downward).
VERTICAL_FRACTION = 0.08
PITCH_OVER_FRACTION = 0.5
PITCH_OVER_FRACTION_DEPRESSED = 0.25
#: The region the simulation models (North Korea, both Koreas' and Japan's seas), degrees.
MAP_LAT_DEG = (20.0, 50.0)
MAP_LON_DEG = (115.0, 150.0)


class MissileClass(enum.StrEnum):
    SRBM = "SRBM"
    MRBM = "MRBM"
    IRBM = "IRBM"
    ICBM = "ICBM"


class Profile(enum.StrEnum):
    MINIMUM_ENERGY = "minimum-energy"
    LOFTED = "lofted"
    DEPRESSED = "depressed"


@dataclass(frozen=True, slots=True)
class ClassSpec:
    """Per-class figures. Reach follows the usual US range classes; burn times are assumptions."""

    burn_time_s: float
    max_range_m: float
    note: str


#: Range classes (SRBM < 1,000 km, MRBM 1,000-3,000 km, IRBM 3,000-5,500 km, ICBM > 5,500 km)
#: follow common public usage (e.g. US DIA/NASIC "Ballistic and Cruise Missile Threat"); the
#: ICBM reach of 13,000 km is the publicly reported Hwasong-15 estimate. Burn times are
#: ASSUMPTIONS of the right order for solid SRBMs, single-stage liquid MRBM/IRBMs and a
#: two-stage ICBM (no official figures are public).
CLASS_SPECS: dict[MissileClass, ClassSpec] = {
    MissileClass.SRBM: ClassSpec(45.0, 1_000e3, "burn time assumed"),
    MissileClass.MRBM: ClassSpec(110.0, 3_000e3, "burn time assumed"),
    MissileClass.IRBM: ClassSpec(160.0, 5_500e3, "burn time assumed"),
    MissileClass.ICBM: ClassSpec(300.0, 13_000e3, "burn time assumed (two stages, one burn)"),
}


# --------------------------------------------------------------------------- Kepler arcs


@dataclass(frozen=True, slots=True)
class KeplerArc:
    """The rest of a free-flight conic from a state at radius ``r_m`` down to the sphere."""

    apogee_radius_m: float  # highest radius still ahead (r_m itself when already descending)
    range_angle_rad: float  # central angle from the state to impact
    time_to_impact_s: float


def kepler_arc(r_m: float, radial_m_s: float, tangential_m_s: float) -> KeplerArc | None:
    """Closed-form rest of the flight, or None when the conic never meets the sphere."""
    mu = MU_EARTH_M3_S2
    v2 = radial_m_s * radial_m_s + tangential_m_s * tangential_m_s
    energy = v2 / 2.0 - mu / r_m
    if energy >= 0.0 or tangential_m_s <= 0.0:
        return None
    h = r_m * tangential_m_s
    p = h * h / mu
    ecos = p / r_m - 1.0
    esin = radial_m_s * h / mu
    e = math.hypot(ecos, esin)
    if e < 1e-12 or p / (1.0 + e) >= EARTH_RADIUS_M:
        return None  # perigee above the surface: an orbit, not a ballistic flight
    nu0 = math.atan2(esin, ecos) % (2.0 * math.pi)
    nu_impact = 2.0 * math.pi - math.acos(max(-1.0, min(1.0, (p / EARTH_RADIUS_M - 1.0) / e)))
    if nu0 > nu_impact:
        return None  # already below the surface
    a = p / (1.0 - e * e)
    n = math.sqrt(mu / a**3)

    def mean_anomaly(nu: float) -> float:
        ecc = 2.0 * math.atan(math.sqrt((1.0 - e) / (1.0 + e)) * math.tan(nu / 2.0))
        return ecc - e * math.sin(ecc)

    # tan(nu/2) is singular at nu = pi; unwrap by full turns of the mean anomaly.
    def unwrapped(nu: float) -> float:
        if abs(nu - math.pi) < 1e-12:
            return math.pi
        m = mean_anomaly(nu)
        return m + 2.0 * math.pi if nu > math.pi else m

    apogee = p / (1.0 - e) if nu0 <= math.pi else r_m
    return KeplerArc(
        apogee_radius_m=apogee,
        range_angle_rad=nu_impact - nu0,
        time_to_impact_s=(unwrapped(nu_impact) - unwrapped(nu0)) / n,
    )


def target_arc(r_m: float, range_angle_rad: float, apogee_radius_m: float) -> tuple[float, float]:
    """Speed and flight-path angle at radius ``r_m`` for a conic with the given apogee that
    meets the sphere ``range_angle_rad`` further on. Closed form plus a 1-D bisection on the
    eccentricity (the range angle falls monotonically as eccentricity grows)."""
    mu, r_e, ra = MU_EARTH_M3_S2, EARTH_RADIUS_M, apogee_radius_m
    if ra <= r_m:
        raise ValueError("apogee below the starting radius")

    def angles(e: float) -> tuple[float, float, float]:
        p = ra * (1.0 - e)
        nu0 = math.acos(max(-1.0, min(1.0, (p / r_m - 1.0) / e)))
        nu_i = 2.0 * math.pi - math.acos(max(-1.0, min(1.0, (p / r_e - 1.0) / e)))
        return nu_i - nu0, nu0, p

    lo, hi = (ra - r_e) / (ra + r_e) + 1e-15, 1.0 - 1e-12
    if angles(lo)[0] < range_angle_rad:
        raise ValueError("range beyond a grazing conic with this apogee")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if angles(mid)[0] > range_angle_rad:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    e = 0.5 * (lo + hi)
    _, nu0, p = angles(e)
    h = math.sqrt(mu * p)
    tangential = h / r_m
    radial = mu / h * e * math.sin(nu0)
    return math.hypot(radial, tangential), math.atan2(radial, tangential)


def minimum_energy_apogee_m(ground_range_m: float) -> float:
    """Apogee height of the least-energy surface-to-surface conic over ``ground_range_m``."""
    psi = ground_range_m / EARTH_RADIUS_M
    s = math.sin(psi / 2.0)
    q = 2.0 * s / (1.0 + s)  # q = r v^2 / mu of the minimum-energy shot
    gamma = (math.pi - psi) / 4.0
    v = math.sqrt(q * MU_EARTH_M3_S2 / EARTH_RADIUS_M)
    arc = kepler_arc(EARTH_RADIUS_M, v * math.sin(gamma), v * math.cos(gamma))
    assert arc is not None
    return arc.apogee_radius_m - EARTH_RADIUS_M


def minimum_energy_range_m(specific_energy_j_kg: float) -> float:
    """Ground range of the minimum-energy surface shot with the given specific orbital energy."""
    q = 2.0 * (specific_energy_j_kg + MU_EARTH_M3_S2 / EARTH_RADIUS_M) * EARTH_RADIUS_M
    q /= MU_EARTH_M3_S2
    if q <= 0.0:
        return 0.0
    s = q / (2.0 - q) if q < 1.0 else 1.0
    return 2.0 * math.asin(min(1.0, s)) * EARTH_RADIUS_M


def class_energy_limit_j_kg(cls: MissileClass) -> float:
    """Specific orbital energy of a minimum-energy shot over the class's maximum range."""
    psi = CLASS_SPECS[cls].max_range_m / EARTH_RADIUS_M
    s = math.sin(psi / 2.0)
    v2 = 2.0 * s / (1.0 + s) * MU_EARTH_M3_S2 / EARTH_RADIUS_M
    return v2 / 2.0 - MU_EARTH_M3_S2 / EARTH_RADIUS_M


# --------------------------------------------------------------------------- integration

State2 = tuple[float, float, float, float]  # x, y, vx, vy in the flight plane (m, m/s)


def _gravity(x: float, y: float) -> tuple[float, float]:
    r2 = x * x + y * y
    k = -MU_EARTH_M3_S2 / (r2 * math.sqrt(r2))
    return k * x, k * y


def rk4_step(
    state: State2, dt: float, accel: Callable[[float, float, float], tuple[float, float]], t: float
) -> State2:
    """One classical Runge-Kutta step of ``r'' = accel(t, x, y)`` (velocity-independent)."""
    x, y, vx, vy = state
    a1x, a1y = accel(t, x, y)
    h = dt / 2.0
    x2, y2, vx2, vy2 = x + h * vx, y + h * vy, vx + h * a1x, vy + h * a1y
    a2x, a2y = accel(t + h, x2, y2)
    x3, y3, vx3, vy3 = x + h * vx2, y + h * vy2, vx + h * a2x, vy + h * a2y
    a3x, a3y = accel(t + h, x3, y3)
    x4, y4, vx4, vy4 = x + dt * vx3, y + dt * vy3, vx + dt * a3x, vy + dt * a3y
    a4x, a4y = accel(t + dt, x4, y4)
    return (
        x + dt / 6.0 * (vx + 2 * vx2 + 2 * vx3 + vx4),
        y + dt / 6.0 * (vy + 2 * vy2 + 2 * vy3 + vy4),
        vx + dt / 6.0 * (a1x + 2 * a2x + 2 * a3x + a4x),
        vy + dt / 6.0 * (a1y + 2 * a2y + 2 * a3y + a4y),
    )


def _gravity_only(_t: float, x: float, y: float) -> tuple[float, float]:
    return _gravity(x, y)


@dataclass(frozen=True, slots=True)
class BoostProgram:
    """The fixed part of a boost: burn time and how soon the pitch-over ends."""

    burn_time_s: float
    pitch_over_fraction: float = PITCH_OVER_FRACTION


def _boost_accel(
    program: BoostProgram, thrust_m_s2: float, pitch_end_rad: float
) -> Callable[[float, float, float], tuple[float, float]]:
    t_vertical = VERTICAL_FRACTION * program.burn_time_s
    t_pitched = program.pitch_over_fraction * program.burn_time_s

    def accel(t: float, x: float, y: float) -> tuple[float, float]:
        if t <= t_vertical:
            pitch = math.pi / 2.0
        elif t >= t_pitched:
            pitch = pitch_end_rad
        else:
            frac = (t - t_vertical) / (t_pitched - t_vertical)
            pitch = math.pi / 2.0 + frac * (pitch_end_rad - math.pi / 2.0)
        r = math.hypot(x, y)
        ux, uy = x / r, y / r  # local up; local downrange horizontal is (uy, -ux)
        c, s = math.cos(pitch), math.sin(pitch)
        gx, gy = _gravity(x, y)
        return gx + thrust_m_s2 * (c * uy + s * ux), gy + thrust_m_s2 * (-c * ux + s * uy)

    return accel


def _boost_steps(burn_time_s: float, step_s: float) -> int:
    # a multiple of 100 so that 8 %, 25 % and 50 % of the burn fall on step boundaries
    return 100 * max(1, math.ceil(burn_time_s / (100.0 * step_s)))


def integrate_boost(
    program: BoostProgram, thrust_m_s2: float, pitch_end_rad: float, step_s: float = BOOST_STEP_S
) -> list[tuple[float, State2]]:
    """The powered flight from the pad at (0, R) to burnout, every step."""
    n = _boost_steps(program.burn_time_s, step_s)
    dt = program.burn_time_s / n
    accel = _boost_accel(program, thrust_m_s2, pitch_end_rad)
    state: State2 = (0.0, EARTH_RADIUS_M, 0.0, 0.0)
    out = [(0.0, state)]
    for i in range(n):
        state = rk4_step(state, dt, accel, i * dt)
        out.append(((i + 1) * dt, state))
    return out


def _polar(state: State2) -> tuple[float, float, float, float]:
    """(radius, downrange angle, radial speed, downrange speed) of a plane state."""
    x, y, vx, vy = state
    r = math.hypot(x, y)
    return r, math.atan2(x, y), (x * vx + y * vy) / r, (vx * y - vy * x) / r


def integrate_ballistic(
    start_t_s: float, state: State2, step_s: float = BALLISTIC_STEP_S, max_time_s: float = 20_000.0
) -> list[tuple[float, State2]]:
    """Free flight until the sphere is reached; the last sample is the interpolated impact."""
    out = [(start_t_s, state)]
    t = start_t_s
    while t - start_t_s < max_time_s:
        nxt = rk4_step(state, step_s, _gravity_only, t)
        if math.hypot(nxt[0], nxt[1]) <= EARTH_RADIUS_M:
            frac = _surface_crossing(state, nxt, step_s)
            out.append((t + frac * step_s, _hermite(state, nxt, step_s, frac)))
            return out
        state, t = nxt, t + step_s
        out.append((t, state))
    raise TrajectoryError("no_impact", "the flight did not come down within the time limit")


def _hermite(a: State2, b: State2, dt: float, frac: float) -> State2:
    """Cubic Hermite interpolation of position (and its derivative) between two states."""
    s = frac
    h00, h10, h01, h11 = (
        2 * s**3 - 3 * s**2 + 1,
        s**3 - 2 * s**2 + s,
        -2 * s**3 + 3 * s**2,
        s**3 - s**2,
    )
    d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
    x = h00 * a[0] + h10 * dt * a[2] + h01 * b[0] + h11 * dt * b[2]
    y = h00 * a[1] + h10 * dt * a[3] + h01 * b[1] + h11 * dt * b[3]
    vx = (d00 * a[0] + d01 * b[0]) / dt + d10 * a[2] + d11 * b[2]
    vy = (d00 * a[1] + d01 * b[1]) / dt + d10 * a[3] + d11 * b[3]
    return x, y, vx, vy


def _surface_crossing(a: State2, b: State2, dt: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        p = _hermite(a, b, dt, mid)
        if math.hypot(p[0], p[1]) > EARTH_RADIUS_M:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class FlightRequest:
    """What to fly. Exactly one of ``impact`` or (``azimuth_deg``, ``range_m``) is given."""

    site_lat_deg: float
    site_lon_deg: float
    missile_class: MissileClass = MissileClass.IRBM
    profile: Profile | None = None  # None: inferred from the apogee (or minimum-energy)
    range_m: float | None = None
    azimuth_deg: float | None = None
    impact_lat_deg: float | None = None
    impact_lon_deg: float | None = None
    apogee_m: float | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One time-stamped point of a flight: WGS-84 geodetic position and ENU velocity."""

    t_s: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    east_m_s: float
    north_m_s: float
    up_m_s: float
    boosting: bool

    @property
    def ecef_m(self) -> Vec3:
        return geodetic_to_ecef(self.lat_deg, self.lon_deg, self.alt_m)

    @property
    def speed_m_s(self) -> float:
        return math.sqrt(self.east_m_s**2 + self.north_m_s**2 + self.up_m_s**2)


@dataclass(frozen=True)
class Flight:
    """A solved flight: every integration step in the flight plane plus summary figures."""

    request: FlightRequest
    profile: Profile
    azimuth_deg: float
    target_range_m: float
    thrust_m_s2: float
    pitch_end_deg: float
    burnout_time_s: float
    times_s: tuple[float, ...]
    states: tuple[State2, ...]
    _basis: tuple[Vec3, Vec3] = field(repr=False)  # (site up, downrange heading) unit vectors

    # ---- summary
    @property
    def flight_time_s(self) -> float:
        return self.times_s[-1]

    @property
    def apogee_m(self) -> float:
        return max(math.hypot(s[0], s[1]) for s in self.states) - EARTH_RADIUS_M

    @property
    def burnout(self) -> Sample:
        return self.sample_at(self.burnout_time_s)

    @property
    def launch_point(self) -> tuple[float, float]:
        return self.request.site_lat_deg, self.request.site_lon_deg

    @property
    def impact_point(self) -> tuple[float, float]:
        s = self.sample_at(self.flight_time_s)
        return s.lat_deg, s.lon_deg

    @property
    def ground_range_m(self) -> float:
        lat, lon = self.impact_point
        return great_circle_m(*self.launch_point, lat, lon)

    # ---- states at any time
    def plane_state_at(self, t_s: float) -> State2:
        """Flight-plane state at ``t_s`` (clamped to the flight), Hermite-interpolated."""
        times = self.times_s
        t = min(max(t_s, 0.0), times[-1])
        i = bisect.bisect_right(times, t) - 1
        i = min(max(i, 0), len(times) - 2)
        dt = times[i + 1] - times[i]
        if dt <= 0.0:
            return self.states[i]
        return _hermite(self.states[i], self.states[i + 1], dt, (t - times[i]) / dt)

    def model_state_at(self, t_s: float) -> tuple[Vec3, Vec3]:
        """Model-frame position (m) and velocity (m/s) at ``t_s``."""
        x, y, vx, vy = self.plane_state_at(t_s)
        up, head = self._basis
        pos = (x * head[0] + y * up[0], x * head[1] + y * up[1], x * head[2] + y * up[2])
        vel = (vx * head[0] + vy * up[0], vx * head[1] + vy * up[1], vx * head[2] + vy * up[2])
        return pos, vel

    def sample_at(self, t_s: float) -> Sample:
        pos, vel = self.model_state_at(t_s)
        lat, lon, alt = from_model(pos)
        enu = enu_basis(lat, lon)
        return Sample(
            t_s=min(max(t_s, 0.0), self.flight_time_s),
            lat_deg=lat,
            lon_deg=lon,
            alt_m=alt,
            east_m_s=sum(v * e for v, e in zip(vel, enu.east, strict=True)),
            north_m_s=sum(v * e for v, e in zip(vel, enu.north, strict=True)),
            up_m_s=sum(v * e for v, e in zip(vel, enu.up, strict=True)),
            boosting=t_s < self.burnout_time_s,
        )

    def samples(self, interval_s: float = 10.0) -> list[Sample]:
        """Samples every ``interval_s`` from launch, plus the impact."""
        n = int(self.flight_time_s // interval_s)
        out = [self.sample_at(i * interval_s) for i in range(n + 1)]
        if out[-1].t_s < self.flight_time_s:
            out.append(self.sample_at(self.flight_time_s))
        return out

    def summary(self) -> dict[str, object]:
        """The figures ``trilink trajectory --json`` prints (km at this edge only)."""
        burnout = self.burnout
        lat, lon = self.impact_point
        return {
            "class": str(self.request.missile_class),
            "profile": str(self.profile),
            "azimuth_deg": round(self.azimuth_deg, 3),
            "apogee_km": round(self.apogee_m / 1e3, 3),
            "ground_range_km": round(self.ground_range_m / 1e3, 3),
            "flight_time_s": round(self.flight_time_s, 2),
            "burnout_time_s": round(self.burnout_time_s, 2),
            "burnout_altitude_km": round(burnout.alt_m / 1e3, 3),
            "burnout_speed_m_s": round(burnout.speed_m_s, 1),
            "launch": {"lat": self.request.site_lat_deg, "lon": self.request.site_lon_deg},
            "impact": {"lat": round(lat, 5), "lon": round(lon, 5)},
        }


# --------------------------------------------------------------------------- solving


def _check_site(lat: float, lon: float, what: str) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise TrajectoryError("bad_site", f"{what}: latitude/longitude must be finite numbers")
    if not (MAP_LAT_DEG[0] <= lat <= MAP_LAT_DEG[1] and MAP_LON_DEG[0] <= lon <= MAP_LON_DEG[1]):
        raise TrajectoryError(
            "outside_map",
            f"{what}=({lat:g}, {lon:g}) is outside the modelled region "
            f"(lat {MAP_LAT_DEG[0]:g}..{MAP_LAT_DEG[1]:g} N, "
            f"lon {MAP_LON_DEG[0]:g}..{MAP_LON_DEG[1]:g} E)",
        )


def _resolve_geometry(req: FlightRequest) -> tuple[float, float]:
    """(azimuth_deg, range_m) of the request, validated."""
    _check_site(req.site_lat_deg, req.site_lon_deg, "site")
    if req.impact_lat_deg is not None or req.impact_lon_deg is not None:
        if req.impact_lat_deg is None or req.impact_lon_deg is None:
            raise TrajectoryError("bad_target", "impact: give both latitude and longitude")
        if req.range_m is not None or req.azimuth_deg is not None:
            raise TrajectoryError("bad_target", "give either impact or azimuth+range, not both")
        azimuth = initial_azimuth_deg(
            req.site_lat_deg, req.site_lon_deg, req.impact_lat_deg, req.impact_lon_deg
        )
        rng = great_circle_m(req.site_lat_deg, req.site_lon_deg, req.impact_lat_deg, req.impact_lon_deg)
    else:
        if req.range_m is None or req.azimuth_deg is None:
            raise TrajectoryError("bad_target", "give an impact point or both azimuth and range")
        azimuth, rng = req.azimuth_deg % 360.0, req.range_m
    if not math.isfinite(rng) or rng < 50e3:
        raise TrajectoryError("range_too_short", f"range_km={rng / 1e3:g} must be at least 50 km")
    reach = CLASS_SPECS[req.missile_class].max_range_m
    if rng > reach:
        raise TrajectoryError(
            "beyond_class_reach",
            f"range_km={rng / 1e3:g} is beyond the {req.missile_class} class reach of {reach / 1e3:g} km",
        )
    return azimuth, rng


def _resolve_apogee(req: FlightRequest, range_m: float) -> tuple[Profile, float]:
    me = minimum_energy_apogee_m(range_m)
    profile, apogee = req.profile, req.apogee_m
    if apogee is not None and (not math.isfinite(apogee) or apogee <= 0.0):
        raise TrajectoryError("bad_apogee", f"apogee_km={apogee / 1e3:g} must be positive")
    if profile is None:
        if apogee is None or abs(apogee - me) <= 0.05 * me:
            profile = Profile.MINIMUM_ENERGY
        else:
            profile = Profile.LOFTED if apogee > me else Profile.DEPRESSED
    if profile is Profile.MINIMUM_ENERGY:
        if apogee is not None and abs(apogee - me) > 0.05 * me:
            raise TrajectoryError(
                "profile_conflict",
                f"apogee_km={apogee / 1e3:g} conflicts with profile minimum-energy, whose apogee "
                f"for range_km={range_m / 1e3:g} is {me / 1e3:.0f} km (omit it or pick "
                "lofted/depressed)",
            )
        return profile, me
    if profile is Profile.LOFTED:
        apogee = 3.0 * me if apogee is None else apogee
        if apogee <= me:
            raise TrajectoryError(
                "apogee_too_low",
                f"apogee_km={apogee / 1e3:g} is not lofted: the minimum-energy apogee for "
                f"range_km={range_m / 1e3:g} is {me / 1e3:.0f} km",
            )
        return profile, apogee
    apogee = 0.4 * me if apogee is None else apogee
    if apogee >= me:
        raise TrajectoryError(
            "apogee_too_high",
            f"apogee_km={apogee / 1e3:g} is not depressed: the minimum-energy apogee for "
            f"range_km={range_m / 1e3:g} is {me / 1e3:.0f} km",
        )
    return profile, apogee


def _burnout_residual(
    program: BoostProgram, psi_rad: float, apogee_r_m: float, thrust: float, pitch: float
) -> tuple[float, float] | None:
    """(speed error m/s, flight-path angle error rad) of the burnout vs the targeted conic."""
    if thrust <= 0.0 or not 0.0 < pitch < math.pi / 2.0:
        return None
    _, state = integrate_boost(program, thrust, pitch)[-1]
    r, phi, vr, vt = _polar(state)
    if r >= apogee_r_m or phi >= psi_rad or r <= EARTH_RADIUS_M:
        return None
    try:
        v_req, g_req = target_arc(r, psi_rad - phi, apogee_r_m)
    except ValueError:
        return None
    return math.hypot(vr, vt) - v_req, math.atan2(vr, vt) - g_req


def _solve_boost(program: BoostProgram, psi_rad: float, apogee_r_m: float) -> tuple[float, float]:
    """Newton iteration for (thrust acceleration, final pitch) hitting the targeted conic."""
    # start from the surface conic, adding a rough gravity loss to the speed
    v0, g0 = target_arc(EARTH_RADIUS_M + 1.0, psi_rad, apogee_r_m)
    x = [v0 / program.burn_time_s + 9.81 * math.sin(max(g0, 0.3)) * 0.7, min(max(g0, 0.02), 1.55)]
    f = _burnout_residual(program, psi_rad, apogee_r_m, x[0], x[1])
    # if the guess burns out above the apogee (low depressed shots), steer flatter first
    tries = 0
    while f is None and tries < 30:
        x = [x[0] * 0.97, x[1] * 0.8]
        f = _burnout_residual(program, psi_rad, apogee_r_m, x[0], x[1])
        tries += 1
    if f is None:
        raise _no_solution()
    for _ in range(60):
        if abs(f[0]) < 1e-6 and abs(f[1]) < 1e-9:
            return x[0], x[1]
        da, dp = 1e-6 * x[0], 1e-7
        fa = _burnout_residual(program, psi_rad, apogee_r_m, x[0] + da, x[1])
        fp = _burnout_residual(program, psi_rad, apogee_r_m, x[0], x[1] + dp)
        if fa is None or fp is None:
            fp = fp or _burnout_residual(program, psi_rad, apogee_r_m, x[0], x[1] - dp)
            dp = -dp if fp is not None else dp
            fa = fa or _burnout_residual(program, psi_rad, apogee_r_m, x[0] - da, x[1])
            da = -da if fa is not None else da
            if fa is None or fp is None:
                raise _no_solution()
        j11, j21 = (fa[0] - f[0]) / da, (fa[1] - f[1]) / da
        j12, j22 = (fp[0] - f[0]) / dp, (fp[1] - f[1]) / dp
        det = j11 * j22 - j12 * j21
        if det == 0.0:
            raise _no_solution()
        step_a = (j22 * f[0] - j12 * f[1]) / det
        step_p = (-j21 * f[0] + j11 * f[1]) / det
        lam = 1.0
        norm0 = abs(f[0]) / 100.0 + abs(f[1])
        while lam > 1e-4:
            cand = [x[0] - lam * step_a, x[1] - lam * step_p]
            fc = _burnout_residual(program, psi_rad, apogee_r_m, cand[0], cand[1])
            if fc is not None and abs(fc[0]) / 100.0 + abs(fc[1]) < norm0:
                x, f = cand, fc
                break
            lam /= 2.0
        else:
            raise _no_solution()
    raise _no_solution()


def _no_solution() -> TrajectoryError:
    return TrajectoryError("no_solution", "no boost reaches that apogee and range")


def fly(req: FlightRequest) -> Flight:
    """Solve and integrate a flight. Raises :class:`TrajectoryError` naming the bad parameter."""
    azimuth, range_m = _resolve_geometry(req)
    profile, apogee_m = _resolve_apogee(req, range_m)
    return _fly_cached(req, profile, azimuth, range_m, apogee_m)


@lru_cache(maxsize=256)
def _fly_cached(
    req: FlightRequest, profile: Profile, azimuth: float, range_m: float, apogee_m: float
) -> Flight:
    spec = CLASS_SPECS[req.missile_class]
    psi = range_m / EARTH_RADIUS_M
    apogee_r = EARTH_RADIUS_M + apogee_m
    program = BoostProgram(
        spec.burn_time_s,
        PITCH_OVER_FRACTION_DEPRESSED if profile is Profile.DEPRESSED else PITCH_OVER_FRACTION,
    )
    try:
        thrust, pitch = _solve_boost(program, psi, apogee_r)
    except TrajectoryError:
        if profile is Profile.DEPRESSED:
            raise TrajectoryError(
                "apogee_too_low",
                f"apogee_km={apogee_m / 1e3:g} is too low for range_km={range_m / 1e3:g}: a "
                f"{req.missile_class} boost of {spec.burn_time_s:g} s burns out above it",
            ) from None
        raise TrajectoryError(
            "no_solution",
            f"no {req.missile_class} boost of {spec.burn_time_s:g} s reaches "
            f"apogee_km={apogee_m / 1e3:g} at range_km={range_m / 1e3:g} (range_km too short "
            "for the class's burn, or apogee_km too low for it)",
        ) from None
    boost = integrate_boost(program, thrust, pitch)
    burnout_t, burnout_state = boost[-1]
    r, _, vr, vt = _polar(burnout_state)
    energy = (vr * vr + vt * vt) / 2.0 - MU_EARTH_M3_S2 / r
    limit = class_energy_limit_j_kg(req.missile_class)
    if energy > limit:
        equiv = minimum_energy_range_m(energy)
        raise TrajectoryError(
            "beyond_class_reach",
            f"apogee_km={apogee_m / 1e3:g} at range_km={range_m / 1e3:g} needs the energy of a "
            f"{equiv / 1e3:.0f} km minimum-energy shot, beyond the {req.missile_class} reach of "
            f"{spec.max_range_m / 1e3:g} km",
        )
    ballistic = integrate_ballistic(burnout_t, burnout_state)
    points = boost + ballistic[1:]
    enu = enu_basis(req.site_lat_deg, req.site_lon_deg)
    az = math.radians(azimuth)
    heading: Vec3 = tuple(  # type: ignore[assignment]
        math.cos(az) * n + math.sin(az) * e for n, e in zip(enu.north, enu.east, strict=True)
    )
    return Flight(
        request=req,
        profile=profile,
        azimuth_deg=azimuth,
        target_range_m=range_m,
        thrust_m_s2=thrust,
        pitch_end_deg=math.degrees(pitch),
        burnout_time_s=burnout_t,
        times_s=tuple(t for t, _ in points),
        states=tuple(s for _, s in points),
        _basis=(enu.up, heading),
    )


@dataclass(frozen=True, slots=True)
class BallisticPrediction:
    """Where a free-flying state comes down: time to go, impact point, ground track."""

    time_to_impact_s: float
    impact_m: Vec3  # model-frame position on the sphere
    path_m: tuple[Vec3, ...]  # model-frame positions from the state to the impact


def predict_ballistic(
    position: Vec3, velocity: Vec3, steps: int = 60, step_s: float | None = None
) -> BallisticPrediction | None:
    """Propagate a model-frame state ballistically to the ground with the RK4 integrator.

    The step is ``step_s`` if given, else the Kepler time to go divided by ``steps`` (clamped
    to 0.5..20 s; RK4 on a Kepler orbit at 20 s steps is still good to metres). Returns None
    if the state does not come down (escape, orbit, already on the ground). Sensors use it to
    predict impacts from their own noisy tracks.
    """
    r = norm(position)
    if r <= EARTH_RADIUS_M:
        return None
    up = (position[0] / r, position[1] / r, position[2] / r)
    radial = velocity[0] * up[0] + velocity[1] * up[1] + velocity[2] * up[2]
    hv = (velocity[0] - radial * up[0], velocity[1] - radial * up[1], velocity[2] - radial * up[2])
    tangential = norm(hv)
    if tangential < 1e-6:
        return None  # straight up or down: no plane, and not a flight sensors need to predict
    head = (hv[0] / tangential, hv[1] / tangential, hv[2] / tangential)
    arc = kepler_arc(r, radial, tangential)
    if arc is None:
        return None
    dt = step_s if step_s is not None else min(20.0, max(0.5, arc.time_to_impact_s / steps))
    try:
        points = integrate_ballistic(0.0, (0.0, r, tangential, radial), dt, max_time_s=20_000.0)
    except TrajectoryError:
        return None
    path = tuple(
        (x * head[0] + y * up[0], x * head[1] + y * up[1], x * head[2] + y * up[2])
        for _, (x, y, _, _) in points
    )
    return BallisticPrediction(points[-1][0], path[-1], path)


def propagate_to_impact(position: Vec3, velocity: Vec3, step_s: float = 2.0) -> tuple[float, Vec3] | None:
    """(time to impact s, impact position) of a model-frame state, fixed RK4 step."""
    result = predict_ballistic(position, velocity, step_s=step_s)
    return None if result is None else (result.time_to_impact_s, result.impact_m)


__all__ = [
    "BALLISTIC_STEP_S",
    "BOOST_STEP_S",
    "CLASS_SPECS",
    "BallisticPrediction",
    "ClassSpec",
    "Flight",
    "FlightRequest",
    "KeplerArc",
    "MissileClass",
    "Profile",
    "Sample",
    "fly",
    "kepler_arc",
    "minimum_energy_apogee_m",
    "predict_ballistic",
    "propagate_to_impact",
    "target_arc",
]
