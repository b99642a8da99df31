"""Synthetic ballistic-missile flights: launch point to impact, time-stamped and in WGS-84.

Physics (deliberately simple, and stated so a reviewer can check it):

* **Earth**: a sphere of radius :data:`~producers.geometry.EARTH_RADIUS_M` with inverse-square
  gravity ``-mu r / |r|^3``, **rotating** at :data:`OMEGA_EARTH_RAD_S`. Flights are integrated
  in the Earth-fixed frame (the model frame of :mod:`producers.geometry`, axes of WGS-84 ECEF)
  with the centrifugal ``-w x (w x r)`` and Coriolis ``-2 w x v`` terms, so a missile starts at
  rest on the ground, positions are Earth-fixed and velocities are relative to the ground (and
  to the co-rotating air). An eastward and a westward shot of the same range take different
  times and fly different arcs. Positions become WGS-84 only at the edges.
* **Atmosphere**: exponential density ``rho0 exp(-h / H)`` below a top altitude, co-rotating,
  no wind (``data/missile_classes.toml``: U.S. Standard Atmosphere 1976 sea-level density, a
  scale height fitted to its table). **Drag** ``-rho |v| v / (2 beta)`` with one ballistic
  coefficient ``beta`` for the whole missile in boost and another for what flies after
  burnout, per class (assumptions, stated in the data file).
* **Pull-up**: on a *depressed* flight of a class with a lift-to-drag ratio (the KN-23-type
  SRBM), the body generates lift ``L/D`` times its drag after apogee, perpendicular to its
  velocity in the vertical plane, upward: it falls from apogee, the thickening air turns the
  fall into a climb (the publicly described "pull-up") and a glide, and once it has slowed to
  the class's ``pull_up_end_speed_m_s`` (the lift fading over the last
  :data:`LIFT_FADE_FRACTION` above it) it dives ballistically onto its target. ``L/D`` is
  chosen so that a ballistic extrapolation from the apogee of a 600 km flight comes down at
  ~450 km, as the ROK JCS's first estimate of the March 2021 flight did. Other flights are
  ballistic after burnout.
* **Classes** describe missiles (burn time, ballistic coefficients, lift, public reach
  estimate); they cap nothing. A flight beyond its class's reach estimate (by range, or by
  the minimum-energy range its burnout energy would give) is flown with a warning, and a
  request without a class gets the smallest class whose reach covers it (:func:`infer_class`).
* **Boost**: one continuous burn of the class's burn time with a constant thrust acceleration
  (a stand-in for staged constant-thrust-with-mass-flow: the burnout *state* is what matters
  downstream). Steering in a fixed Earth-centred plane through the pad: vertical rise for the
  first 8 % of the burn, then the thrust's pitch above the local horizontal falls linearly to
  ``pitch_end`` by mid-burn (a quarter of the burn for depressed flights) and is held there to
  burnout (a simplified gravity turn).
* **Solving**: three boost parameters (thrust acceleration, final pitch, heading of the
  steering plane) are found by a Newton/Broyden iteration on the *integrated* flight so that
  its highest point is the requested apogee and its impact the requested point (range along
  the requested azimuth). The start comes from a vacuum, non-rotating, Kepler-targeted boost
  (:func:`target_arc`), which the drag, the Earth's rotation and the lift then move.
* **Integration**: classical RK4. In boost about :data:`BOOST_STEP_S` (the step divides the
  burn so that steering kinks fall on step boundaries); after burnout at most
  :data:`BALLISTIC_STEP_S` above the atmosphere and, inside it, a fraction
  :data:`ATMOSPHERE_STEP_FRACTION` of the shortest of the density time (scale height over
  vertical speed) and the drag time (speed over drag deceleration). Apogee and impact are
  located inside their step on the Hermite curve; the lift of a pull-up starts exactly at
  apogee. Measured: halving every step moves a lofted ICBM's impact by under a millimetre and
  a KN-23-type pull-up's by ~6 m; above the atmosphere the Jacobi integral and the spin
  angular momentum hold to ~1e-11; without air the flight is the inertial Kepler conic to
  ~0.1 mm. ``tests/producers/test_trajectory.py`` asserts looser bounds.

Neglected, and why that is acceptable here: **oblateness (J2)** (a ~0.1 % perturbation of
gravity; the sphere/ellipsoid mismatch is handled at the edges, see :mod:`producers.geometry`),
**winds and a layered atmosphere** (the exponential fit is within about a quarter of the 1976
standard from 0 to 70 km), **mass flow and staging** (the burnout state is solved for, so only
the shape of the boost is simplified; it moves flight times by well under 5 %), **angle of
attack and trim** (lift and drag are fixed ratios). None of these change which sensor sees a
flight or the order of magnitude of warning times, which is what trilink measures.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from producers.catalog import MissileClass, MissileClassSpec, default_missile_classes
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

#: Earth's rotation rate, rad/s (WGS-84 nominal mean angular velocity, NIMA TR8350.2).
OMEGA_EARTH_RAD_S = 7.292115e-5
#: Target RK4 step in boost, s (the actual step divides the burn time evenly).
BOOST_STEP_S = 1.0
#: Largest RK4 step after burnout, s (taken above the atmosphere; inside it the step shrinks).
BALLISTIC_STEP_S = 5.0
#: Inside the atmosphere a step is this fraction of the shortest of the density time (scale
#: height / vertical speed) and the drag time (speed / drag deceleration).
ATMOSPHERE_STEP_FRACTION = 0.1
#: Impact predictions from sensor tracks use a coarser atmospheric step (still well under a
#: metre off a fine integration for the classes modelled; sensor noise is tens of metres).
PREDICTION_STEP_FRACTION = 1.0
MIN_STEP_S = 0.01
#: Fractions of the burn: end of the vertical rise, end of the pitch-over (depressed flights
#: pitch over twice as fast, which is how a low apogee is reached without thrusting downward).
VERTICAL_FRACTION = 0.08
PITCH_OVER_FRACTION = 0.5
PITCH_OVER_FRACTION_DEPRESSED = 0.25
#: A pull-up's lift fades out over this fraction of its end speed (fully on above it).
LIFT_FADE_FRACTION = 0.2
#: The region the simulation models (North Korea, both Koreas' and Japan's seas), degrees.
MAP_LAT_DEG = (20.0, 50.0)
MAP_LON_DEG = (115.0, 150.0)
#: No ground range is longer than half the sphere's circumference.
HALF_CIRCUMFERENCE_M = math.pi * EARTH_RADIUS_M
#: The solver stops when apogee and impact are this close to the request, m.
SOLVE_TOLERANCE_M = 1.0

ClassSpec = MissileClassSpec


class Profile(enum.StrEnum):
    MINIMUM_ENERGY = "minimum-energy"
    LOFTED = "lofted"
    DEPRESSED = "depressed"


def class_spec(cls: MissileClass) -> MissileClassSpec:
    """The shipped figures of a class (``data/missile_classes.toml``)."""
    return default_missile_classes().get(cls)


# --------------------------------------------------------------------------- Kepler arcs


@dataclass(frozen=True, slots=True)
class KeplerArc:
    """The rest of a free-flight conic from a state at radius ``r_m`` down to the sphere."""

    apogee_radius_m: float  # highest radius still ahead (r_m itself when already descending)
    range_angle_rad: float  # central angle from the state to impact
    time_to_impact_s: float


def kepler_arc(r_m: float, radial_m_s: float, tangential_m_s: float) -> KeplerArc | None:
    """Closed-form rest of a vacuum flight over a non-rotating sphere (inertial speeds), or None
    when the conic never meets the sphere."""
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
    """Apogee height of the least-energy surface-to-surface vacuum conic over ``ground_range_m``."""
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


def equivalent_range_m(range_m: float, apogee_m: float) -> float:
    """Range of the minimum-energy shot with the energy of the vacuum surface conic that reaches
    ``apogee_m`` and comes down ``range_m`` away: what the flight says about the missile's reach."""
    try:
        v, _ = target_arc(EARTH_RADIUS_M, range_m / EARTH_RADIUS_M, EARTH_RADIUS_M + apogee_m)
    except ValueError:
        return HALF_CIRCUMFERENCE_M
    return minimum_energy_range_m(v * v / 2.0 - MU_EARTH_M3_S2 / EARTH_RADIUS_M)


