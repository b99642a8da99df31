"""A nation's fusion cell: association without the truth key, fused products, honest ellipses."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from producers.areas import default_areas
from producers.fusion import FusedDraft, FusionCell, Report, at_clock
from producers.geometry import enu_basis, from_model, great_circle_m, initial_azimuth_deg
from producers.national import is_national_product
from producers.scenario import load_scenario, simulate, solve_flights
from producers.scenario_report import build_report
from producers.trajectory import Flight, FlightRequest, Profile, fly, predict_ballistic
from producers.trajectory import MissileClass as FlightClass
from producers.uncertainty import impact_ellipse
from schemas.models import (
    EnuVelocity,
    FlightPhase,
    GeoPoint,
    ImpactPrediction,
    LaunchDetection,
    MissileClass,
    Nation,
    TrackEnd,
    TrackUpdate,
)

pytestmark = pytest.mark.unit

START = datetime(2024, 1, 1, tzinfo=UTC)


def _cell(nation: Nation = Nation.JP) -> FusionCell:
    return FusionCell(
        nation, areas=default_areas(), at=at_clock(START), prediction_interval_s=10.0, rng=random.Random(7)
    )


def _update(flight: Flight, t: float, rng: random.Random, sigma_m: float = 100.0) -> TrackUpdate:
    """What a sensor reports at flight time ``t``: the true state plus its stated errors."""
    pos, vel = flight.model_state_at(t)
    g = rng.gauss
    pos = (pos[0] + g(0, sigma_m), pos[1] + g(0, sigma_m), pos[2] + g(0, sigma_m))
    vel = (vel[0] + g(0, 5.0), vel[1] + g(0, 5.0), vel[2] + g(0, 5.0))
    lat, lon, alt = from_model(pos)
    enu = enu_basis(lat, lon)

    def comp(axis: tuple[float, float, float]) -> float:
        return sum(v * a for v, a in zip(vel, axis, strict=True))

    return TrackUpdate(
        position=GeoPoint(lat_deg=lat, lon_deg=lon, alt_m=alt),
        velocity=EnuVelocity(east_m_s=comp(enu.east), north_m_s=comp(enu.north), up_m_s=comp(enu.up)),
        position_sigma_m=sigma_m,
        velocity_sigma_m_s=5.0,
        phase=FlightPhase.BOOST if t < flight.burnout_time_s else FlightPhase.MIDCOURSE,
        track_quality=0.5,
    )


def _feed(
    cell: FusionCell, flights: dict[str, tuple[Flight, float]], sensors: list[str], t_end: float
) -> list[FusedDraft]:
    """Every sensor reports every flight every 5 s (its own phase), launch detection first."""
    rng = random.Random(3)
    reports: list[Report] = []
    for i, sensor in enumerate(sensors):
        for flight, launch_s in flights.values():
            first = True
            t = 30.0 + 1.3 * i
            while t < min(t_end, flight.flight_time_s):
                measured = launch_s + t
                if first:
                    lat, lon = flight.launch_point
                    ld = LaunchDetection(
                        launch_point=GeoPoint(lat_deg=lat, lon_deg=lon, alt_m=0.0),
                        launch_point_sigma_m=2_000.0,
                        launch_time=at_clock(START)(launch_s),
                        confidence=0.9,
                        missile_class=MissileClass.UNKNOWN,
                    )
                    reports.append(Report(measured + 0.5, measured, sensor, Nation.US, ld))
                    first = False
                reports.append(
                    Report(measured + 0.5 + 0.01 * i, measured, sensor, Nation.US, _update(flight, t, rng))
                )
                t += 5.0
    out: list[FusedDraft] = []
    for report in sorted(reports, key=lambda r: (r.received_offset_s, isinstance(r.payload, TrackUpdate))):
        out += cell.receive(report)
    return out


def _srbm(site: tuple[float, float], azimuth_deg: float = 90.0) -> Flight:
    return fly(FlightRequest(site[0], site[1], FlightClass.SRBM, Profile.MINIMUM_ENERGY, 500e3, azimuth_deg))


def test_one_missile_seen_by_three_sensors_is_one_track() -> None:
    cell = _cell()
    out = _feed(cell, {"A": (_srbm((39.0, 125.7)), 0.0)}, ["radar-1", "radar-2", "ir-1"], 300.0)
    assert len(cell.tracks) == 1
    track = cell.tracks[0]
    assert track.sensors == {"radar-1", "radar-2", "ir-1"}
    assert {d.correlation_key for d in out} == {"JP-F0001"}
    assert {d.source_id for d in out} == {"JP-FUSION"}
    kinds = [type(d.payload) for d in out]
    assert kinds.count(LaunchDetection) == 1  # one national launch report, not one per sensor
    assert TrackUpdate in kinds and ImpactPrediction in kinds
    assert track.missile_class is MissileClass.SRBM  # estimated after burnout


def test_two_close_missiles_stay_two_tracks() -> None:
    # same site, same heading, launched 20 s apart; and a third from 30 km away at the same time
    flights = {
        "A": (_srbm((39.0, 125.7)), 0.0),
        "B": (_srbm((39.0, 125.7)), 20.0),
        "C": (_srbm((39.27, 125.7)), 0.0),
    }
    cell = _cell()
    _feed(cell, flights, ["radar-1", "radar-2"], 300.0)
    assert len(cell.tracks) == 3
    # each fused track follows one missile: its final state is nearest that missile's truth
    for track in cell.tracks:
        distances = []
        for flight, launch_s in flights.values():
            pos, _ = flight.model_state_at(track.t_s - launch_s)
            distances.append(math.dist(pos, track.position_m))
        assert sorted(distances)[0] < 5_000.0 < sorted(distances)[1]


def test_a_silent_track_ends() -> None:
    cell = _cell()
    _feed(cell, {"A": (_srbm((39.0, 125.7)), 0.0)}, ["radar-1"], 120.0)  # seen for 2 min only
    ends = [d for d in cell.expire(2_000.0) if isinstance(d.payload, TrackEnd)]
    assert len(ends) == 1
    assert cell.tracks[0].ended
    assert cell.expire(3_000.0) == []  # once


def test_a_boost_phase_ellipse_covers_where_the_missile_will_come_down() -> None:
    """Issue #12: at 71 s an ICBM prediction was 941 km off with a 15.6 km 1-sigma, because the
    remaining-distance term measured to an impact point near the pad."""
    flight = fly(
        FlightRequest(39.2, 125.67, FlightClass.ICBM, Profile.LOFTED, 1_000e3, 90.0, apogee_m=6_000e3)
    )
    truth = flight.impact_point
    for t in (20.0, 45.0, 71.0, 150.0, 250.0):
        pos, vel = flight.model_state_at(t)
        result = predict_ballistic(pos, vel)
        assert result is not None
        e = impact_ellipse(
            pos,
            vel,
            50.0,
            5.0,
            result,
            boosting=True,
            launch_point=flight.launch_point,
            launch_point_sigma_m=1_000.0,
            elapsed_s=t,
            elapsed_sigma_s=2.0,
        )
        lat, lon, _ = from_model(result.impact_m)
        miss = great_circle_m(lat, lon, *truth)
        off = math.radians(initial_azimuth_deg(lat, lon, *truth) - e.orientation_deg)
        normalised = math.hypot(miss * math.cos(off) / e.semi_major_m, miss * math.sin(off) / e.semi_minor_m)
        assert normalised <= 3.0, (t, miss, e)


@pytest.fixture(scope="module")
def salvo_report(salvo_events):  # type: ignore[no-untyped-def]
    scenario = load_scenario("salvo")
    return scenario, build_report(scenario, salvo_events)


def test_the_salvo_gives_one_fused_track_per_missile_per_nation(salvo_report) -> None:  # type: ignore[no-untyped-def]
    scenario, report = salvo_report
    assert report.unmatched_tracks == {}
    assert report.stray_updates == 0  # no fused track ever followed another missile
    for launch in report.launches:
        assert {n: len(keys) for n, keys in launch.fused_tracks.items()} == {n: 1 for n in Nation}, (
            launch.launch_id
        )
        assert set(launch.nation_detection_s) == set(Nation)
    # and the keys are the cells' own, never the sensors' (truth) correlation keys
    truth_keys = {f"TRK-{scenario.name}-{launch.id}" for launch in scenario.launches}
    keys = {k for launch in report.launches for ks in launch.fused_tracks.values() for k in ks}
    assert not keys & truth_keys


def test_salvo_boost_phase_predictions_are_honest(salvo_report) -> None:  # type: ignore[no-untyped-def]
    _, report = salvo_report
    outside, total = report.boost_outside_3sigma()
    assert total > 100
    assert outside <= 0.05 * total


def test_fused_events_carry_the_estimated_class_and_sensors_alert_no_more() -> None:
    scenario = load_scenario("irbm_over_japan")
    events = list(simulate(scenario))
    fused = [e.event for e in events if e.event.header.sensor_id.endswith("-FUSION")]
    assert {e.header.sensor_nation for e in fused} == set(Nation)
    classes = {e.payload.missile_class for e in fused if isinstance(e.payload, ImpactPrediction)}
    assert MissileClass.IRBM in classes
    # the sensors' own predictions carry their estimate too, once past burnout
    own = [
        e.event.payload
        for e in events
        if isinstance(e.event.payload, ImpactPrediction) and not is_national_product(e.event.header.sensor_id)
    ]
    assert {p.missile_class for p in own} <= {MissileClass.IRBM, MissileClass.UNKNOWN}
    assert sum(p.missile_class is MissileClass.IRBM for p in own) > len(own) // 2
    for e in events:
        if e.event.kind.value == "alert":
            assert is_national_product(e.event.header.sensor_id)
    assert solve_flights(scenario)  # the scenario flies (sanity)
