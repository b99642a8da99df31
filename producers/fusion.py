"""A nation's fusion cell: one fused track per missile from every report the nation receives.

The cell receives its own sensors' reports and what the sharing policy releases to it from the
others' (``trilink/policy.py``), each after a link delay. It never reads the correlation key the
sensors put on their events (in this simulation that key is the ground truth): a track report is
*associated* by gating on position and velocity. Each fused track is predicted to the report's
measurement time (gravity, plus process noise for what the model leaves out: thrust, drag, lift),
and the report joins the nearest track inside the gate (a chi-square test on the six state
errors), else it starts a new track. A sensor reports one object per scan, so a track that already
took a report from that sensor at that scan time is not offered a second one: two close missiles
seen by one radar stay two tracks.

The fused state is a Kalman update with one variance for the position and one for the velocity
(no cross-covariance). Reports carry their own 1-sigma errors, drawn independently per update in
this simulation; the fused variance is floored at half the best incoming report's, so many
reports of one sensor do not make the fused track look better than two independent sensors.

A launch detection is tied to the track its sensor's first track report (same sensor, same scan)
joins; the fused launch point and time are the inverse-variance mean of those. The cell issues the
nation's own events about each fused track under its own key (``<nation>-F<n>``): one launch
detection, track updates, impact predictions (``producers/uncertainty.py`` for the ellipse), the
missile class once estimated from the post-burnout energy, and a track end.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from producers.areas import AreaMap
from producers.catalog import default_missile_classes
from producers.geometry import (
    EARTH_RADIUS_M,
    MU_EARTH_M3_S2,
    Vec3,
    enu_basis,
    from_model,
    norm,
    to_model,
)
from producers.sensors import estimate_class, event_uuid
from producers.trajectory import OMEGA_EARTH_RAD_S, air_density_kg_m3, predict_ballistic
from producers.uncertainty import impact_ellipse
from schemas.models import (
    EnuVelocity,
    EventPayload,
    FlightPhase,
    GeoPoint,
    ImpactPrediction,
    LaunchDetection,
    MissileClass,
    Nation,
    TrackEnd,
    TrackEndReason,
    TrackUpdate,
    UncertaintyEllipse,
)

#: Gate on the squared normalised distance of the six state errors: chi-square with 6 degrees of
#: freedom is below 22.5 with probability 0.999; 30 leaves room for the diagonal-only model.
GATE_CHI2 = 30.0
#: Process noise (1-sigma unmodelled acceleration), m/s^2: a burning motor (the thrust is not
#: known; ICBM stages end their burns at 50-60 m/s^2), low in the air (drag and pull-up lift of a
#: depressed SRBM) and in vacuum (the step error of the prediction; gravity, Coriolis and
#: centrifugal terms are modelled). ASSUMPTION: sized from the trajectory model's accelerations.
BOOST_ACCEL_SIGMA_M_S2 = 40.0
AIR_ACCEL_SIGMA_M_S2 = 40.0
VACUUM_ACCEL_SIGMA_M_S2 = 0.05
#: Below this height a coasting object is "in the air" for the process noise, m.
AIR_ALT_M = 80_000.0
#: A track whose predicted position is this far underground has come down, m.
BURIED_M = 2_000.0
#: A fused track with no report for this long ends, s: at once while boosting or in the air (its
#: path is not predictable), else once its ballistic path has reached the ground.
LOST_AFTER_S = 60.0
#: Seconds between two fused track updates of one track (ASSUMPTION: a national picture
#: refreshed every 5 s; reports in between are fused but not published).
FUSED_UPDATE_INTERVAL_S = 5.0
#: Time from a report's arrival to the fused products it triggers, s (ASSUMPTION).
FUSION_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class Report:
    """One sensor event as a fusion cell receives it (its correlation key is not part of it)."""

    received_offset_s: float  # scenario time of arrival at the cell
    measured_offset_s: float
    sensor_id: str
    sensor_nation: Nation
    payload: EventPayload


@dataclass(frozen=True, slots=True)
class FusedDraft:
    """A product of a nation's fusion cell or alert authority, before its header is built."""

    emit_offset_s: float
    measured_offset_s: float
    source_id: str  # the cell or authority, e.g. JP-FUSION
    nation: Nation
    correlation_key: str
    event_id: uuid.UUID
    payload: EventPayload