def infer_class(
    range_m: float, apogee_m: float | None = None, profile: Profile | None = None
) -> MissileClass:
    """The smallest class whose public reach covers the flight: its :func:`equivalent_range_m`
    (a lofted 1,000 km flight to a 6,000 km apogee is an ICBM's, not an IRBM's), or for a
    depressed flight its ground range alone (a low, flat flight spends its energy against the
    air, and a pull-up gains range from lift: its vacuum energy says little about the missile)."""
    apogee = minimum_energy_apogee_m(range_m) if apogee_m is None else apogee_m
    depressed = profile is Profile.DEPRESSED or (
        profile is None and apogee < minimum_energy_apogee_m(range_m)
    )
    equivalent = range_m if depressed else max(range_m, equivalent_range_m(range_m, apogee))
    classes = default_missile_classes().classes
    for spec in classes:
        if equivalent <= spec.reach_m:
            return spec.name
    return classes[-1].name


# --------------------------------------------------------------------------- dynamics

#: (x, y, z, vx, vy, vz): Earth-fixed position (m) and velocity relative to the ground (m/s).
State = tuple[float, float, float, float, float, float]
Accel = Callable[[float, float, float, float, float, float, float], tuple[float, float, float]]


@dataclass(frozen=True, slots=True)
class Air:
    """The exponential atmosphere's figures, as the integrator uses them."""

    rho0_kg_m3: float
    scale_height_m: float
    top_radius_m: float


@lru_cache(maxsize=1)
def air() -> Air:
    spec = default_missile_classes().atmosphere
    return Air(spec.sea_level_density_kg_m3, spec.scale_height_m, EARTH_RADIUS_M + spec.top_m)


def air_density_kg_m3(alt_m: float) -> float:
    """Density of the model atmosphere at ``alt_m`` (0 above its top)."""
    a = air()
    if EARTH_RADIUS_M + alt_m >= a.top_radius_m:
        return 0.0
    return a.rho0_kg_m3 * math.exp(-alt_m / a.scale_height_m)


@dataclass(frozen=True, slots=True)
class Steering:
    """A boost: constant thrust acceleration, pitch program, fixed Earth-centred steering plane."""

    burn_time_s: float
    thrust_m_s2: float
    pitch_end_rad: float
    plane_normal: Vec3  # unit normal of the steering plane (launch up x launch heading)
    pitch_over_fraction: float = PITCH_OVER_FRACTION


