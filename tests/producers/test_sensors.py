"""Sensor geometry, event streams, scenario validation and determinism."""

from __future__ import annotations

import collections
import tomllib
from typing import Any

import pytest

from producers.catalog import SensorKind, default_catalog
from producers.errors import ScenarioError
from producers.geometry import horizon_range_m, to_model
from producers.scenario import (
    SCENARIO_DIR,
    ScheduledEvent,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
    simulate,
)
from producers.sensors import SensorModel, track_sigmas
from producers.trajectory import FlightRequest, MissileClass, Profile, fly
from schemas.codec import decode_event, encode_event
from schemas.models import (
    Alert,
    AlertMsgType,
    EventKind,
    ImpactPrediction,
    LaunchDetection,
    Nation,
    TrackEnd,
    TrackUpdate,
)
from trilink.errors import SimulationError

pytestmark = pytest.mark.unit


def _radar(sensor_id: str) -> SensorModel:
    return SensorModel(default_catalog().get(sensor_id))


def test_a_radar_cannot_see_below_its_horizon() -> None:
    radar = _radar("us-tpy2-shariki")  # faces west, 2,000 km instrumented range
    spec = radar.spec
    # a point 600 km west at 1 km altitude: well inside range, but under the curvature
    far = to_model(spec.lat_deg, spec.lon_deg - 7.1, 1_000.0)
    assert horizon_range_m(spec.alt_m, 1_000.0) < 600e3
    assert not radar.sees_position(far)
    # the same point 300 km up is above the horizon and seen
    assert radar.sees_position(to_model(spec.lat_deg, spec.lon_deg - 7.1, 300e3))


def test_a_radar_cannot_see_outside_its_sector_or_range() -> None:
    radar = _radar("us-tpy2-shariki")
    spec = radar.spec
    behind = to_model(spec.lat_deg, spec.lon_deg + 4.0, 300e3)  # east: outside the west sector
    assert not radar.sees_position(behind)
    beyond = to_model(spec.lat_deg, spec.lon_deg - 30.0, 1_500e3)  # ~2,500 km away
    assert not radar.sees_position(beyond)


def test_space_infrared_sees_only_the_burning_motor() -> None:
    ir = SensorModel(default_catalog().get("us-sbirs-geo-east"))
    flight = fly(
        FlightRequest(
            39.2, 125.67, MissileClass.IRBM, Profile.LOFTED, range_m=787e3, azimuth_deg=95.0, apogee_m=2_111e3
        )
    )
    assert ir.sees(flight, flight.burnout_time_s - 5.0)
    assert not ir.sees(flight, flight.burnout_time_s + 5.0)
    assert not ir.sees(flight, 1.0)  # still under the clouds
    first = next(t for t in range(200) if ir.sees(flight, float(t)))
    assert flight.sample_at(first).alt_m >= ir.spec.min_target_alt_m > flight.sample_at(first - 1).alt_m


def test_track_errors_shrink_as_the_track_matures() -> None:
    p1, v2 = track_sigmas(100.0, 2.0, 1)[0], track_sigmas(100.0, 2.0, 2)[1]
    p20, v20 = track_sigmas(100.0, 2.0, 20)
    assert p20 < p1
    assert v20 < v2


@pytest.fixture(scope="module")
def single() -> list[ScheduledEvent]:
    return list(simulate(load_scenario("single_srbm")))


def test_events_come_in_emit_order_with_per_sensor_sequences(single: list[ScheduledEvent]) -> None:
    offsets = [e.emit_offset_s for e in single]
    assert offsets == sorted(offsets)
    per_sensor: dict[str, list[int]] = collections.defaultdict(list)
    for e in single:
        per_sensor[e.event.header.sensor_id].append(e.event.header.sequence)
    for seqs in per_sensor.values():
        assert seqs == list(range(len(seqs)))
    for e in single:
        assert e.event.header.measured_at <= e.event.header.emitted_at
        assert e.measured_offset_s <= e.emit_offset_s


def test_each_tracking_sensor_tells_a_complete_story(single: list[ScheduledEvent]) -> None:
    by_sensor: dict[str, list[Any]] = collections.defaultdict(list)
    keys = set()
    for e in single:
        if e.event.kind is not EventKind.SENSOR_STATUS and e.event.header.correlation_key.startswith("TRK-"):
            by_sensor[e.event.header.sensor_id].append(e.event.payload)
            keys.add(e.event.header.correlation_key)
    assert keys == {"TRK-single-srbm-L1"}
    assert len(by_sensor) >= 3
    catalog = default_catalog()
    ir_trackers = 0
    for sensor_id, payloads in by_sensor.items():
        assert isinstance(payloads[0], LaunchDetection)
        assert sum(isinstance(p, LaunchDetection) for p in payloads) == 1
        tracked = any(isinstance(p, TrackUpdate) for p in payloads)
        if catalog.get(sensor_id).kind is SensorKind.SPACE_IR:
            # the stereo pair: both announce the launch, one of them reports the stereo track
            ir_trackers += tracked
        else:
            assert tracked, sensor_id
        assert isinstance(payloads[-1], TrackEnd)
    assert ir_trackers == 1