@dataclass(slots=True)
class FusedTrack:
    """A fused track: state in the model frame at ``t_s``, with per-axis variances."""

    key: str
    t_s: float
    position_m: Vec3
    velocity_m_s: Vec3
    var_p: float
    var_v: float
    phase: FlightPhase
    created_s: float
    last_report_s: float
    sensors: set[str] = field(default_factory=set)
    scans: set[tuple[str, float]] = field(default_factory=set)  # (sensor, measured time) taken
    launch_weight: float = 0.0  # sum of 1/sigma^2 of the launch detections tied to the track
    launch_offset_s: float = 0.0
    launch_time_var_s2: float = math.inf
    launch_point: tuple[float, float] | None = None
    launch_point_sigma_m: float = 0.0
    announced: bool = False
    missile_class: MissileClass = MissileClass.UNKNOWN
    last_update_emit_s: float = -math.inf
    last_prediction_s: float = -math.inf
    ended: bool = False
    reports: int = 0


def _add(a: Vec3, b: Vec3, k: float = 1.0) -> Vec3:
    return (a[0] + k * b[0], a[1] + k * b[1], a[2] + k * b[2])


def _dist2(a: Vec3, b: Vec3) -> float:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2


def _drag_m_s2(position: Vec3, velocity: Vec3) -> float:
    """Drag deceleration of a body of the predictor's ballistic coefficient, m/s^2."""
    rho = air_density_kg_m3(max(0.0, norm(position) - EARTH_RADIUS_M))
    if rho <= 0.0:
        return 0.0
    beta = default_missile_classes().predictor.ballistic_coefficient_kg_m2
    return rho * (velocity[0] ** 2 + velocity[1] ** 2 + velocity[2] ** 2) / (2.0 * beta)


def _accel(position: Vec3, velocity: Vec3) -> Vec3:
    """Gravity, drag (the predictor's body) and the Coriolis and centrifugal terms of the
    Earth-fixed model frame."""
    r = norm(position)
    k = -MU_EARTH_M3_S2 / (r * r * r)
    w = OMEGA_EARTH_RAD_S
    speed = norm(velocity)
    d = _drag_m_s2(position, velocity) / speed if speed > 0.0 else 0.0
    return (
        k * position[0] + 2.0 * w * velocity[1] + w * w * position[0] - d * velocity[0],
        k * position[1] - 2.0 * w * velocity[0] + w * w * position[1] - d * velocity[1],
        k * position[2] - d * velocity[2],
    )


def report_state(update: TrackUpdate) -> tuple[Vec3, Vec3]:
    """A track update's position and velocity in the model frame."""
    p = update.position
    enu = enu_basis(p.lat_deg, p.lon_deg)
    v = update.velocity
    velocity = _add(
        _add(_add((0.0, 0.0, 0.0), enu.east, v.east_m_s), enu.north, v.north_m_s), enu.up, v.up_m_s
    )
    return to_model(p.lat_deg, p.lon_deg, p.alt_m), velocity


def _near(track: FusedTrack, t_s: float, z_p: Vec3, r_p: float) -> bool:
    """Cheap first gate: the report lies within a generous bound of the track's straight-line
    extrapolation (gravity, thrust and lift up to 100 m/s^2, twice the modelled drag, and 10 sigma
    of every error)."""
    dt = abs(t_s - track.t_s)
    guess = _add(track.position_m, track.velocity_m_s, t_s - track.t_s)
    accel = 100.0 + 2.0 * _drag_m_s2(track.position_m, track.velocity_m_s)  # re-entry: hundreds of m/s^2
    bound = 10.0 * math.sqrt(track.var_p + dt * dt * track.var_v + r_p) + 0.5 * accel * dt * dt
    return _dist2(z_p, guess) <= bound * bound