def make_accel(
    beta_kg_m2: float,
    lift_to_drag: float = 0.0,
    steering: Steering | None = None,
    omega_rad_s: float = OMEGA_EARTH_RAD_S,
    lift_end_speed_m_s: float = 0.0,
) -> Accel:
    """Acceleration in the rotating Earth-fixed frame: gravity, centrifugal, Coriolis, drag, and
    lift or thrust if given. ``beta_kg_m2`` is the ballistic coefficient m / (Cd A). The lift
    fades out linearly as the speed falls through the last :data:`LIFT_FADE_FRACTION` above
    ``lift_end_speed_m_s`` and is nil below it (a continuous law: the impact then moves
    smoothly with the boost, which the solver needs)."""
    mu, w = MU_EARTH_M3_S2, omega_rad_s
    w2, two_w = w * w, 2.0 * w
    a = air()
    rho0, inv_h, r_top, r_e = a.rho0_kg_m3, 1.0 / a.scale_height_m, a.top_radius_m, EARTH_RADIUS_M
    half_inv_beta = 0.5 / beta_kg_m2
    exp, sqrt = math.exp, math.sqrt
    lift = lift_to_drag
    v_end = lift_end_speed_m_s
    inv_fade = 1.0 / max(LIFT_FADE_FRACTION * v_end, 1e-9)
    if steering is not None:
        thrust = steering.thrust_m_s2
        t_vert = VERTICAL_FRACTION * steering.burn_time_s
        t_pitched = steering.pitch_over_fraction * steering.burn_time_s
        p_end = steering.pitch_end_rad
        nx, ny, nz = steering.plane_normal

    def accel(  # noqa: PLR0917 (the hot path: positional arguments, no tuples)
        t: float, x: float, y: float, z: float, vx: float, vy: float, vz: float
    ) -> tuple[float, float, float]:
        r2 = x * x + y * y + z * z
        r = sqrt(r2)
        k = -mu / (r2 * r)
        ax = k * x + w2 * x + two_w * vy
        ay = k * y + w2 * y - two_w * vx
        az = k * z
        if r < r_top:
            v = sqrt(vx * vx + vy * vy + vz * vz)
            q = rho0 * exp((r_e - r) * inv_h) * v * half_inv_beta  # drag deceleration / speed
            ax -= q * vx
            ay -= q * vy
            az -= q * vz
            if lift and v > v_end:
                ux, uy, uz = x / r, y / r, z / r
                c = (ux * vx + uy * vy + uz * vz) / (v * v)
                lx, ly, lz = ux - c * vx, uy - c * vy, uz - c * vz  # up, minus its part along v
                ln = sqrt(lx * lx + ly * ly + lz * lz)
                if ln > 1e-9:
                    f = lift * min(1.0, (v - v_end) * inv_fade) * q * v / ln
                    ax += f * lx
                    ay += f * ly
                    az += f * lz
        if steering is not None:
            if t <= t_vert:
                pitch = math.pi / 2.0
            elif t >= t_pitched:
                pitch = p_end
            else:
                pitch = math.pi / 2.0 + (t - t_vert) / (t_pitched - t_vert) * (p_end - math.pi / 2.0)
            ux, uy, uz = x / r, y / r, z / r
            hx, hy, hz = ny * uz - nz * uy, nz * ux - nx * uz, nx * uy - ny * ux  # downrange
            hn = sqrt(hx * hx + hy * hy + hz * hz)
            c, s = math.cos(pitch) / hn, math.sin(pitch)
            ax += thrust * (c * hx + s * ux)
            ay += thrust * (c * hy + s * uy)
            az += thrust * (c * hz + s * uz)
        return ax, ay, az

    return accel


def rk4(accel: Accel, t: float, s: State, dt: float) -> State:
    """One classical Runge-Kutta step of ``r'' = accel(t, r, r')``."""
    x, y, z, vx, vy, vz = s
    h = 0.5 * dt
    a1x, a1y, a1z = accel(t, x, y, z, vx, vy, vz)
    x2, y2, z2 = x + h * vx, y + h * vy, z + h * vz
    vx2, vy2, vz2 = vx + h * a1x, vy + h * a1y, vz + h * a1z
    a2x, a2y, a2z = accel(t + h, x2, y2, z2, vx2, vy2, vz2)
    x3, y3, z3 = x + h * vx2, y + h * vy2, z + h * vz2
    vx3, vy3, vz3 = vx + h * a2x, vy + h * a2y, vz + h * a2z
    a3x, a3y, a3z = accel(t + h, x3, y3, z3, vx3, vy3, vz3)
    x4, y4, z4 = x + dt * vx3, y + dt * vy3, z + dt * vz3
    vx4, vy4, vz4 = vx + dt * a3x, vy + dt * a3y, vz + dt * a3z
    a4x, a4y, a4z = accel(t + dt, x4, y4, z4, vx4, vy4, vz4)
    d = dt / 6.0
    return (
        x + d * (vx + 2.0 * (vx2 + vx3) + vx4),
        y + d * (vy + 2.0 * (vy2 + vy3) + vy4),
        z + d * (vz + 2.0 * (vz2 + vz3) + vz4),
        vx + d * (a1x + 2.0 * (a2x + a3x) + a4x),
        vy + d * (a1y + 2.0 * (a2y + a3y) + a4y),
        vz + d * (a1z + 2.0 * (a2z + a3z) + a4z),
    )


def hermite(a: State, b: State, dt: float, frac: float) -> State:
    """Cubic Hermite interpolation of position (and its derivative) between two states."""
    s = frac
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    d00, d10, d11 = (6 * s2 - 6 * s) / dt, 3 * s2 - 4 * s + 1, 3 * s2 - 2 * s
    return (
        h00 * a[0] + h10 * dt * a[3] + h01 * b[0] + h11 * dt * b[3],
        h00 * a[1] + h10 * dt * a[4] + h01 * b[1] + h11 * dt * b[4],
        h00 * a[2] + h10 * dt * a[5] + h01 * b[2] + h11 * dt * b[5],
        d00 * (a[0] - b[0]) + d10 * a[3] + d11 * b[3],
        d00 * (a[1] - b[1]) + d10 * a[4] + d11 * b[4],
        d00 * (a[2] - b[2]) + d10 * a[5] + d11 * b[5],
    )


def _radius(s: State) -> float:
    return math.sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2])


def _speed(s: State) -> float:
    return math.sqrt(s[3] * s[3] + s[4] * s[4] + s[5] * s[5])


def _radial_speed(s: State) -> float:
    return (s[0] * s[3] + s[1] * s[4] + s[2] * s[5]) / _radius(s)


def _crossing(a: State, b: State, dt: float, g: Callable[[State], float], tolerance: float) -> float:
    """Fraction of the step where ``g`` (positive at ``a``, not at ``b``) crosses zero on the
    Hermite curve between them: regula falsi with the Illinois modification (a handful of
    evaluations where bisection would take fifty)."""
    lo, hi, g_lo, g_hi = 0.0, 1.0, g(a), g(b)
    if g_hi >= 0.0 or g_lo <= 0.0:
        return 1.0 if g_hi >= 0.0 else 0.0
    frac, side = 1.0, 0
    for _ in range(60):
        frac = (lo * g_hi - hi * g_lo) / (g_hi - g_lo)
        value = g(hermite(a, b, dt, frac))
        if abs(value) <= tolerance or hi - lo < 1e-14:
            break
        if value > 0.0:
            lo, g_lo = frac, value
            if side > 0:
                g_hi /= 2.0
            side = 1
        else:
            hi, g_hi = frac, value
            if side < 0:
                g_lo /= 2.0
            side = -1
    return frac


