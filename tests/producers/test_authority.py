"""A nation's alert authority: its own areas only, one alert per change, Japan's EEZ notice."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from producers.areas import default_areas
from producers.authority import AlertAuthority
from producers.fusion import FusedDraft
from producers.geometry import destination
from producers.scenario import load_scenario, simulate
from schemas.models import (
    Alert,
    AlertLevel,
    AlertMsgType,
    EnuVelocity,
    FlightPhase,
    GeoPoint,
    ImpactPrediction,
    MissileClass,
    Nation,
    TrackUpdate,
    UncertaintyEllipse,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _authority(nation: Nation) -> AlertAuthority:
    return AlertAuthority(nation, areas=default_areas(), exercise=False, rng=random.Random(1))


def _prediction(
    impact: list[str],
    over: list[str] = (),
    cls: MissileClass = MissileClass.IRBM,  # type: ignore[assignment]
) -> ImpactPrediction:
    return ImpactPrediction(
        impact_point=GeoPoint(lat_deg=40.0, lon_deg=140.0, alt_m=0.0),
        impact_time=T0 + timedelta(minutes=10),
        launch_time=T0,
        ellipse=UncertaintyEllipse(semi_major_m=5_000.0, semi_minor_m=2_000.0, orientation_deg=90.0),
        impact_areas=impact,
        overflown_areas=list(over),
        missile_class=cls,
    )


def _fused(payload: object, t: float, nation: Nation = Nation.JP, key: str = "JP-F0001") -> FusedDraft:
    return FusedDraft(t, t, f"{nation.value}-FUSION", nation, key, uuid.uuid4(), payload)  # type: ignore[arg-type]


def _alerts(authority: AlertAuthority, predictions: list[ImpactPrediction], **kw: object) -> list[Alert]:
    out = []
    for i, p in enumerate(predictions):
        for d in authority.consider(_fused(p, 10.0 * i, **kw)):  # type: ignore[arg-type]
            assert isinstance(d.payload, Alert)
            assert d.source_id == f"{authority.nation.value}-ALERT"
            out.append(d.payload)
    return out


def test_one_alert_per_area_change_not_per_report() -> None:
    jp = _authority(Nation.JP)
    over = _prediction([], ["JP_TERRITORY"])
    alerts = _alerts(jp, [over] * 12)  # twelve fused predictions saying the same thing
    assert [(a.msg_type, a.level, a.affected_areas) for a in alerts] == [
        (AlertMsgType.ALERT, AlertLevel.EMERGENCY, ["JP_TERRITORY"])
    ]
    assert alerts[0].missile_class is MissileClass.IRBM


def test_a_change_needs_two_predictions_in_a_row_and_updates_reference_the_alert() -> None:
    kr = _authority(Nation.KR)
    eez, land = _prediction(["KR_EEZ"]), _prediction(["KR_EEZ", "KR_TERRITORY"])
    sequence = [eez, land, eez, land, land, land, _prediction([]), _prediction([])]
    alerts = _alerts(kr, sequence, nation=Nation.KR, key="KR-F0001")
    assert [a.msg_type for a in alerts] == [AlertMsgType.ALERT, AlertMsgType.UPDATE, AlertMsgType.CANCEL]
    assert alerts[0].level is AlertLevel.WARNING  # an impact in its EEZ
    assert alerts[1].level is AlertLevel.EMERGENCY and alerts[1].affected_areas == ["KR_EEZ", "KR_TERRITORY"]
    assert alerts[2].affected_areas == ["KR_EEZ", "KR_TERRITORY"]
    assert len(alerts[1].references) == 1 and len(alerts[2].references) == 1


def test_a_nation_alerts_only_for_its_own_areas_and_its_own_picture() -> None:
    kr, us = _authority(Nation.KR), _authority(Nation.US)
    japan_only = _prediction(["JP_EEZ"], ["JP_TERRITORY"])
    assert _alerts(kr, [japan_only] * 3, nation=Nation.KR, key="KR-F0001") == []
    assert _alerts(us, [japan_only] * 3, nation=Nation.US, key="US-F0001") == []
    # another nation's fused products are not this authority's picture
    assert _alerts(_authority(Nation.JP), [japan_only] * 3, nation=Nation.KR, key="KR-F0001") == []


def test_japan_announces_eez_impacts_apart_from_j_alert() -> None:
    jp = _authority(Nation.JP)
    alerts = _alerts(jp, [_prediction(["JP_EEZ"])] * 3)
    assert len(alerts) == 1
    notice = alerts[0]
    assert notice.affected_areas == ["JP_EEZ"] and notice.level is AlertLevel.WARNING
    assert notice.text.startswith("EEZ notice")
    # an overflight with an impact in the EEZ: a J-Alert for the territory and the EEZ notice
    both = _alerts(_authority(Nation.JP), [_prediction(["JP_EEZ"], ["JP_TERRITORY"])])
    assert sorted((a.affected_areas[0], a.level) for a in both) == [
        ("JP_EEZ", AlertLevel.WARNING),
        ("JP_TERRITORY", AlertLevel.EMERGENCY),
    ]
    # while the impact is still uncertain (a burning motor), no EEZ notice yet
    vague = _prediction(["JP_EEZ"]).model_copy(
        update={
            "ellipse": UncertaintyEllipse(semi_major_m=900_000.0, semi_minor_m=90_000.0, orientation_deg=0.0)
        }
    )
    assert _alerts(_authority(Nation.JP), [vague] * 3) == []
    # an impact on land: one J-Alert, no separate EEZ notice
    land = _alerts(_authority(Nation.JP), [_prediction(["JP_EEZ", "JP_TERRITORY"])])
    assert [a.affected_areas for a in land] == [["JP_TERRITORY"]]


def test_an_overflight_that_happened_is_not_cancelled() -> None:
    jp = _authority(Nation.JP)
    assert len(_alerts(jp, [_prediction([], ["JP_TERRITORY"])])) == 1
    over_japan = TrackUpdate(
        position=GeoPoint(lat_deg=40.0, lon_deg=140.5, alt_m=900_000.0),  # above northern Honshu
        velocity=EnuVelocity(east_m_s=4_000.0, north_m_s=0.0, up_m_s=0.0),
        position_sigma_m=100.0,
        velocity_sigma_m_s=1.0,
        phase=FlightPhase.MIDCOURSE,
        track_quality=1.0,
    )
    assert jp.consider(_fused(over_japan, 15.0)) == []
    # past Japan: the rest of the path no longer crosses it, yet no CANCEL follows
    assert _alerts(jp, [_prediction([])] * 4) == []


#: Impacts Japan's defence ministry placed relative to an island: (bearing origin lat, lon),
#: azimuth, km, and whether it announced them inside Japan's EEZ.
ANNOUNCED = {
    "2022-11-18 Hwasong-17": ((41.51, 139.37), 270.0, 210.0, True),  # west of Oshima-Oshima
    "2023-02-18 Hwasong-15": ((41.51, 139.37), 270.0, 200.0, True),
    "2023-07-12 Hwasong-18": ((42.15, 139.47), 270.0, 250.0, False),  # west of Okushiri
}


@pytest.mark.parametrize("name", list(ANNOUNCED))
def test_the_jp_eez_holds_the_announced_impacts(name: str) -> None:
    (lat, lon), azimuth, km, inside = ANNOUNCED[name]
    point = destination(lat, lon, azimuth, km * 1e3)
    assert ("JP_EEZ" in default_areas().areas_at(point)) is inside, name


def test_a_scenario_alerts_once_per_nation_not_once_per_sensor() -> None:
    events = list(simulate(load_scenario("irbm_over_japan")))
    alerts = [e.event for e in events if isinstance(e.event.payload, Alert)]
    assert alerts
    assert {a.header.sensor_id for a in alerts} == {"JP-ALERT"}  # the only nation it touches
    for a in alerts:
        assert isinstance(a.payload, Alert)
        assert all(area.startswith("JP_") for area in a.payload.affected_areas)
    # one missile: a handful of decisions (alert, update, EEZ notice...), not one per sensor report
    assert len(alerts) <= 6
    first = [a for a in alerts if isinstance(a.payload, Alert) and a.payload.msg_type is AlertMsgType.ALERT]
    assert any("JP_TERRITORY" in a.payload.affected_areas for a in first if isinstance(a.payload, Alert))