def predict_state(
    track: FusedTrack, t_s: float, *, boosting: bool = False
) -> tuple[Vec3, Vec3, float, float]:
    """The track's state and variances propagated to ``t_s`` (gravity plus process noise), forward
    or back: reports reach a cell out of measurement order (their sensors' delays differ).
    ``boosting`` says the interval may hold thrust even if the track says it has burnt out (a late
    report from before the burnout)."""
    dt = t_s - track.t_s
    if dt == 0.0:
        return track.position_m, track.velocity_m_s, track.var_p, track.var_v
    pos, vel = track.position_m, track.velocity_m_s
    # a few gravity steps are plenty for the seconds between reports
    steps = max(1, math.ceil(abs(dt) / 10.0))
    h = dt / steps
    for _ in range(steps):
        a = _accel(pos, vel)
        new_pos = _add(_add(pos, vel, h), a, 0.5 * h * h)
        vel = _add(vel, _add(a, _accel(new_pos, _add(vel, a, h))), 0.5 * h)
        pos = new_pos
        if norm(pos) < EARTH_RADIUS_M - 2.0 * BURIED_M:
            break  # well into the ground: nothing further to predict
    if boosting or track.phase is FlightPhase.BOOST:
        q = BOOST_ACCEL_SIGMA_M_S2
    elif from_model(pos)[2] < AIR_ALT_M:
        # the body's real ballistic coefficient is unknown: half the modelled drag is noise
        q = AIR_ACCEL_SIGMA_M_S2 + 0.5 * max(
            _drag_m_s2(pos, vel), _drag_m_s2(track.position_m, track.velocity_m_s)
        )
    else:
        q = VACUUM_ACCEL_SIGMA_M_S2
    var_p = track.var_p + dt * dt * track.var_v + (0.5 * q * dt * dt) ** 2
    var_v = track.var_v + (q * dt) ** 2
    return pos, vel, var_p, var_v


def fusion_source_id(nation: Nation) -> str:
    """The ``sensor_id`` a nation's fusion cell puts on its events."""
    return f"{nation.value}-FUSION"