def _height(s: State) -> float:
    return _radius(s) - EARTH_RADIUS_M


def _coast_step(
    r: float, vr: float, v: float, *, max_step_s: float, fraction: float, beta: float, lift_to_drag: float
) -> float:
    """The step after burnout at radius ``r``, radial speed ``vr`` and speed ``v``:
    ``max_step_s`` clear of the atmosphere, shorter inside it."""
    a = air()
    if r - a.top_radius_m > max(0.0, -vr) * max_step_s:
        return max_step_s
    dt = fraction * a.scale_height_m / max(abs(vr), 1.0)  # density changes e-fold
    rho_v = a.rho0_kg_m3 * math.exp((EARTH_RADIUS_M - r) / a.scale_height_m) * v
    if rho_v > 0.0:  # speed changes e-fold under drag (and lift)
        dt = min(dt, fraction * 2.0 * beta / (rho_v * max(1.0, lift_to_drag)))
    return min(max_step_s, max(MIN_STEP_S, dt))


@dataclass(slots=True)
class Arc:
    """A piece of flight: its points, its highest point and whether it reached the ground."""

    points: list[tuple[float, State]]
    apogee_radius_m: float
    apogee_t_s: float
    impacted: bool = False


def integrate_coast(
    start_t_s: float,
    state: State,
    *,
    beta_kg_m2: float,
    lift_to_drag: float = 0.0,
    lift_end_speed_m_s: float = 0.0,
    max_step_s: float = BALLISTIC_STEP_S,
    step_fraction: float = ATMOSPHERE_STEP_FRACTION,
    max_time_s: float = 20_000.0,
    omega_rad_s: float = OMEGA_EARTH_RAD_S,
) -> Arc:
    """Unpowered flight until the sphere is reached; the last point is the interpolated impact.

    With ``lift_to_drag`` the flight is a pull-up: ballistic to its apogee (the step holding it
    is cut there, so the lift starts exactly at the highest point), then lifting while faster
    than ``lift_end_speed_m_s`` (see :func:`make_accel`), then a ballistic dive. ``omega_rad_s``
    is the Earth's rotation rate (0 gives a non-rotating Earth, for comparisons).
    """
    ballistic = make_accel(beta_kg_m2, omega_rad_s=omega_rad_s)
    lifting = ballistic
    if lift_to_drag > 0.0:
        lifting = make_accel(
            beta_kg_m2, lift_to_drag, omega_rad_s=omega_rad_s, lift_end_speed_m_s=lift_end_speed_m_s
        )
    t, s = start_t_s, state
    r, vr, v = _radius(s), _radial_speed(s), _speed(s)
    accel = lifting if vr <= 0.0 else ballistic
    arc = Arc([(t, s)], r, t)
    r_e, sqrt = EARTH_RADIUS_M, math.sqrt
    while t - start_t_s < max_time_s:
        lift = lift_to_drag if accel is not ballistic and v > lift_end_speed_m_s else 0.0
        dt = _coast_step(
            r, vr, v, max_step_s=max_step_s, fraction=step_fraction, beta=beta_kg_m2, lift_to_drag=lift
        )
        nxt = rk4(accel, t, s, dt)
        x, y, z, vx, vy, vz = nxt
        r_next = sqrt(x * x + y * y + z * z)
        if r_next <= r_e:
            frac = _crossing(s, nxt, dt, _height, 1e-6)
            arc.points.append((t + frac * dt, hermite(s, nxt, dt, frac)))
            arc.impacted = True
            return arc
        vr_next = (x * vx + y * vy + z * vz) / r_next
        if vr > 0.0 >= vr_next:  # a highest point lies inside this step
            frac = _crossing(s, nxt, dt, _radial_speed, 1e-9)
            top = _radius(hermite(s, nxt, dt, frac))
            if top > arc.apogee_radius_m:
                arc.apogee_radius_m, arc.apogee_t_s = top, t + frac * dt
            if accel is not lifting:
                accel = lifting  # a pull-up lifts from the apogee on: end this step there
                if frac * dt > MIN_STEP_S:
                    dt = frac * dt
                    nxt = rk4(ballistic, t, s, dt)
                    r_next, vr_next = _radius(nxt), 0.0
        t, s, r, vr, v = t + dt, nxt, r_next, vr_next, _speed(nxt)
        arc.points.append((t, s))
        if r > arc.apogee_radius_m:
            arc.apogee_radius_m, arc.apogee_t_s = r, t
    raise TrajectoryError("no_impact", "the flight did not come down within the time limit")


def boost_steps(burn_time_s: float, step_s: float = BOOST_STEP_S) -> int:
    # a multiple of 100 so that 8 %, 25 % and 50 % of the burn fall on step boundaries
    return 100 * max(1, math.ceil(burn_time_s / (100.0 * step_s)))


