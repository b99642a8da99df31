"""Trajectory physics: published flight times, conservation, step halving, typed errors."""

from __future__ import annotations

import json
import math

import pytest

from producers.errors import TrajectoryError
from producers.geometry import EARTH_RADIUS_M, MU_EARTH_M3_S2, great_circle_m
from producers.trajectory import (
    BALLISTIC_STEP_S,
    FlightRequest,
    MissileClass,
    Profile,
    fly,
    integrate_ballistic,
    kepler_arc,
    minimum_energy_apogee_m,
    propagate_to_impact,
    target_arc,
)
from trilink.cli import main
from trilink.errors import SimulationError

pytestmark = pytest.mark.unit

SUNAN = (39.2, 125.67)

HWASONG_15 = FlightRequest(
    *SUNAN, MissileClass.ICBM, Profile.LOFTED, range_m=950e3, azimuth_deg=95.0, apogee_m=4475e3
)
HWASONG_12 = FlightRequest(
    *SUNAN, MissileClass.IRBM, Profile.LOFTED, range_m=787e3, azimuth_deg=95.0, apogee_m=2111e3
)
KN_23 = FlightRequest(
    *SUNAN, MissileClass.SRBM, Profile.DEPRESSED, range_m=600e3, azimuth_deg=90.0, apogee_m=55e3
)


@pytest.mark.parametrize(
    ("request_", "published_s"),
    [(HWASONG_15, 53 * 60.0), (HWASONG_12, 30 * 60.0)],
    ids=["hwasong15-2017-11-29", "hwasong12-2017-05-14"],
)
def test_published_lofted_flight_times_within_5_percent(request_: FlightRequest, published_s: float) -> None:
    flight = fly(request_)
    assert flight.flight_time_s == pytest.approx(published_s, rel=0.05)
    assert flight.apogee_m == pytest.approx(request_.apogee_m, abs=1_000.0)
    assert flight.ground_range_m == pytest.approx(request_.range_m, abs=1_000.0)


def test_depressed_srbm_stays_low_and_reaches_range() -> None:
    flight = fly(KN_23)
    assert flight.apogee_m == pytest.approx(55e3, abs=500.0)
    assert flight.ground_range_m == pytest.approx(600e3, abs=1_000.0)
    assert flight.burnout.alt_m < flight.apogee_m
    # a 600 km flight at ~3 km/s lasts minutes, not seconds or an hour
    assert 150.0 < flight.flight_time_s < 400.0


def test_flight_is_not_a_flat_earth_parabola() -> None:
    # Flat-Earth constant-g free fall from the Hwasong-15 apogee alone would take 2*sqrt(2h/g)
    # ~ 3,020 s for the drop and rise, and *underestimate* the time; curvature + 1/r^2 add.
    flight = fly(HWASONG_15)
    g0 = MU_EARTH_M3_S2 / EARTH_RADIUS_M**2
    flat = 2.0 * math.sqrt(2.0 * 4475e3 / g0)
    assert flight.flight_time_s > flat + 60.0


def test_samples_are_time_ordered_and_end_on_the_ground() -> None:
    flight = fly(KN_23)
    samples = flight.samples(interval_s=5.0)
    assert [s.t_s for s in samples] == sorted(s.t_s for s in samples)
    assert samples[0].alt_m == pytest.approx(0.0, abs=1e-6)
    assert samples[-1].alt_m == pytest.approx(0.0, abs=1.0)
    assert samples[0].boosting
    assert not samples[-1].boosting


def _energy_and_momentum(state: tuple[float, float, float, float]) -> tuple[float, float]:
    x, y, vx, vy = state
    return (vx * vx + vy * vy) / 2.0 - MU_EARTH_M3_S2 / math.hypot(x, y), x * vy - y * vx


def test_integrator_conserves_energy_and_angular_momentum_on_the_ballistic_arc() -> None:
    flight = fly(HWASONG_15)
    arc = [s for t, s in zip(flight.times_s, flight.states, strict=True) if t >= flight.burnout_time_s]
    e0, h0 = _energy_and_momentum(arc[0])
    for state in arc[:-1]:  # the last point is the interpolated impact
        e, h = _energy_and_momentum(state)
        assert abs((e - e0) / e0) < 1e-9
        assert abs((h - h0) / h0) < 1e-9


def test_step_halving_changes_impact_by_under_a_metre() -> None:
    flight = fly(HWASONG_15)
    i = flight.times_s.index(flight.burnout_time_s)
    start = flight.states[i]
    coarse = integrate_ballistic(flight.burnout_time_s, start, BALLISTIC_STEP_S)
    fine = integrate_ballistic(flight.burnout_time_s, start, BALLISTIC_STEP_S / 2.0)
    (tc, sc), (tf, sf) = coarse[-1], fine[-1]
    assert abs(tc - tf) < 1e-3
    assert math.hypot(sc[0] - sf[0], sc[1] - sf[1]) < 1.0
    # and both agree with the closed-form Kepler time of flight
    x, y, vx, vy = start
    r = math.hypot(x, y)
    arc = kepler_arc(r, (x * vx + y * vy) / r, (vx * y - vy * x) / r)
    assert arc is not None
    assert tf - flight.burnout_time_s == pytest.approx(arc.time_to_impact_s, abs=1e-2)