class FusionCell:
    """One nation's fusion cell: reports in, fused products out (see the module docstring)."""

    def __init__(
        self,
        nation: Nation,
        *,
        areas: AreaMap,
        at: Callable[[float], datetime],
        prediction_interval_s: float,
        rng: random.Random,
    ) -> None:
        self.nation = nation
        self.source_id = fusion_source_id(nation)
        self.areas = areas
        self.at = at
        self.prediction_interval_s = prediction_interval_s
        self.rng = rng
        self.tracks: list[FusedTrack] = []
        self._pending_launch: dict[str, Report] = {}
        self._count = 0

    # ------------------------------------------------------------------ input
    def receive(self, report: Report) -> list[FusedDraft]:
        """Take one report; return the fused products it triggers (and any track ends due)."""
        out = self.expire(report.received_offset_s)
        payload = report.payload
        if isinstance(payload, LaunchDetection):
            self._pending_launch[report.sensor_id] = report
        elif isinstance(payload, TrackUpdate):
            out += self._track_report(report, payload)
        return out

    def expire(self, now_s: float) -> list[FusedDraft]:
        """End the tracks that had no report for :data:`LOST_AFTER_S` or have come down."""
        out: list[FusedDraft] = []
        for track in self.tracks:
            if track.ended:
                continue
            if now_s - track.last_report_s < LOST_AFTER_S:
                continue
            pos, _, _, _ = predict_state(track, now_s)
            down = from_model(pos)[2] <= 0.0
            if track.phase is FlightPhase.MIDCOURSE and not down:
                continue  # coasting out of sight: it may be seen again on its predicted path
            track.ended = True
            seen_down = track.phase is FlightPhase.TERMINAL
            reason = TrackEndReason.IMPACTED if seen_down else TrackEndReason.LOST
            out.append(self._draft(track, now_s, track.t_s, TrackEnd(reason=reason)))  # as of its last state
        return out

    def _track_report(self, report: Report, update: TrackUpdate) -> list[FusedDraft]:
        t = report.measured_offset_s
        z_p, z_v = report_state(update)
        r_p, r_v = update.position_sigma_m**2, update.velocity_sigma_m_s**2
        boosting = update.phase is FlightPhase.BOOST
        best: FusedTrack | None = None
        best_cost = math.inf
        for track in self.tracks:
            if track.ended or (report.sensor_id, t) in track.scans:
                continue
            if not _near(track, t, z_p, r_p):
                continue
            pos, vel, var_p, var_v = predict_state(track, t, boosting=boosting)
            if norm(pos) < EARTH_RADIUS_M - BURIED_M:
                continue  # its path has reached the ground: a report here is of another object
            s_p, s_v = var_p + r_p, var_v + r_v
            d2 = _dist2(z_p, pos) / s_p + _dist2(z_v, vel) / s_v
            if d2 >= GATE_CHI2:
                continue
            # among the tracks in the gate, the likeliest (a diffuse track is not a closer one)
            cost = d2 + 3.0 * math.log(s_p) + 3.0 * math.log(s_v)
            if cost < best_cost:
                best, best_cost = track, cost
        out: list[FusedDraft] = []
        if best is None:
            self._count += 1
            best = FusedTrack(
                key=f"{self.nation.value}-F{self._count:04d}",
                t_s=t,
                position_m=z_p,
                velocity_m_s=z_v,
                var_p=r_p,
                var_v=r_v,
                phase=update.phase,
                created_s=t,
                last_report_s=report.received_offset_s,
            )
            self.tracks.append(best)
        else:
            pos, vel, var_p, var_v = predict_state(best, t, boosting=boosting)
            k_p, k_v = var_p / (var_p + r_p), var_v / (var_v + r_v)
            best.position_m = _add(pos, (z_p[0] - pos[0], z_p[1] - pos[1], z_p[2] - pos[2]), k_p)
            best.velocity_m_s = _add(vel, (z_v[0] - vel[0], z_v[1] - vel[1], z_v[2] - vel[2]), k_v)
            best.var_p = max((1.0 - k_p) * var_p, 0.5 * r_p)
            best.var_v = max((1.0 - k_v) * var_v, 0.5 * r_v)
            best.t_s = t
            best.phase = update.phase
            best.last_report_s = report.received_offset_s
        best.reports += 1
        best.sensors.add(report.sensor_id)
        best.scans.add((report.sensor_id, t))
        self._tie_launch(best, report)
        self._classify(best)
        now = report.received_offset_s
        if best.launch_point is not None and not best.announced:
            best.announced = True
            out.append(self._draft(best, now, t, self._launch_detection(best, t)))
        if not best.announced:
            return out  # nothing is published about a track before its launch is known
        if t - best.last_update_emit_s >= FUSED_UPDATE_INTERVAL_S:
            best.last_update_emit_s = t
            out.append(self._draft(best, now, t, self._track_update(best)))
        if best.reports >= 3 and t - best.last_prediction_s >= self.prediction_interval_s:
            prediction = self.predict(best)
            if prediction is not None:
                best.last_prediction_s = t
                out.append(self._draft(best, now, t, prediction))
        return out

    def _tie_launch(self, track: FusedTrack, report: Report) -> None:
        pending = self._pending_launch.get(report.sensor_id)
        if pending is None or pending.measured_offset_s != report.measured_offset_s:
            return
        del self._pending_launch[report.sensor_id]
        assert isinstance(pending.payload, LaunchDetection)
        ld = pending.payload
        launch_offset = (
            report.measured_offset_s - (self.at(report.measured_offset_s) - ld.launch_time).total_seconds()
        )
        # the sensor model's launch-time error: 1 s plus 5 % of the back-extrapolation
        sigma_t = 1.0 + 0.05 * max(0.0, report.measured_offset_s - launch_offset)
        w = 1.0 / (sigma_t * sigma_t)
        total = track.launch_weight + w
        track.launch_offset_s = (track.launch_offset_s * track.launch_weight + launch_offset * w) / total
        track.launch_time_var_s2 = 1.0 / total
        point = (ld.launch_point.lat_deg, ld.launch_point.lon_deg)
        sigma_p = max(ld.launch_point_sigma_m, 1.0)
        if track.launch_point is None or sigma_p < track.launch_point_sigma_m:
            track.launch_point, track.launch_point_sigma_m = point, sigma_p
        track.launch_weight = total
        if ld.missile_class is not MissileClass.UNKNOWN and track.missile_class is MissileClass.UNKNOWN:
            track.missile_class = ld.missile_class

    def _classify(self, track: FusedTrack) -> None:
        """Class from the post-burnout energy in midcourse (on the way down drag lowers it)."""
        if track.phase is not FlightPhase.MIDCOURSE:
            return
        track.missile_class = estimate_class(norm(track.velocity_m_s), norm(track.position_m))

    # ------------------------------------------------------------------ output
    def _draft(self, track: FusedTrack, now_s: float, measured_s: float, payload: EventPayload) -> FusedDraft:
        emit = now_s + FUSION_DELAY_S
        return FusedDraft(
            emit_offset_s=emit,
            measured_offset_s=min(measured_s, emit),
            source_id=self.source_id,
            nation=self.nation,
            correlation_key=track.key,
            event_id=event_uuid(self.rng),
            payload=payload,
        )

    def _launch_detection(self, track: FusedTrack, t_s: float) -> LaunchDetection:
        assert track.launch_point is not None
        return LaunchDetection(
            launch_point=GeoPoint(lat_deg=track.launch_point[0], lon_deg=track.launch_point[1], alt_m=0.0),
            launch_point_sigma_m=track.launch_point_sigma_m,
            launch_time=self.at(min(track.launch_offset_s, t_s)),
            confidence=min(0.99, 0.8 + 0.05 * len(track.sensors)),
            missile_class=track.missile_class,
        )

    def _track_update(self, track: FusedTrack) -> TrackUpdate:
        lat, lon, alt = from_model(track.position_m)
        enu = enu_basis(lat, lon)
        v = track.velocity_m_s

        def comp(axis: Vec3) -> float:
            return max(-20_000.0, min(20_000.0, v[0] * axis[0] + v[1] * axis[1] + v[2] * axis[2]))

        return TrackUpdate(
            position=GeoPoint(lat_deg=lat, lon_deg=_wrap(lon), alt_m=alt),
            velocity=EnuVelocity(east_m_s=comp(enu.east), north_m_s=comp(enu.north), up_m_s=comp(enu.up)),
            position_sigma_m=math.sqrt(track.var_p),
            velocity_sigma_m_s=math.sqrt(track.var_v),
            phase=track.phase,
            track_quality=min(1.0, track.reports / 20.0),
            missile_class=track.missile_class,
        )

    def predict(self, track: FusedTrack) -> ImpactPrediction | None:
        """The fused impact prediction of ``track`` at its state time (None if it does not come
        down)."""
        result = predict_ballistic(track.position_m, track.velocity_m_s)
        if result is None:
            return None
        lat, lon, _ = from_model(result.impact_m)
        ground = [from_model(p)[:2] for p in result.path_m]
        touched = self.areas.areas_touched(ground)
        at_impact = self.areas.areas_at((lat, lon))
        elapsed = track.t_s - track.launch_offset_s
        ellipse = impact_ellipse(
            track.position_m,
            track.velocity_m_s,
            math.sqrt(track.var_p),
            math.sqrt(track.var_v),
            result,
            boosting=track.phase is FlightPhase.BOOST,
            launch_point=track.launch_point,
            launch_point_sigma_m=track.launch_point_sigma_m,
            elapsed_s=elapsed,
            elapsed_sigma_s=math.sqrt(track.launch_time_var_s2),
        )
        impact_time = self.at(track.t_s + result.time_to_impact_s)
        launch_time = self.at(track.launch_offset_s)
        return ImpactPrediction(
            impact_point=GeoPoint(lat_deg=lat, lon_deg=_wrap(lon), alt_m=0.0),
            impact_time=impact_time,
            launch_time=launch_time if launch_time < impact_time else None,
            ellipse=UncertaintyEllipse(
                semi_major_m=ellipse.semi_major_m,
                semi_minor_m=ellipse.semi_minor_m,
                orientation_deg=ellipse.orientation_deg,
            ),
            impact_areas=at_impact,
            overflown_areas=[a for a in touched if a not in at_impact],
            missile_class=track.missile_class,
        )


def _wrap(lon_deg: float) -> float:
    return (lon_deg + 180.0) % 360.0 - 180.0


def at_clock(start: datetime) -> Callable[[float], datetime]:
    """Scenario offset (s) -> UTC instant, to the microsecond (as the sensors' clock)."""

    def at(offset_s: float) -> datetime:
        return start + timedelta(microseconds=round(offset_s * 1e6))

    return at