def integrate_boost(start: State, steering: Steering, beta_kg_m2: float) -> Arc:
    """Powered flight from the pad to burnout, every step; the arc's apogee is the highest
    point reached while the motor burns."""
    n = boost_steps(steering.burn_time_s)
    dt = steering.burn_time_s / n
    accel = make_accel(beta_kg_m2, steering=steering)
    s = start
    arc = Arc([(0.0, s)], _radius(s), 0.0)
    vr = 0.0
    for i in range(n):
        nxt = rk4(accel, i * dt, s, dt)
        r = _radius(nxt)
        if r <= EARTH_RADIUS_M:
            arc.impacted = True
            return arc
        vr_next = _radial_speed(nxt)
        if vr > 0.0 >= vr_next:
            frac = _crossing(s, nxt, dt, _radial_speed, 1e-9)
            top = _radius(hermite(s, nxt, dt, frac))
            if top > arc.apogee_radius_m:
                arc.apogee_radius_m, arc.apogee_t_s = top, (i + frac) * dt
        s, vr = nxt, vr_next
        t = steering.burn_time_s if i == n - 1 else (i + 1) * dt
        arc.points.append((t, s))
        if r > arc.apogee_radius_m:
            arc.apogee_radius_m, arc.apogee_t_s = r, t
    return arc


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class FlightRequest:
    """What to fly. Exactly one of ``impact`` or (``azimuth_deg``, ``range_m``) is given."""

    site_lat_deg: float
    site_lon_deg: float
    missile_class: MissileClass | None = None  # None: inferred from range and apogee
    profile: Profile | None = None  # None: inferred from the apogee (or minimum-energy)
    range_m: float | None = None
    azimuth_deg: float | None = None
    impact_lat_deg: float | None = None
    impact_lon_deg: float | None = None
    apogee_m: float | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One time-stamped point of a flight: WGS-84 geodetic position and ENU velocity relative to
    the ground."""

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
    """A solved flight: every integration step in the Earth-fixed model frame, plus figures."""

    request: FlightRequest
    missile_class: MissileClass
    profile: Profile
    azimuth_deg: float
    target_range_m: float
    thrust_m_s2: float
    pitch_end_deg: float
    heading_offset_deg: float  # steering-plane heading minus the requested azimuth
    burnout_time_s: float
    apogee_m: float
    times_s: tuple[float, ...]
    states: tuple[State, ...]
    warnings: tuple[str, ...] = ()

    # ---- summary
    @property
    def flight_time_s(self) -> float:
        return self.times_s[-1]

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
    def state_at(self, t_s: float) -> State:
        """Model-frame state at ``t_s`` (clamped to the flight), Hermite-interpolated."""
        times = self.times_s
        t = min(max(t_s, 0.0), times[-1])
        i = bisect.bisect_right(times, t) - 1
        i = min(max(i, 0), len(times) - 2)
        dt = times[i + 1] - times[i]
        if dt <= 0.0:
            return self.states[i]
        return hermite(self.states[i], self.states[i + 1], dt, (t - times[i]) / dt)

    def model_state_at(self, t_s: float) -> tuple[Vec3, Vec3]:
        """Model-frame (Earth-fixed) position (m) and velocity relative to the ground (m/s)."""
        x, y, z, vx, vy, vz = self.state_at(t_s)
        return (x, y, z), (vx, vy, vz)

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
            "class": str(self.missile_class),
            "class_inferred": self.request.missile_class is None,
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
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- request checks


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
        if not math.isfinite(req.azimuth_deg):
            raise TrajectoryError("bad_target", f"azimuth_deg={req.azimuth_deg} must be a finite number")
        azimuth, rng = req.azimuth_deg % 360.0, req.range_m
    if not math.isfinite(rng) or rng < 50e3:
        raise TrajectoryError("range_too_short", f"range_km={rng / 1e3:g} must be at least 50 km")
    if rng > HALF_CIRCUMFERENCE_M:
        raise TrajectoryError(
            "range_too_long",
            f"range_km={rng / 1e3:g} is longer than half the Earth's circumference "
            f"({HALF_CIRCUMFERENCE_M / 1e3:.0f} km): aim the other way",
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


# --------------------------------------------------------------------------- vacuum first guess

Plane = tuple[float, float, float, float]  # x, y, vx, vy in a flight plane (m, m/s)


def _plane_boost(burn_time_s: float, pitch_over_fraction: float, thrust: float, pitch_end: float) -> Plane:
    """Burnout of a vacuum boost over a non-rotating sphere, in its flight plane (pad at (0, R))."""
    n = boost_steps(burn_time_s)
    dt = burn_time_s / n
    t_vert, t_pitched = VERTICAL_FRACTION * burn_time_s, pitch_over_fraction * burn_time_s
    mu = MU_EARTH_M3_S2

    def acc(t: float, x: float, y: float) -> tuple[float, float]:
        if t <= t_vert:
            pitch = math.pi / 2.0
        elif t >= t_pitched:
            pitch = pitch_end
        else:
            pitch = math.pi / 2.0 + (t - t_vert) / (t_pitched - t_vert) * (pitch_end - math.pi / 2.0)
        r2 = x * x + y * y
        r = math.sqrt(r2)
        ux, uy, k = x / r, y / r, -mu / (r2 * r)
        c, s = math.cos(pitch), math.sin(pitch)
        return k * x + thrust * (c * uy + s * ux), k * y + thrust * (-c * ux + s * uy)

    x, y, vx, vy = 0.0, EARTH_RADIUS_M, 0.0, 0.0
    for i in range(n):
        t, h = i * dt, dt / 2.0
        a1 = acc(t, x, y)
        a2 = acc(t + h, x + h * vx, y + h * vy)
        a3 = acc(t + h, x + h * (vx + h * a1[0]), y + h * (vy + h * a1[1]))
        a4 = acc(t + dt, x + dt * (vx + h * a2[0]), y + dt * (vy + h * a2[1]))
        x, y, vx, vy = (
            x + dt * vx + dt * dt / 6.0 * (a1[0] + a2[0] + a3[0]),
            y + dt * vy + dt * dt / 6.0 * (a1[1] + a2[1] + a3[1]),
            vx + dt / 6.0 * (a1[0] + 2 * a2[0] + 2 * a3[0] + a4[0]),
            vy + dt / 6.0 * (a1[1] + 2 * a2[1] + 2 * a3[1] + a4[1]),
        )
    return x, y, vx, vy


def _vacuum_residual(
    burn: float, fraction: float, psi: float, apogee_r: float, *, thrust: float, pitch: float
) -> tuple[float, float] | None:
    """(speed error m/s, flight-path angle error rad) of a vacuum burnout vs the targeted conic."""
    if thrust <= 0.0 or not 0.0 < pitch < math.pi / 2.0:
        return None
    x, y, vx, vy = _plane_boost(burn, fraction, thrust, pitch)
    r = math.hypot(x, y)
    phi = math.atan2(x, y)
    vr, vt = (x * vx + y * vy) / r, (vx * y - vy * x) / r
    if r >= apogee_r or phi >= psi or r <= EARTH_RADIUS_M:
        return None
    try:
        v_req, g_req = target_arc(r, psi - phi, apogee_r)
    except ValueError:
        return None
    return math.hypot(vr, vt) - v_req, math.atan2(vr, vt) - g_req


def _vacuum_guess(
    burn_time_s: float, pitch_over_fraction: float, psi_rad: float, apogee_r_m: float
) -> tuple[float, float] | None:
    """(thrust acceleration, final pitch) of the vacuum, non-rotating boost whose Kepler arc
    reaches the apogee and range: the solver's first guess (Newton on the burnout state)."""

    def res(a: float, p: float) -> tuple[float, float] | None:
        return _vacuum_residual(burn_time_s, pitch_over_fraction, psi_rad, apogee_r_m, thrust=a, pitch=p)

    try:
        v0, g0 = target_arc(EARTH_RADIUS_M + 1.0, psi_rad, apogee_r_m)
    except ValueError:
        return None
    x = [v0 / burn_time_s + 9.81 * math.sin(max(g0, 0.3)) * 0.7, min(max(g0, 0.02), 1.55)]
    f = res(x[0], x[1])
    tries = 0
    while f is None and tries < 30:  # burns out above the apogee (low shots): steer flatter
        x = [x[0] * 0.97, x[1] * 0.8]
        f = res(x[0], x[1])
        tries += 1
    if f is None:
        return None
    for _ in range(40):
        if abs(f[0]) < 0.01 and abs(f[1]) < 1e-5:
            return x[0], x[1]
        da, dp = 1e-6 * x[0], 1e-7
        fa, fp = res(x[0] + da, x[1]), res(x[0], x[1] + dp)
        if fa is None or fp is None:
            return None
        j11, j21 = (fa[0] - f[0]) / da, (fa[1] - f[1]) / da
        j12, j22 = (fp[0] - f[0]) / dp, (fp[1] - f[1]) / dp
        det = j11 * j22 - j12 * j21
        if det == 0.0:
            return None
        step_a, step_p = (j22 * f[0] - j12 * f[1]) / det, (-j21 * f[0] + j11 * f[1]) / det
        lam, norm0 = 1.0, abs(f[0]) / 100.0 + abs(f[1])
        while lam > 1e-4:
            cand = [x[0] - lam * step_a, x[1] - lam * step_p]
            fc = res(cand[0], cand[1])
            if fc is not None and abs(fc[0]) / 100.0 + abs(fc[1]) < norm0:
                x, f = cand, fc
                break
            lam /= 2.0
        else:
            return None
    return None


