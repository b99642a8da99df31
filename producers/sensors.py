"""Sensors that watch a simulated flight and turn what they see into contract events.

A sensor scans on its own clock (every ``update_interval_s``, with a seeded phase). At each scan
it sees the missile only where geometry allows:

* radar: above the ray it launches at its minimum elevation (bent by standard 4/3-Earth
  refraction, from its antenna height ``alt_m``: :func:`producers.detection.radar_sees`), within
  its maximum range and inside its azimuth sector;
* space-based infrared: only while the motor burns and the plume is above the clouds
  (``min_target_alt_m``), and with the Earth not between satellite and missile. A satellite
  measures lines of sight only (:mod:`producers.detection`): its launch point comes from a stereo
  fix or, alone, from an assumed plume altitude; track updates need a second satellite's line of
  sight (stereo) and are reported by the lowest-id satellite of those that see the plume.

Detection needs ``detection_delay_s`` of visibility (search, confirmation). From then on the
sensor emits, each ``processing_delay_s`` after its measurement: one launch detection, track
updates at every scan that sees the missile, impact predictions propagated ballistically from
its own noisy track, and a track end when the
missile comes down while tracked (IMPACTED) or leaves its view (LOST).

Track errors are modelled statistically rather than with a filter: the reported state is the
true state plus Gaussian errors whose size is that of a least-squares straight-line fit over
the last ``n`` measurements (``n`` capped at :data:`TRACK_WINDOW`), so they shrink as the track
matures. Errors are drawn independently at each update (real filter errors are correlated),
and the velocity estimate ignores the lag a real filter shows under boost acceleration.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from producers.areas import AreaMap
from producers.catalog import SensorKind, SensorSpec, default_catalog
from producers.detection import (
    intersect_sphere,
    line_of_sight,
    noisy_line_of_sight,
    radar_sees,
    triangulate,
)
from producers.geometry import (
    EARTH_RADIUS_M,
    MU_EARTH_M3_S2,
    Vec3,
    enu_basis,
    from_model,
    look_angles,
    to_model,
)
from producers.trajectory import Flight, minimum_energy_range_m, predict_ballistic
from producers.uncertainty import impact_ellipse
from schemas.models import (
    EnuVelocity,
    EventPayload,
    FlightPhase,
    GeoPoint,
    ImpactPrediction,
    LaunchDetection,
    MissileClass,
    SensorHealth,
    SensorStatus,
    TrackEnd,
    TrackEndReason,
    TrackUpdate,
    UncertaintyEllipse,
)

#: Most measurements a track's error model averages over (longer windows would be biased by
#: the missile's curved path in a real straight-line fit).
TRACK_WINDOW = 20
#: Measurements a track needs before it predicts an impact.
MIN_UPDATES_FOR_PREDICTION = 3
#: Altitude below which a descending object is said to be in its terminal phase, m.
TERMINAL_ALT_M = 100_000.0
#: Space IR launch point: 1-sigma allowance for the missile's unknown downrange drift, per metre
#: of plume altitude at detection (assumption: a depressed SRBM is ~10 km downrange at 11 km up).
IR_DRIFT_PER_ALTITUDE = 1.0
#: Space IR, one satellite: the plume is assumed at this multiple of the cloud-top altitude.
IR_MONO_ALT_FACTOR = 2.0


def launch_time_sigma_s(first_sight_s: float) -> float:
    """1-sigma error of a launch time back-extrapolated from a first sight ``first_sight_s`` after
    launch, s (ASSUMPTION: 1 s plus 5 % of the extrapolation)."""
    return 1.0 + 0.05 * first_sight_s


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before its per-sensor sequence number is known."""

    emit_offset_s: float
    measured_offset_s: float
    sensor: SensorSpec
    correlation_key: str
    event_id: uuid.UUID
    payload: EventPayload
    order: int  # position within its generator, the final tie-break


@dataclass(frozen=True, slots=True)
class Measurement:
    """A sensor's noisy track state at one scan, with the 1-sigma errors it reports."""

    t_s: float  # flight time of the scan
    position_m: Vec3
    velocity_m_s: Vec3
    position_sigma_m: float
    velocity_sigma_m_s: float
    n: int  # updates in the track so far