def test_target_arc_round_trips_through_kepler_arc() -> None:
    r = EARTH_RADIUS_M + 300e3
    v, gamma = target_arc(r, 0.1, EARTH_RADIUS_M + 1_500e3)
    arc = kepler_arc(r, v * math.sin(gamma), v * math.cos(gamma))
    assert arc is not None
    assert arc.range_angle_rad == pytest.approx(0.1, rel=1e-9)
    assert arc.apogee_radius_m == pytest.approx(EARTH_RADIUS_M + 1_500e3, rel=1e-9)


def test_minimum_energy_profile_has_the_minimum_energy_apogee() -> None:
    req = FlightRequest(*SUNAN, MissileClass.MRBM, range_m=1_000e3, azimuth_deg=90.0)
    flight = fly(req)
    assert flight.profile is Profile.MINIMUM_ENERGY
    assert flight.apogee_m == pytest.approx(minimum_energy_apogee_m(1_000e3), abs=1_000.0)


def test_impact_point_request_reaches_that_point() -> None:
    req = FlightRequest(*SUNAN, MissileClass.MRBM, impact_lat_deg=40.0, impact_lon_deg=135.0)
    lat, lon = fly(req).impact_point
    assert great_circle_m(lat, lon, 40.0, 135.0) < 1_000.0


def test_propagate_to_impact_agrees_with_the_flight() -> None:
    flight = fly(HWASONG_12)
    t0 = flight.burnout_time_s + 100.0
    pos, vel = flight.model_state_at(t0)
    result = propagate_to_impact(pos, vel)
    assert result is not None
    dt, impact = result
    assert t0 + dt == pytest.approx(flight.flight_time_s, abs=0.5)
    end, _ = flight.model_state_at(flight.flight_time_s)
    assert math.dist(impact, end) < 100.0


@pytest.mark.parametrize(
    ("request_", "reason", "parameter"),
    [
        (
            FlightRequest(
                *SUNAN,
                MissileClass.SRBM,
                Profile.DEPRESSED,
                range_m=950e3,
                azimuth_deg=90.0,
                apogee_m=20e3,
            ),
            "apogee_too_low",
            "apogee_km",
        ),
        (
            FlightRequest(
                *SUNAN,
                MissileClass.MRBM,
                Profile.LOFTED,
                range_m=1_000e3,
                azimuth_deg=90.0,
                apogee_m=100e3,
            ),
            "apogee_too_low",
            "apogee_km",
        ),
        (
            FlightRequest(*SUNAN, MissileClass.SRBM, range_m=2_000e3, azimuth_deg=90.0),
            "beyond_class_reach",
            "range_km",
        ),
        (
            FlightRequest(*SUNAN, MissileClass.IRBM, range_m=1_000e3, azimuth_deg=90.0, apogee_m=3_000e3),
            "beyond_class_reach",
            "apogee_km",
        ),
        (
            FlightRequest(10.0, 125.0, MissileClass.SRBM, range_m=300e3, azimuth_deg=90.0),
            "outside_map",
            "site",
        ),
    ],
)
def test_impossible_requests_raise_a_typed_error_naming_the_parameter(
    request_: FlightRequest, reason: str, parameter: str
) -> None:
    with pytest.raises(TrajectoryError) as info:
        fly(request_)
    assert isinstance(info.value, SimulationError)
    assert info.value.reason == reason
    assert parameter in info.value.message


def test_cli_prints_the_summary_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "trajectory",
            "--site",
            "39.2,125.67",
            "--range-km",
            "950",
            "--azimuth-deg",
            "95",
            "--apogee-km",
            "4475",
            "--class",
            "ICBM",
            "--profile",
            "lofted",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {
        "apogee_km",
        "ground_range_km",
        "flight_time_s",
        "burnout_time_s",
        "burnout_altitude_km",
        "impact",
    }
    assert out["apogee_km"] == pytest.approx(4475.0, abs=1.0)
    assert out["flight_time_s"] == pytest.approx(3180.0, rel=0.05)
    assert set(out["impact"]) == {"lat", "lon"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--site", "nonsense", "--range-km", "300", "--azimuth-deg", "90"], "site="),
        (["--site", "10,125", "--range-km", "300", "--azimuth-deg", "90"], "site="),
        (
            [
                "--site",
                "39,125.7",
                "--range-km",
                "900",
                "--azimuth-deg",
                "90",
                "--apogee-km",
                "20",
                "--class",
                "SRBM",
                "--profile",
                "depressed",
            ],
            "apogee_km=",
        ),
    ],
)
def test_cli_reports_impossible_requests_in_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trajectory", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trilink: error [")
    assert needle in err
    assert "Traceback" not in err