# --------------------------------------------------------------------------- solving


@dataclass(frozen=True, slots=True)
class _Shot:
    """The fixed part of a flight to solve: where from, where to, what flies."""

    up: Vec3  # launch site's local up (unit)
    north: Vec3
    east: Vec3
    azimuth_rad: float
    psi_rad: float  # requested range angle
    apogee_r_m: float
    spec: MissileClassSpec
    pitch_over_fraction: float
    lift_to_drag: float

    def heading(self, offset_rad: float) -> Vec3:
        az = self.azimuth_rad + offset_rad
        c, s = math.cos(az), math.sin(az)
        return (
            c * self.north[0] + s * self.east[0],
            c * self.north[1] + s * self.east[1],
            c * self.north[2] + s * self.east[2],
        )


@dataclass(slots=True)
class _Outcome:
    points: list[tuple[float, State]]
    burnout_t_s: float
    apogee_r_m: float
    residual: tuple[float, float, float]  # apogee, along-track, cross-track errors (m)


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _fly_shot(shot: _Shot, x: tuple[float, float, float]) -> _Outcome | None:
    """Integrate boost and coast for (thrust, final pitch, heading offset); None if it cannot."""
    thrust, pitch, offset = x
    if thrust <= 0.0 or not 0.0 < pitch < math.pi / 2.0 or abs(offset) > 0.5:
        return None
    heading = shot.heading(offset)
    steering = Steering(
        shot.spec.burn_time_s, thrust, pitch, _cross(shot.up, heading), shot.pitch_over_fraction
    )
    r_e = EARTH_RADIUS_M
    pad: State = (r_e * shot.up[0], r_e * shot.up[1], r_e * shot.up[2], 0.0, 0.0, 0.0)
    boost = integrate_boost(pad, steering, shot.spec.boost_ballistic_coefficient_kg_m2)
    if boost.impacted:
        return None
    burnout_t, burnout = boost.points[-1]
    try:
        coast = integrate_coast(
            burnout_t,
            burnout,
            beta_kg_m2=shot.spec.ballistic_coefficient_kg_m2,
            lift_to_drag=shot.lift_to_drag,
            lift_end_speed_m_s=shot.spec.pull_up_end_speed_m_s,
        )
    except TrajectoryError:
        return None
    apogee_r = max(boost.apogee_radius_m, coast.apogee_radius_m)
    _, impact = coast.points[-1]
    # impact error along and across the requested great circle, at the requested point
    h0 = shot.heading(0.0)
    normal = _cross(shot.up, h0)
    c, s = math.cos(shot.psi_rad), math.sin(shot.psi_rad)
    target = tuple(c * u + s * h for u, h in zip(shot.up, h0, strict=True))
    along = tuple(-s * u + c * h for u, h in zip(shot.up, h0, strict=True))
    r = _radius(impact)
    p = (impact[0] / r, impact[1] / r, impact[2] / r)
    e_along = r_e * math.atan2(
        sum(a * b for a, b in zip(p, along, strict=True)), sum(a * b for a, b in zip(p, target, strict=True))
    )
    e_cross = r_e * math.asin(max(-1.0, min(1.0, sum(a * b for a, b in zip(p, normal, strict=True)))))
    return _Outcome(
        boost.points + coast.points[1:], burnout_t, apogee_r, (apogee_r - shot.apogee_r_m, e_along, e_cross)
    )