@dataclass(frozen=True, slots=True)
class SimContext:
    """What every sensor needs from the scenario: the clock, the areas, the alert status."""

    start_time: datetime
    areas: AreaMap
    exercise: bool
    prediction_interval_s: float

    def at(self, offset_s: float) -> datetime:
        return self.start_time + timedelta(microseconds=round(offset_s * 1e6))


def event_uuid(rng: random.Random) -> uuid.UUID:
    """A version-4 UUID drawn from a seeded generator (so runs repeat exactly)."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def track_sigmas(noise_sigma_m: float, interval_s: float, n: int) -> tuple[float, float]:
    """1-sigma position (m) and velocity (m/s) error of a straight-line least-squares fit over
    ``n`` equally spaced measurements, evaluated at the newest one."""
    k = max(1, min(n, TRACK_WINDOW))
    pos = noise_sigma_m * math.sqrt(2.0 * (2 * k - 1) / (k * (k + 1)))
    if k < 2:
        # one measurement: velocity is only known to be of missile size
        return pos, 1_000.0
    vel = noise_sigma_m / interval_s * math.sqrt(12.0 / (k * (k * k - 1)))
    return pos, vel


def estimate_class(speed_m_s: float, radius_m: float) -> MissileClass:
    """Range class from the specific energy of a ballistic state (ignores unburnt propellant)."""
    energy = speed_m_s * speed_m_s / 2.0 - MU_EARTH_M3_S2 / radius_m
    reach_m = minimum_energy_range_m(energy)
    if reach_m < 1_000e3:
        return MissileClass.SRBM
    if reach_m < 3_000e3:
        return MissileClass.MRBM
    if reach_m < 5_500e3:
        return MissileClass.IRBM
    return MissileClass.ICBM


@dataclass
class SensorModel:
    """One sensor of the catalog, placed in the model frame."""

    spec: SensorSpec
    #: Space IR only: the other satellites whose lines of sight the ground segment can combine with
    #: this one's (stereo). None: every other space IR sensor of the shipped catalog of its nation.
    partners: tuple[SensorSpec, ...] | None = None
    site_m: Vec3 = field(init=False)

    def __post_init__(self) -> None:
        self.site_m = to_model(self.spec.lat_deg, self.spec.lon_deg, self.spec.alt_m)
        self._enu = enu_basis(self.spec.lat_deg, self.spec.lon_deg)
        self._partners: tuple[SensorModel, ...] = ()
        if self.spec.kind is SensorKind.SPACE_IR:
            others = self.partners
            if others is None:
                others = tuple(
                    s
                    for s in default_catalog().sensors
                    if s.kind is SensorKind.SPACE_IR and s.nation is self.spec.nation
                )
            self._partners = tuple(SensorModel(s, partners=()) for s in others if s.id != self.spec.id)

    # ---------------------------------------------------------------- geometry
    def sees(self, flight: Flight, t_s: float) -> bool:
        """Whether the sensor can see ``flight`` at flight time ``t_s``."""
        if t_s < 0.0 or t_s > flight.flight_time_s:
            return False
        target, _ = flight.model_state_at(t_s)
        return self.sees_position(target, boosting=t_s < flight.burnout_time_s)

    def sees_position(self, target_m: Vec3, boosting: bool = False) -> bool:
        spec = self.spec
        if spec.kind is SensorKind.SPACE_IR:
            if not boosting:
                return False
            lat, lon, alt = from_model(target_m)
            if alt < spec.min_target_alt_m:
                return False
            # the satellite must be above the missile's horizon
            back = look_angles(target_m, enu_basis(lat, lon), self.site_m)
            return back.elevation_deg >= 0.0 and back.range_m <= spec.max_range_m
        look = look_angles(self.site_m, self._enu, target_m)
        if look.range_m > spec.max_range_m:
            return False
        # above the refracted ray at the minimum elevation (4/3 Earth, antenna height alt_m)
        if not radar_sees(self.site_m, target_m, spec.min_elevation_deg):
            return False
        if spec.sector_width_deg >= 360.0:
            return True
        off = (look.azimuth_deg - spec.sector_center_deg + 180.0) % 360.0 - 180.0
        return abs(off) <= spec.sector_width_deg / 2.0

    # ---------------------------------------------------------------- heartbeat
    def status_drafts(self, duration_s: float, rng: random.Random, ctx: SimContext) -> Iterator[Draft]:
        """Heartbeats every ``status_interval_s`` from a seeded phase until the scenario ends."""
        spec = self.spec
        payload = SensorStatus(
            health=SensorHealth.OK,
            site=GeoPoint(lat_deg=spec.lat_deg, lon_deg=spec.lon_deg, alt_m=spec.alt_m),
            max_range_m=spec.max_range_m,
            sector_center_deg=spec.sector_center_deg,
            sector_width_deg=spec.sector_width_deg,
            heartbeat_interval_s=spec.status_interval_s,
        )
        t = rng.uniform(0.0, min(spec.status_interval_s, duration_s))
        order = 0
        while t <= duration_s:
            yield Draft(t, t, spec, f"STS-{spec.id}", event_uuid(rng), payload, order)
            order += 1
            t += spec.status_interval_s

    # ---------------------------------------------------------------- tracking
    def track_drafts(
        self,
        flight: Flight,
        *,
        launch_offset_s: float,
        correlation_key: str,
        rng: random.Random,
        ctx: SimContext,
        scan_phase_s: float,
    ) -> Iterator[Draft]:
        """Every event this sensor emits about one flight, in emit order."""
        spec = self.spec
        interval = spec.update_interval_s
        lost_after_s = max(3.0 * interval, 10.0)
        end_s = flight.flight_time_s + lost_after_s + interval
        # first scan at or after launch, on the sensor's own clock
        k0 = math.ceil((launch_offset_s - scan_phase_s) / interval)
        emitter = _Emitter(spec, correlation_key, rng, launch_offset_s)
        first_seen: float | None = None
        last_seen: float | None = None
        detected = False  # a track is running
        announced = False  # the launch detection went out (once per flight)
        n_updates = 0
        last_prediction = -math.inf
        launch: LaunchDetection | None = None  # this sensor's own launch estimate
        known = MissileClass.UNKNOWN  # the class this sensor has estimated (kept once known)
        k = k0
        while True:
            t = scan_phase_s + k * interval - launch_offset_s  # flight time of this scan
            k += 1
            if t > end_s:
                return
            visible = self.sees(flight, t)
            if not detected:
                # searching: needs detection_delay_s of continuous visibility to (re)acquire
                if not visible:
                    first_seen = None
                    continue
                first_seen = t if first_seen is None else first_seen
                if t - first_seen < spec.detection_delay_s:
                    continue
                detected, n_updates = True, 0
                if not announced:
                    announced = True
                    launch = self._launch_detection(flight, launch_offset_s, t, rng, ctx)
                    yield emitter.draft(t, launch, ctx)
            if visible:
                n_updates += 1
                last_seen = t
                m = self._measure(flight, t, n_updates, rng)
                if m is None:  # one satellite's line of sight alone: no 3-D track to report
                    n_updates -= 1
                    continue
                yield emitter.draft(t, self._track_update(flight, m), ctx)
                if (
                    n_updates >= MIN_UPDATES_FOR_PREDICTION
                    and t - last_prediction >= ctx.prediction_interval_s
                ):
                    last_prediction = t
                    prediction = self._impact_prediction(
                        flight, launch_offset_s, m, ctx, launch=launch, known=known
                    )
                    if prediction is not None:
                        known = prediction.missile_class
                        yield emitter.draft(t, prediction, ctx)
                continue
            assert last_seen is not None
            if t >= flight.flight_time_s and last_seen >= flight.flight_time_s - lost_after_s:
                yield emitter.draft(t, TrackEnd(reason=TrackEndReason.IMPACTED), ctx)
                return
            if t - last_seen >= lost_after_s:
                # lost from view (horizon, range, sector, burnout for IR): the track ends, but
                # the sensor keeps searching and may pick the missile up again on its descent
                yield emitter.draft(t, TrackEnd(reason=TrackEndReason.LOST), ctx)
                detected, first_seen = False, None

    def _measure(self, flight: Flight, t: float, n: int, rng: random.Random) -> Measurement | None:
        if self.spec.kind is SensorKind.SPACE_IR:
            return self._stereo_measure(flight, t, n, rng)
        pos, vel = flight.model_state_at(t)
        sig_p, sig_v = track_sigmas(self.spec.noise_sigma_m, self.spec.update_interval_s, n)
        g = rng.gauss
        noisy_pos = (pos[0] + g(0, sig_p), pos[1] + g(0, sig_p), pos[2] + g(0, sig_p))
        noisy_vel = (vel[0] + g(0, sig_v), vel[1] + g(0, sig_v), vel[2] + g(0, sig_v))
        return Measurement(t, noisy_pos, noisy_vel, sig_p, sig_v, n)

    def _launch_detection(
        self,
        flight: Flight,
        launch_offset_s: float,
        t: float,
        rng: random.Random,
        ctx: SimContext,
    ) -> LaunchDetection:
        spec = self.spec
        lat, lon, sigma_m = self._launch_point(flight, t, rng)
        launch_t = min(t, rng.gauss(0.0, launch_time_sigma_s(t)))
        pos, vel = flight.model_state_at(t)
        boosting = t < flight.burnout_time_s
        cls = MissileClass.UNKNOWN if boosting else estimate_class(_norm(vel), _norm(pos))
        return LaunchDetection(
            launch_point=GeoPoint(lat_deg=lat, lon_deg=lon, alt_m=0.0),
            launch_point_sigma_m=sigma_m,
            launch_time=ctx.at(launch_offset_s + launch_t),
            confidence=0.8 if spec.kind is SensorKind.SPACE_IR else 0.9,
            missile_class=cls,
        )

    # ---------------------------------------------------------------- measurement physics
    def _launch_point(self, flight: Flight, t: float, rng: random.Random) -> tuple[float, float, float]:
        """Estimated launch point (lat, lon) and its 1-sigma, m, at first detection ``t``."""
        if self.spec.kind is SensorKind.SPACE_IR:
            return self._ir_launch_point(flight, t, rng)
        # radar: back-extrapolating to the pad, the later the first sight, the worse the estimate
        sigma_m = self.spec.noise_sigma_m * (1.0 + t / 30.0)
        lat0, lon0 = flight.launch_point
        north, east = rng.gauss(0, sigma_m), rng.gauss(0, sigma_m)
        lat = lat0 + math.degrees(north / EARTH_RADIUS_M)
        lon = lon0 + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
        return lat, lon, sigma_m

    def _stereo_group(self, flight: Flight, t: float) -> list[SensorModel]:
        """This satellite and every partner that sees the plume at ``t`` (the ground segment is
        taken to align their looks in time)."""
        pos, _ = flight.model_state_at(t)
        boosting = t < flight.burnout_time_s
        return [self, *(p for p in self._partners if p.sees_position(pos, boosting))]

    def _ir_launch_point(self, flight: Flight, t: float, rng: random.Random) -> tuple[float, float, float]:
        """Launch point from lines of sight: below the stereo fix when a second satellite sees the
        plume, else where this satellite's line of sight meets an assumed plume altitude.

        The pad is not under the plume: by the time a plume is declared (10-15 km up) a missile
        has moved up to about as far downrange as it has climbed, in a direction not yet known;
        the 1-sigma therefore includes an isotropic allowance of the plume's altitude
        (:data:`IR_DRIFT_PER_ALTITUDE`; assumption).
        """
        pos, _ = flight.model_state_at(t)
        sigma_rad = self.spec.los_sigma_urad * 1e-6
        group = self._stereo_group(flight, t)
        if len(group) >= 2:
            dirs = [noisy_line_of_sight(s.site_m, pos, sigma_rad, rng) for s in group]
            fix = triangulate([s.site_m for s in group], dirs, sigma_rad)
            if fix is not None:
                lat, lon, alt = from_model(fix.position_m)
                return lat, lon, math.hypot(fix.sigma_max_m, IR_DRIFT_PER_ALTITUDE * max(alt, 0.0))
        # one line of sight: the plume is assumed at IR_MONO_ALT_FACTOR x the cloud-top altitude,
        # give or take the cloud-top altitude; the error moves along the ground by dh / tan(elevation)
        u = noisy_line_of_sight(self.site_m, pos, sigma_rad, rng)
        assumed_alt = IR_MONO_ALT_FACTOR * self.spec.min_target_alt_m
        point = intersect_sphere(self.site_m, u, EARTH_RADIUS_M + assumed_alt)
        if point is None:  # grazing the limb: fall back on the true line of sight
            point = intersect_sphere(
                self.site_m, line_of_sight(self.site_m, pos), EARTH_RADIUS_M + assumed_alt
            )
        assert point is not None  # the satellite sees the plume, so its line of sight meets the sphere
        lat, lon, _ = from_model(point)
        up = enu_basis(lat, lon).up
        sin_el = max(0.05, -_dot(up, u))  # the satellite's elevation seen from the plume
        tan_el = sin_el / math.sqrt(1.0 - sin_el * sin_el)
        slant = _norm((point[0] - self.site_m[0], point[1] - self.site_m[1], point[2] - self.site_m[2]))
        sigma = math.hypot(
            slant * sigma_rad,
            self.spec.min_target_alt_m / tan_el,
            IR_DRIFT_PER_ALTITUDE * assumed_alt,
        )
        return lat, lon, sigma

    def _stereo_measure(self, flight: Flight, t: float, n: int, rng: random.Random) -> Measurement | None:
        """A space IR track state from two or more satellites' lines of sight (stereo), reported by
        the satellite with the lowest id among those that see the plume; None otherwise.

        The position is triangulated from lines of sight whose noise is that of ``n`` smoothed
        looks (the straight-line-fit factor of :func:`track_sigmas`), and its 1-sigma is the
        worst axis of the triangulation's covariance; the velocity error is that of a fit over
        ``n`` fixes of single-look accuracy.
        """
        group = self._stereo_group(flight, t)
        if len(group) < 2 or min(s.spec.id for s in group) != self.spec.id:
            return None
        pos, vel = flight.model_state_at(t)
        sigma_rad = self.spec.los_sigma_urad * 1e-6
        interval = self.spec.update_interval_s
        smoothed = sigma_rad * track_sigmas(1.0, interval, n)[0]
        origins = [s.site_m for s in group]
        fix = triangulate(origins, [noisy_line_of_sight(o, pos, smoothed, rng) for o in origins], smoothed)
        single = triangulate(origins, [line_of_sight(o, pos) for o in origins], sigma_rad)
        if fix is None or single is None:
            return None
        sig_v = track_sigmas(single.sigma_max_m, interval, n)[1]
        g = rng.gauss
        noisy_vel = (vel[0] + g(0, sig_v), vel[1] + g(0, sig_v), vel[2] + g(0, sig_v))
        return Measurement(t, fix.position_m, noisy_vel, fix.sigma_max_m, sig_v, n)

    def _track_update(self, flight: Flight, m: Measurement) -> TrackUpdate:
        t, pos, vel, n = m.t_s, m.position_m, m.velocity_m_s, m.n
        lat, lon, alt = from_model(pos)
        enu = enu_basis(lat, lon)
        up = _dot(vel, enu.up)
        if t < flight.burnout_time_s:
            phase = FlightPhase.BOOST
        elif up < 0.0 and alt < TERMINAL_ALT_M:
            phase = FlightPhase.TERMINAL
        else:
            phase = FlightPhase.MIDCOURSE
        return TrackUpdate(
            position=GeoPoint(lat_deg=lat, lon_deg=_wrap(lon), alt_m=alt),
            velocity=EnuVelocity(east_m_s=_dot(vel, enu.east), north_m_s=_dot(vel, enu.north), up_m_s=up),
            position_sigma_m=m.position_sigma_m,
            velocity_sigma_m_s=m.velocity_sigma_m_s,
            phase=phase,
            track_quality=min(1.0, n / TRACK_WINDOW),
        )

    def _impact_prediction(
        self,
        flight: Flight,
        launch_offset_s: float,
        m: Measurement,
        ctx: SimContext,
        *,
        launch: LaunchDetection | None,
        known: MissileClass = MissileClass.UNKNOWN,
    ) -> ImpactPrediction | None:
        """An impact predicted from this sensor's own track, with its launch estimate (not the
        true launch time), the ellipse of :func:`producers.uncertainty.impact_ellipse` and the
        missile class: estimated from the energy in midcourse (after burnout; climbing, or above
        the terminal altitude: drag lowers it on the way down), else the one already ``known``
        (or the launch detection's)."""
        t, pos, vel = m.t_s, m.position_m, m.velocity_m_s
        boosting = t < flight.burnout_time_s
        here_lat, here_lon, here_alt = from_model(pos)
        climbing = _dot(vel, enu_basis(here_lat, here_lon).up) > 0.0
        if not boosting and (climbing or here_alt >= TERMINAL_ALT_M):  # the midcourse phase
            known = estimate_class(_norm(vel), _norm(pos))
        elif known is MissileClass.UNKNOWN and launch is not None:
            known = launch.missile_class
        result = predict_ballistic(pos, vel)
        if result is None:
            return None
        lat, lon, _ = from_model(result.impact_m)
        ground = [from_model(p)[:2] for p in result.path_m]
        touched = ctx.areas.areas_touched(ground)
        at_impact = ctx.areas.areas_at((lat, lon))
        overflown = [a for a in touched if a not in at_impact]
        now = ctx.at(launch_offset_s + t)
        ellipse = impact_ellipse(
            pos,
            vel,
            m.position_sigma_m,
            m.velocity_sigma_m_s,
            result,
            boosting=boosting,
            launch_point=None
            if launch is None
            else (launch.launch_point.lat_deg, launch.launch_point.lon_deg),
            launch_point_sigma_m=0.0 if launch is None else launch.launch_point_sigma_m,
            elapsed_s=t if launch is None else (now - launch.launch_time).total_seconds(),
            elapsed_sigma_s=launch_time_sigma_s(t),
        )
        return ImpactPrediction(
            impact_point=GeoPoint(lat_deg=lat, lon_deg=_wrap(lon), alt_m=0.0),
            impact_time=ctx.at(launch_offset_s + t + result.time_to_impact_s),
            launch_time=None if launch is None else launch.launch_time,
            ellipse=UncertaintyEllipse(
                semi_major_m=ellipse.semi_major_m,
                semi_minor_m=ellipse.semi_minor_m,
                orientation_deg=ellipse.orientation_deg,
            ),
            impact_areas=at_impact,
            overflown_areas=overflown,
            missile_class=known,
        )


class _Emitter:
    """Turns payloads into drafts: emit times after the processing delay, event ids, order."""

    def __init__(self, spec: SensorSpec, key: str, rng: random.Random, launch_offset_s: float) -> None:
        self.spec, self.key, self.rng = spec, key, rng
        self.launch_offset_s = launch_offset_s
        self.last_emit = -math.inf
        self.order = 0
        self.last_id: uuid.UUID | None = None

    def draft(self, t_flight: float, payload: EventPayload, ctx: SimContext) -> Draft:
        measured = self.launch_offset_s + t_flight
        delay = self.spec.processing_delay_s * (1.0 + 0.2 * self.rng.random())
        emit = max(self.last_emit, measured + delay)
        self.last_emit = emit
        self.last_id = event_uuid(self.rng)
        draft = Draft(emit, measured, self.spec, self.key, self.last_id, payload, self.order)
        self.order += 1
        return draft


def _dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _norm(a: Vec3) -> float:
    return math.sqrt(_dot(a, a))


def _wrap(lon_deg: float) -> float:
    return (lon_deg + 180.0) % 360.0 - 180.0