def test_impact_predictions_converge_on_the_true_impact(single: list[ScheduledEvent]) -> None:
    scenario = load_scenario("single_srbm")
    truth = fly(scenario.launches[0].request())
    lat, lon = truth.impact_point
    predictions = [e.event.payload for e in single if isinstance(e.event.payload, ImpactPrediction)]
    assert predictions
    from producers.geometry import great_circle_m

    last = predictions[-1]
    err_m = great_circle_m(last.impact_point.lat_deg, last.impact_point.lon_deg, lat, lon)
    assert err_m < 3 * last.ellipse.semi_major_m + 1_000.0
    assert predictions[-1].ellipse.semi_major_m < predictions[0].ellipse.semi_major_m


def test_releasability_follows_the_policy(single: list[ScheduledEvent]) -> None:
    for e in single:
        header = e.event.header
        assert header.sensor_nation in header.releasable_to
        if header.sensor_nation is Nation.US:
            assert header.releasable_to == [Nation.US, Nation.JP, Nation.KR]
        elif e.event.kind is EventKind.SENSOR_STATUS:  # a national product: not relayed by the hub
            assert header.releasable_to == sorted({header.sensor_nation, Nation.US}, key=list(Nation).index)
        else:
            assert header.releasable_to == [Nation.US, Nation.JP, Nation.KR]


def test_events_survive_the_wire_codec(single: list[ScheduledEvent]) -> None:
    for e in single[:200]:
        assert decode_event(encode_event(e.event)) == e.event


def test_an_overflight_of_japan_raises_territory_alerts() -> None:
    # Sensors no longer alert (issue #12): each nation's alert authority does, for its own areas.
    events = list(simulate(load_scenario("irbm_over_japan")))
    sources = {e.event.header.sensor_id for e in events if isinstance(e.event.payload, Alert)}
    assert sources == {"JP-ALERT"}
    alerts = [e.event.payload for e in events if isinstance(e.event.payload, Alert)]
    assert any("JP_TERRITORY" in a.affected_areas for a in alerts)
    issued = {a.msg_type for a in alerts}
    assert AlertMsgType.ALERT in issued
    for a in alerts:
        if a.msg_type is not AlertMsgType.ALERT:
            assert a.references


def test_same_seed_same_events_other_seed_other_events() -> None:
    scenario = load_scenario("single_srbm")
    first = [encode_event(e.event) for e in simulate(scenario)]
    again = [encode_event(e.event) for e in simulate(scenario)]
    assert first == again
    other = [encode_event(e.event) for e in simulate(scenario.model_copy(update={"seed": 1}))]
    assert other != first


def test_shipped_scenarios_load_and_salvo_is_big() -> None:
    names = {p.stem for p in shipped_scenarios()}
    assert {"single_srbm", "lofted_icbm", "irbm_over_japan", "salvo"} <= names
    salvo = load_scenario("salvo")
    assert len(salvo.launches) >= 20
    offsets = [launch.offset_s for launch in salvo.launches]
    assert max(offsets) - min(offsets) <= 300.0


def _doc() -> dict[str, Any]:
    return tomllib.loads((SCENARIO_DIR / "single_srbm.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["launch"][0].update(apogee_km=-5.0), "launch[0].apogee_km"),
        (lambda d: d["launch"][0].update({"class": "XRBM"}), "launch[0].class"),
        (lambda d: d["launch"][0].pop("azimuth_deg"), "launch[0]"),
        (lambda d: d.update(seed="abc"), "seed"),
        (lambda d: d.update(bogus=1), "bogus"),
        (lambda d: d.update(duration_s=10.0), "launches at or after duration_s"),
    ],
)
def test_scenario_errors_name_the_field_path(mutate: Any, path: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc)
    assert path in info.value.message


def test_unknown_sensor_is_named() -> None:
    doc = _doc()
    doc["sensors"] = ["us-tpy2-shariki", "no-such-radar"]
    with pytest.raises(ScenarioError) as info:
        list(simulate(parse_scenario(doc)))
    assert "sensors[1]" in info.value.message


def test_impossible_launch_is_a_simulation_error_naming_the_launch() -> None:
    doc = _doc()
    doc["launch"][0]["range_km"] = 2_000.0
    with pytest.raises(SimulationError) as info:
        list(simulate(parse_scenario(doc)))
    assert "launch[0]" in info.value.message
    assert "range_km" in info.value.message