def _solve3(j: list[list[float]], f: tuple[float, float, float]) -> tuple[float, float, float] | None:
    """J^-1 f by Cramer's rule (3x3), or None if singular."""
    (a, b, c), (d, e, g), (h, i, k) = j
    det = a * (e * k - g * i) - b * (d * k - g * h) + c * (d * i - e * h)
    if det == 0.0 or not math.isfinite(det):
        return None
    f0, f1, f2 = f
    return (
        (f0 * (e * k - g * i) - b * (f1 * k - g * f2) + c * (f1 * i - e * f2)) / det,
        (a * (f1 * k - g * f2) - f0 * (d * k - g * h) + c * (d * f2 - f1 * h)) / det,
        (a * (e * f2 - f1 * i) - b * (d * f2 - f1 * h) + f0 * (d * i - e * h)) / det,
    )


def _size(f: tuple[float, float, float]) -> float:
    return max(abs(f[0]), abs(f[1]), abs(f[2]))


def _jacobian(
    shot: _Shot, x: tuple[float, float, float], f: tuple[float, float, float]
) -> list[list[float]] | None:
    cols = []
    for k, step in enumerate((1e-5 * x[0], 1e-5, 1e-5)):
        for h in (step, -step):  # backwards if forwards cannot fly
            xk = list(x)
            xk[k] += h
            out = _fly_shot(shot, (xk[0], xk[1], xk[2]))
            if out is not None:
                cols.append([(out.residual[i] - f[i]) / h for i in range(3)])
                break
        else:
            return None
    return [[cols[c][r] for c in range(3)] for r in range(3)]


def _newton(
    shot: _Shot, x0: tuple[float, float, float]
) -> tuple[tuple[float, float, float], _Outcome] | None:
    """Broyden iteration (finite-difference Jacobian, refreshed when a step fails) on the flight."""
    out = _fly_shot(shot, x0)
    if out is None:
        return None
    x, f = x0, out.residual
    jac = _jacobian(shot, x, f)
    fresh = True
    for _ in range(40):
        if _size(f) < SOLVE_TOLERANCE_M:
            return x, out
        if jac is None:
            return None
        step = _solve3(jac, f)
        accepted = None
        if step is not None:
            # backtrack a little on a secant Jacobian (measuring it again is cheaper than
            # halving ten times), all the way on a measured one
            lam, floor = 1.0, 1e-3 if fresh else 0.2
            while lam > floor:
                cand = (x[0] - lam * step[0], x[1] - lam * step[1], x[2] - lam * step[2])
                trial = _fly_shot(shot, cand)
                if trial is not None and _size(trial.residual) < _size(f):
                    accepted = cand, trial
                    break
                lam /= 2.0
        if accepted is None:
            if fresh:
                return None
            jac, fresh = _jacobian(shot, x, f), True  # Broyden's secant went stale: measure again
            continue
        cand, trial = accepted
        dx = [cand[i] - x[i] for i in range(3)]
        df = [trial.residual[i] - f[i] for i in range(3)]
        if jac is not None:
            jdx = [sum(jac[r][c] * dx[c] for c in range(3)) for r in range(3)]
            dd = sum(d * d for d in dx)
            if dd > 0.0:
                for r in range(3):
                    for c in range(3):
                        jac[r][c] += (df[r] - jdx[r]) * dx[c] / dd
        x, out, f, fresh = cand, trial, trial.residual, False
    return None


def _first_guesses(shot: _Shot) -> Iterator[tuple[float, float, float]]:
    """Vacuum Kepler-targeted boosts; for a pull-up, at shorter ranges first (the glide adds
    about a third to a ballistic arc's range)."""
    fractions = (0.75, 0.6, 0.9, 1.0) if shot.lift_to_drag > 0.0 else (1.0,)
    for k in fractions:
        g = _vacuum_guess(shot.spec.burn_time_s, shot.pitch_over_fraction, k * shot.psi_rad, shot.apogee_r_m)
        if g is not None:
            yield g[0], g[1], 0.0


def fly(req: FlightRequest) -> Flight:
    """Solve and integrate a flight. Raises :class:`TrajectoryError` naming the bad parameter;
    a request beyond its class's public reach estimate is flown, with a warning on the flight."""
    azimuth, range_m = _resolve_geometry(req)
    profile, apogee_m = _resolve_apogee(req, range_m)
    cls = req.missile_class if req.missile_class is not None else infer_class(range_m, apogee_m, profile)
    return _fly_cached(req, cls, profile, azimuth, range_m=range_m, apogee_m=apogee_m)


