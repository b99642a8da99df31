"""Trajectory physics: published flight times, a rotating Earth, drag and the pull-up,
conservation, step halving, class warnings (not refusals) and typed errors."""

from __future__ import annotations

import json
import math

import pytest

from producers.errors import TrajectoryError
from producers.geometry import EARTH_RADIUS_M, MU_EARTH_M3_S2, from_model, great_circle_m
from producers.trajectory import (
    ATMOSPHERE_STEP_FRACTION,
    BALLISTIC_STEP_S,
    OMEGA_EARTH_RAD_S,
    Flight,
    FlightRequest,
    MissileClass,
    Profile,
    State,
    air,
    class_spec,
    fly,
    infer_class,
    integrate_coast,
    kepler_arc,
    minimum_energy_apogee_m,
    predict_ballistic,
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
# 18 Nov 2022 (KCNA via TASS, 19 Nov 2022, https://tass.com/defense/1539159): 999.2 km,
# apogee 6,040.9 km, 4,135 s; Japan's defence ministry: ~69 min, ~1,000 km, ~6,000 km.
HWASONG_17 = FlightRequest(
    *SUNAN, MissileClass.ICBM, Profile.LOFTED, range_m=999.2e3, azimuth_deg=95.0, apogee_m=6040.9e3
)
KN_23 = FlightRequest(
    *SUNAN, MissileClass.SRBM, Profile.DEPRESSED, range_m=600e3, azimuth_deg=90.0, apogee_m=55e3
)


@pytest.mark.parametrize(
    ("request_", "published_s"),
    [(HWASONG_15, 53 * 60.0), (HWASONG_12, 30 * 60.0), (HWASONG_17, 4_135.0)],
    ids=["hwasong15-2017-11-29", "hwasong12-2017-05-14", "hwasong17-2022-11-18"],
)
def test_published_lofted_flight_times_within_5_percent(request_: FlightRequest, published_s: float) -> None:
    flight = fly(request_)
    assert flight.flight_time_s == pytest.approx(published_s, rel=0.05)
    assert flight.apogee_m == pytest.approx(request_.apogee_m, abs=1_000.0)
    assert flight.ground_range_m == pytest.approx(request_.range_m, abs=1_000.0)


# KN-23-type flights (PUBLIC_FACTS: ~50-60 km apogee, 430-800 km): 25 Mar 2021 ~600 km at
# ~60 km, 15 Sep 2021 ~800 km at ~60 km (Yonhap), the first estimate of 450 km (ROK JCS).
@pytest.mark.parametrize(("range_km", "apogee_km"), [(430, 50), (450, 50), (600, 55), (600, 60), (800, 60)])
def test_kn23_type_depressed_flights_fly_with_a_pull_up(range_km: float, apogee_km: float) -> None:
    flight = fly(
        FlightRequest(
            *SUNAN,
            MissileClass.SRBM,
            Profile.DEPRESSED,
            range_m=range_km * 1e3,
            azimuth_deg=88.0,
            apogee_m=apogee_km * 1e3,
        )
    )
    assert flight.apogee_m == pytest.approx(apogee_km * 1e3, abs=500.0)
    assert flight.ground_range_m == pytest.approx(range_km * 1e3, abs=1_000.0)
    assert flight.burnout.alt_m < flight.apogee_m
    # after apogee it falls, then climbs again: a low point followed by a higher one
    alts = [from_model(s[:3])[2] for s in flight.states]
    i = max(range(len(alts)), key=alts.__getitem__)  # apogee
    while alts[i + 1] <= alts[i]:
        i += 1  # falling
    assert max(alts[i:]) > alts[i] + 1_000.0
    assert not flight.warnings


def test_a_ballistic_extrapolation_from_apogee_falls_short_of_a_pull_up() -> None:
    # The ROK JCS first put the 25 Mar 2021 flight at 450 km, then ~600 km once the pull-up was
    # accounted for (KBS World, Apr 2021); the SRBM lift-to-drag ratio is chosen to match.
    flight = fly(
        FlightRequest(
            *SUNAN, MissileClass.SRBM, Profile.DEPRESSED, range_m=600e3, azimuth_deg=88.0, apogee_m=60e3
        )
    )
    top = max(range(len(flight.states)), key=lambda i: math.dist(flight.states[i][:3], (0.0, 0.0, 0.0)))
    pos, vel = flight.model_state_at(flight.times_s[top])
    prediction = predict_ballistic(
        pos, vel, beta_kg_m2=class_spec(MissileClass.SRBM).ballistic_coefficient_kg_m2
    )
    assert prediction is not None
    lat, lon, _ = from_model(prediction.impact_m)
    assert great_circle_m(*SUNAN, lat, lon) == pytest.approx(450e3, abs=40e3)


def test_depressed_srbm_stays_low_and_reaches_range() -> None:
    flight = fly(KN_23)
    assert flight.apogee_m == pytest.approx(55e3, abs=500.0)
    assert flight.ground_range_m == pytest.approx(600e3, abs=1_000.0)
    assert flight.burnout.alt_m < flight.apogee_m
    # a 600 km flight at ~2 km/s lasts minutes, not seconds or an hour (was < 400 s for a purely
    # ballistic arc; the pull-up's glide through dense air now takes ~400 s)
    assert 150.0 < flight.flight_time_s < 600.0


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
    assert samples[0].speed_m_s == pytest.approx(0.0, abs=1e-9)  # at rest on the rotating Earth


# ----------------------------------------------------------------------------- rotating Earth


def _jacobi_and_spin(state: State) -> tuple[float, float]:
    """The rotating frame's Jacobi integral and the inertial angular momentum about the axis:
    both constant in free flight without drag."""
    x, y, z, vx, vy, vz = state
    w = OMEGA_EARTH_RAD_S
    r = math.sqrt(x * x + y * y + z * z)
    jacobi = (vx * vx + vy * vy + vz * vz) / 2.0 - MU_EARTH_M3_S2 / r - 0.5 * w * w * (x * x + y * y)
    return jacobi, x * (vy + w * x) - y * (vx - w * y)


def _burnout_state(flight: Flight) -> State:
    return flight.states[flight.times_s.index(flight.burnout_time_s)]


def test_integrator_conserves_the_jacobi_integral_and_spin_above_the_atmosphere() -> None:
    # In the rotating frame the Jacobi integral replaces the energy (was: energy and angular
    # momentum in the plane of a non-rotating Earth); no drag above the atmosphere's top.
    flight = fly(HWASONG_15)
    top = air().top_radius_m
    arc = [
        s
        for t, s in zip(flight.times_s, flight.states, strict=True)
        if t >= flight.burnout_time_s and math.dist(s[:3], (0.0, 0.0, 0.0)) > top
    ]
    assert len(arc) > 100
    c0, h0 = _jacobi_and_spin(arc[0])
    for state in arc:
        c, h = _jacobi_and_spin(state)
        assert abs((c - c0) / c0) < 1e-9
        assert abs((h - h0) / h0) < 1e-9


def test_step_halving_changes_impact_by_under_a_metre() -> None:
    flight = fly(HWASONG_15)
    start = _burnout_state(flight)
    beta = class_spec(MissileClass.ICBM).ballistic_coefficient_kg_m2
    coarse = integrate_coast(flight.burnout_time_s, start, beta_kg_m2=beta)
    fine = integrate_coast(
        flight.burnout_time_s,
        start,
        beta_kg_m2=beta,
        max_step_s=BALLISTIC_STEP_S / 2.0,
        step_fraction=ATMOSPHERE_STEP_FRACTION / 2.0,
    )
    (tc, sc), (tf, sf) = coarse.points[-1], fine.points[-1]
    assert abs(tc - tf) < 1e-3
    assert math.dist(sc[:3], sf[:3]) < 1.0


def test_step_halving_moves_a_pull_up_by_metres() -> None:
    # the lifting glide through dense air is the stiffest part of any flight modelled
    flight = fly(KN_23)
    start = _burnout_state(flight)
    spec = class_spec(MissileClass.SRBM)

    def coast(max_step_s: float, step_fraction: float) -> tuple[float, State]:
        arc = integrate_coast(
            flight.burnout_time_s,
            start,
            beta_kg_m2=spec.ballistic_coefficient_kg_m2,
            lift_to_drag=spec.lift_to_drag,
            lift_end_speed_m_s=spec.pull_up_end_speed_m_s,
            max_step_s=max_step_s,
            step_fraction=step_fraction,
        )
        return arc.points[-1]

    coarse = coast(BALLISTIC_STEP_S, ATMOSPHERE_STEP_FRACTION)
    fine = coast(BALLISTIC_STEP_S / 2.0, ATMOSPHERE_STEP_FRACTION / 2.0)
    assert coarse[1] == flight.states[-1]  # the flight is this integration
    assert abs(coarse[0] - fine[0]) < 0.02
    assert math.dist(coarse[1][:3], fine[1][:3]) < 20.0


def _inertial(state: State) -> tuple[float, float, float, float, float, float]:
    x, y, z, vx, vy, vz = state
    w = OMEGA_EARTH_RAD_S
    return x, y, z, vx - w * y, vy + w * x, vz


def test_without_air_the_rotating_frame_flies_the_inertial_kepler_conic() -> None:
    # No drag (an enormous ballistic coefficient): the flight is a Kepler conic in inertial
    # space; the Earth-fixed impact is its end point turned back by the Earth's rotation.
    flight = fly(HWASONG_15)
    start = _burnout_state(flight)
    vacuum = integrate_coast(flight.burnout_time_s, start, beta_kg_m2=1e30)
    x, y, z, vx, vy, vz = _inertial(start)
    r = math.sqrt(x * x + y * y + z * z)
    up = (x / r, y / r, z / r)
    radial = vx * up[0] + vy * up[1] + vz * up[2]
    horiz = (vx - radial * up[0], vy - radial * up[1], vz - radial * up[2])
    tangential = math.sqrt(sum(c * c for c in horiz))
    arc = kepler_arc(r, radial, tangential)
    assert arc is not None
    t_end, end = vacuum.points[-1]
    assert t_end - flight.burnout_time_s == pytest.approx(arc.time_to_impact_s, abs=1e-2)
    c, s = math.cos(arc.range_angle_rad), math.sin(arc.range_angle_rad)
    impact_inertial = [EARTH_RADIUS_M * (c * u + s * h / tangential) for u, h in zip(up, horiz, strict=True)]
    turn = -OMEGA_EARTH_RAD_S * arc.time_to_impact_s
    impact_fixed = (
        math.cos(turn) * impact_inertial[0] - math.sin(turn) * impact_inertial[1],
        math.sin(turn) * impact_inertial[0] + math.cos(turn) * impact_inertial[1],
        impact_inertial[2],
    )
    assert math.dist(end[:3], impact_fixed) < 1.0
    # and with the Earth held still, the same state flies the same conic in the Earth's frame
    still = integrate_coast(flight.burnout_time_s, _inertial(start), beta_kg_m2=1e30, omega_rad_s=0.0)
    assert still.points[-1][0] == pytest.approx(t_end, abs=1e-2)


@pytest.mark.parametrize(
    ("missile_class", "profile", "range_km", "apogee_km"),
    [
        (MissileClass.SRBM, Profile.MINIMUM_ENERGY, 400.0, None),
        (MissileClass.MRBM, Profile.MINIMUM_ENERGY, 1_500.0, None),
        (MissileClass.ICBM, Profile.LOFTED, 950.0, 4_475.0),
    ],
)
def test_an_eastward_and_a_westward_shot_of_the_same_range_take_different_times(
    missile_class: MissileClass, profile: Profile, range_km: float, apogee_km: float | None
) -> None:
    times = []
    for azimuth in (90.0, 270.0):
        flight = fly(
            FlightRequest(
                39.0,
                127.0,
                missile_class,
                profile,
                range_m=range_km * 1e3,
                azimuth_deg=azimuth,
                apogee_m=None if apogee_km is None else apogee_km * 1e3,
            )
        )
        assert flight.ground_range_m == pytest.approx(range_km * 1e3, abs=1_000.0)
        times.append(flight.flight_time_s)
    # the ground under an eastward shot runs ahead of it: seconds for an SRBM, tens for more
    assert times[0] - times[1] > 2.0


def test_the_earths_rotation_moves_a_lofted_icbm_by_hundreds_of_km() -> None:
    flight = fly(HWASONG_15)
    spec = class_spec(MissileClass.ICBM)
    still = integrate_coast(
        flight.burnout_time_s,
        _burnout_state(flight),
        beta_kg_m2=spec.ballistic_coefficient_kg_m2,
        omega_rad_s=0.0,
    )
    lat, lon, _ = from_model(still.points[-1][1][:3])
    assert great_circle_m(*flight.impact_point, lat, lon) > 200e3


# ----------------------------------------------------------------------------- drag


def test_drag_shortens_a_flight_through_the_air() -> None:
    flight = fly(KN_23)
    start = _burnout_state(flight)
    with_air = integrate_coast(
        flight.burnout_time_s, start, beta_kg_m2=class_spec(MissileClass.SRBM).ballistic_coefficient_kg_m2
    )
    vacuum = integrate_coast(flight.burnout_time_s, start, beta_kg_m2=1e30)
    reach = [great_circle_m(*SUNAN, *from_model(arc.points[-1][1][:3])[:2]) for arc in (with_air, vacuum)]
    assert reach[0] < reach[1] - 50e3


def test_drag_slows_the_missile_in_the_last_kilometres() -> None:
    flight = fly(HWASONG_12)
    entry = next(
        t
        for t, s in zip(flight.times_s, flight.states, strict=True)
        if t > flight.burnout_time_s + 60.0 and from_model(s[:3])[2] < 100e3
    )
    # a re-entry vehicle hits the ground far slower than it entered the air
    assert flight.sample_at(flight.flight_time_s).speed_m_s < 0.7 * flight.sample_at(entry).speed_m_s


# ----------------------------------------------------------------------------- solving


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
    end, _ = flight.model_state_at(flight.flight_time_s)
    # with the flight's own ballistic coefficient a prediction lands on the flight's impact
    own = predict_ballistic(pos, vel, beta_kg_m2=class_spec(MissileClass.IRBM).ballistic_coefficient_kg_m2)
    assert own is not None
    assert t0 + own.time_to_impact_s == pytest.approx(flight.flight_time_s, abs=0.5)
    assert math.dist(own.impact_m, end) < 100.0
    # with the predictor's default assumption (another beta) it lands close by
    result = propagate_to_impact(pos, vel)
    assert result is not None
    dt, impact = result
    assert t0 + dt == pytest.approx(flight.flight_time_s, abs=2.0)
    assert math.dist(impact, end) < 1_000.0


def test_predictions_keep_their_path_short() -> None:
    flight = fly(HWASONG_15)
    pos, vel = flight.model_state_at(flight.burnout_time_s + 10.0)
    prediction = predict_ballistic(pos, vel, steps=60)
    assert prediction is not None
    assert len(prediction.path_m) <= 62
    assert prediction.path_m[-1] == prediction.impact_m


# ----------------------------------------------------------------------------- classes


def test_a_published_icbm_flight_beyond_a_reach_estimate_flies_with_a_warning() -> None:
    # Published lofted flights are flown whatever the class's reach estimate says.
    for missile_class in MissileClass:
        flight = fly(
            FlightRequest(
                *SUNAN, missile_class, Profile.LOFTED, range_m=999.2e3, azimuth_deg=95.0, apogee_m=6040.9e3
            )
        )
        assert flight.apogee_m == pytest.approx(6040.9e3, abs=1_000.0)
        assert flight.ground_range_m == pytest.approx(999.2e3, abs=1_000.0)
        if missile_class is not MissileClass.ICBM:
            assert flight.warnings
        assert all("reach estimate" in w for w in flight.warnings)


@pytest.mark.parametrize(
    ("request_", "parameter"),
    [
        (FlightRequest(*SUNAN, MissileClass.SRBM, range_m=2_000e3, azimuth_deg=90.0), "range_km"),
        (
            FlightRequest(*SUNAN, MissileClass.IRBM, range_m=1_000e3, azimuth_deg=90.0, apogee_m=3_000e3),
            "apogee_km",
        ),
    ],
)
def test_requests_beyond_a_class_reach_estimate_fly_with_a_warning(
    request_: FlightRequest, parameter: str
) -> None:
    # these raised beyond_class_reach before: a class describes a missile, not a cap on physics
    flight = fly(request_)
    assert flight.ground_range_m == pytest.approx(request_.range_m, abs=1_000.0)
    assert len(flight.warnings) == 1
    assert parameter in flight.warnings[0]
    assert "reach estimate" in flight.warnings[0]
    assert flight.summary()["warnings"] == list(flight.warnings)


@pytest.mark.parametrize(
    ("range_km", "apogee_km", "expected"),
    [
        (999.2, 6040.9, MissileClass.ICBM),  # Hwasong-17, 18 Nov 2022
        (950.0, 4475.0, MissileClass.ICBM),  # Hwasong-15, 29 Nov 2017
        (787.0, 2111.0, MissileClass.IRBM),  # Hwasong-12, 14 May 2017
        (4600.0, None, MissileClass.IRBM),
        (1200.0, None, MissileClass.MRBM),
        (600.0, 55.0, MissileClass.SRBM),  # KN-23-type
        (800.0, 50.0, MissileClass.SRBM),  # depressed: by its range, not its vacuum energy
    ],
)
def test_the_class_is_inferred_from_the_energy_a_flight_takes(
    range_km: float, apogee_km: float | None, expected: MissileClass
) -> None:
    assert infer_class(range_km * 1e3, None if apogee_km is None else apogee_km * 1e3) is expected


def test_a_request_without_a_class_flies_as_the_inferred_one() -> None:
    flight = fly(FlightRequest(*SUNAN, range_m=999.2e3, azimuth_deg=95.0, apogee_m=6040.9e3))
    assert flight.missile_class is MissileClass.ICBM
    assert flight.summary()["class"] == "ICBM"
    assert flight.summary()["class_inferred"] is True


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
            FlightRequest(*SUNAN, MissileClass.ICBM, range_m=25_000e3, azimuth_deg=90.0),
            "range_too_long",
            "range_km",
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


def test_cli_flies_the_november_2022_lofted_icbm_without_a_class(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--site", "39.2,125.67", "--range-km", "999", "--azimuth-deg", "90", "--apogee-km", "6041"]
    assert main(["trajectory", *argv, "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["class"] == "ICBM"  # not IRBM: the energy of a 6,000 km apogee is an ICBM's
    assert out["class_inferred"] is True
    assert out["flight_time_s"] == pytest.approx(4_135.0, rel=0.05)
    assert "error" not in captured.err
    for line in captured.err.splitlines():
        assert line.startswith("trilink: warning: ")


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