@lru_cache(maxsize=256)
def _fly_cached(
    req: FlightRequest,
    cls: MissileClass,
    profile: Profile,
    azimuth: float,
    *,
    range_m: float,
    apogee_m: float,
) -> Flight:
    spec = class_spec(cls)
    enu = enu_basis(req.site_lat_deg, req.site_lon_deg)
    depressed = profile is Profile.DEPRESSED
    shot = _Shot(
        up=enu.up,
        north=enu.north,
        east=enu.east,
        azimuth_rad=math.radians(azimuth),
        psi_rad=range_m / EARTH_RADIUS_M,
        apogee_r_m=EARTH_RADIUS_M + apogee_m,
        spec=spec,
        pitch_over_fraction=PITCH_OVER_FRACTION_DEPRESSED if depressed else PITCH_OVER_FRACTION,
        lift_to_drag=spec.lift_to_drag if depressed else 0.0,
    )
    solved = None
    for guess in _first_guesses(shot):
        solved = _newton(shot, guess)
        if solved is not None:
            break
    if solved is None:
        if depressed:
            raise TrajectoryError(
                "apogee_too_low",
                f"apogee_km={apogee_m / 1e3:g} is too low for range_km={range_m / 1e3:g}: no "
                f"{cls} boost of {spec.burn_time_s:g} s stays that low and reaches that far",
            ) from None
        raise TrajectoryError(
            "no_solution",
            f"no {cls} boost of {spec.burn_time_s:g} s reaches apogee_km={apogee_m / 1e3:g} at "
            f"range_km={range_m / 1e3:g} (range_km too short for the class's burn, or apogee_km "
            "too low for it)",
        ) from None
    (thrust, pitch, offset), out = solved
    burnout = dict(out.points)[out.burnout_t_s]
    warnings = _reach_warnings(spec, range_m, apogee_m, burnout)
    return Flight(
        request=req,
        missile_class=cls,
        profile=profile,
        azimuth_deg=azimuth,
        target_range_m=range_m,
        thrust_m_s2=thrust,
        pitch_end_deg=math.degrees(pitch),
        heading_offset_deg=math.degrees(offset),
        burnout_time_s=out.burnout_t_s,
        apogee_m=out.apogee_r_m - EARTH_RADIUS_M,
        times_s=tuple(t for t, _ in out.points),
        states=tuple(s for _, s in out.points),
        warnings=warnings,
    )


def _reach_warnings(
    spec: MissileClassSpec, range_m: float, apogee_m: float, burnout: State
) -> tuple[str, ...]:
    """Where the flight goes beyond the class's public reach estimate (flown anyway)."""
    out = []
    reach = spec.reach_m
    if range_m > reach:
        out.append(
            f"range_km={range_m / 1e3:g} is beyond the {spec.name} class's public reach estimate "
            f"of {reach / 1e3:g} km (flown anyway: a class describes a missile, not a limit)"
        )
    speed = math.sqrt(burnout[3] ** 2 + burnout[4] ** 2 + burnout[5] ** 2)
    energy = speed * speed / 2.0 - MU_EARTH_M3_S2 / _radius(burnout)
    equivalent = minimum_energy_range_m(energy)
    if equivalent > reach and range_m <= reach:
        out.append(
            f"apogee_km={apogee_m / 1e3:g} at range_km={range_m / 1e3:g} takes the burnout energy "
            f"of a {equivalent / 1e3:.0f} km minimum-energy shot, beyond the {spec.name} class's "
            f"public reach estimate of {reach / 1e3:g} km (flown anyway)"
        )
    return tuple(out)


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True, slots=True)
class BallisticPrediction:
    """Where a free-flying state comes down: time to go, impact point, ground track."""

    time_to_impact_s: float
    impact_m: Vec3  # model-frame (Earth-fixed) position on the sphere
    path_m: tuple[Vec3, ...]  # model-frame positions from the state to the impact


def predict_ballistic(
    position: Vec3,
    velocity: Vec3,
    steps: int = 60,
    step_s: float | None = None,
    *,
    beta_kg_m2: float | None = None,
) -> BallisticPrediction | None:
    """Propagate a model-frame state (Earth-fixed position, ground-relative velocity) to the
    ground over the rotating Earth, with drag and no lift.

    ``beta_kg_m2`` is the ballistic coefficient the predictor assumes (default: the
    ``[predictor]`` figure of ``data/missile_classes.toml``). Above the atmosphere the step is
    ``step_s`` if given, else the vacuum time to go divided by ``steps`` (clamped to 0.5..20 s);
    inside it the step shrinks with the density and drag times. The path holds at most about
    ``steps`` + 1 points. Returns None if the state does not come down (escape, orbit, already on
    the ground). Sensors use it to predict impacts from their own noisy tracks.
    """
    r = norm(position)
    if r <= EARTH_RADIUS_M:
        return None
    x, y, z = position
    vx, vy, vz = velocity
    w = OMEGA_EARTH_RAD_S
    vix, viy = vx - w * y, vy + w * x  # inertial velocity: v + w x r
    radial = (x * vx + y * vy + z * vz) / r
    tangential = math.sqrt(max(0.0, vix * vix + viy * viy + vz * vz - radial * radial))
    arc = kepler_arc(r, radial, tangential)
    if arc is None:
        return None
    dt = step_s if step_s is not None else min(20.0, max(0.5, arc.time_to_impact_s / steps))
    beta = (
        beta_kg_m2
        if beta_kg_m2 is not None
        else default_missile_classes().predictor.ballistic_coefficient_kg_m2
    )
    try:
        coast = integrate_coast(
            0.0,
            (x, y, z, vx, vy, vz),
            beta_kg_m2=beta,
            max_step_s=dt,
            step_fraction=PREDICTION_STEP_FRACTION,
        )
    except TrajectoryError:
        return None
    points = coast.points
    stride = max(1, math.ceil((len(points) - 1) / max(1, steps)))
    kept = points[::stride]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    path = tuple((s[0], s[1], s[2]) for _, s in kept)
    return BallisticPrediction(points[-1][0], path[-1], path)


def propagate_to_impact(position: Vec3, velocity: Vec3, step_s: float = 2.0) -> tuple[float, Vec3] | None:
    """(time to impact s, impact position) of a model-frame state, fixed step above the air."""
    result = predict_ballistic(position, velocity, step_s=step_s)
    return None if result is None else (result.time_to_impact_s, result.impact_m)


__all__ = [
    "ATMOSPHERE_STEP_FRACTION",
    "BALLISTIC_STEP_S",
    "BOOST_STEP_S",
    "OMEGA_EARTH_RAD_S",
    "Arc",
    "BallisticPrediction",
    "ClassSpec",
    "Flight",
    "FlightRequest",
    "KeplerArc",
    "MissileClass",
    "Profile",
    "Sample",
    "State",
    "air",
    "air_density_kg_m3",
    "class_spec",
    "equivalent_range_m",
    "fly",
    "infer_class",
    "integrate_coast",
    "kepler_arc",
    "minimum_energy_apogee_m",
    "predict_ballistic",
    "propagate_to_impact",
    "target_arc",
]
