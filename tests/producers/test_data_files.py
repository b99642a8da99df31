"""Sensor catalog, areas and sharing policy: shipped files load, bad files fail with paths."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.areas import default_areas
from producers.catalog import SENSORS_FILE, default_catalog, parse_catalog
from producers.errors import CatalogError
from producers.scenario import load_scenario, simulate, solve_flights
from schemas.models import EventKind, ImpactPrediction, Nation
from trilink.errors import ConfigError
from trilink.policy import POLICY_FILE, PolicyError, SharingPolicy, default_policy, parse_policy

pytestmark = pytest.mark.unit


def test_shipped_catalog_has_the_public_sensor_families() -> None:
    catalog = default_catalog()
    ids = set(catalog.ids)
    for site in ("shariki", "kyogamisaki", "seongju"):
        assert f"us-tpy2-{site}" in ids
    for site in ("shimokoshiki", "sado", "ominato", "yozadake"):
        assert f"jp-fps5-{site}" in ids
    assert {"us-aegis-soj", "jp-aegis-soj", "kr-aegis-eastsea"} <= ids
    assert any(i.startswith("kr-greenpine") for i in ids)
    assert any(s.kind == "space_ir" for s in catalog.sensors)


def _document() -> dict[str, object]:
    return tomllib.loads(SENSORS_FILE.read_text(encoding="utf-8"))


def test_an_unsourced_figure_is_refused_with_its_path() -> None:
    doc = _document()
    sensors = doc["sensor"]
    assert isinstance(sensors, list)
    sensors[2]["assumptions"].remove("noise_sigma_m")
    with pytest.raises(CatalogError) as info:
        parse_catalog(doc)
    assert "sensor[2]" in info.value.message
    assert "noise_sigma_m" in info.value.message


def test_an_out_of_range_value_is_refused_with_its_field_path() -> None:
    doc = _document()
    sensors = doc["sensor"]
    assert isinstance(sensors, list)
    sensors[4]["update_interval_s"] = -1.0
    with pytest.raises(ConfigError) as info:
        parse_catalog(doc)
    assert "sensor[4].update_interval_s" in info.value.message


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((35.68, 139.76), {"JP_TERRITORY", "JP_EEZ"}),  # Tokyo
        ((37.56, 126.97), {"KR_TERRITORY", "KR_EEZ"}),  # Seoul
        ((39.0, 138.5), {"JP_EEZ"}),  # sea off Niigata/Yamagata
        ((39.2, 125.67), set()),  # Sunan
        ((40.6, 133.0), set()),  # mid Sea of Japan
    ],
)
def test_area_membership(point: tuple[float, float], expected: set[str]) -> None:
    assert set(default_areas().areas_at(point)) == expected


def test_a_track_over_northern_japan_touches_its_territory() -> None:
    areas = default_areas()
    # endpoints both outside every area: only the crossing test can find the overflight
    track = [(40.3, 133.0), (40.9, 150.5)]
    assert areas.areas_at(track[0]) == []
    assert areas.areas_at(track[1]) == []
    assert "JP_TERRITORY" in areas.areas_touched(track)


def test_a_track_across_the_antimeridian_does_not_sweep_the_map() -> None:
    assert default_areas().areas_touched([(40.0, 178.0), (40.0, -178.0)]) == []


ALL_NATIONS = [Nation.US, Nation.JP, Nation.KR]
THREE_ITEMS = (  # launch point, trajectory (and its end), impact point: relayed by the hub
    EventKind.LAUNCH_DETECTION,
    EventKind.TRACK_UPDATE,
    EventKind.IMPACT_PREDICTION,
    EventKind.TRACK_END,
)
NATIONAL = (EventKind.ALERT, EventKind.SENSOR_STATUS)  # bilateral with the US only


def test_default_policy_follows_the_public_hub_topology() -> None:
    policy = default_policy()
    for kind in EventKind:
        assert policy.releasable_to(Nation.US, kind) == ALL_NATIONS, kind
    for kind in THREE_ITEMS:
        assert policy.releasable_to(Nation.JP, kind) == ALL_NATIONS, kind
        assert policy.releasable_to(Nation.KR, kind) == ALL_NATIONS, kind
        assert policy.relayed_by_hub(Nation.JP, Nation.KR, kind)
        assert policy.relayed_by_hub(Nation.KR, Nation.JP, kind)
        assert not policy.relayed_by_hub(Nation.US, Nation.KR, kind)
    for kind in NATIONAL:
        assert policy.releasable_to(Nation.JP, kind) == [Nation.US, Nation.JP], kind
        assert policy.releasable_to(Nation.KR, kind) == [Nation.US, Nation.KR], kind
        assert not policy.relayed_by_hub(Nation.JP, Nation.KR, kind)
        assert not policy.may_receive(Nation.JP, Nation.KR, kind)
        assert not policy.may_receive(Nation.KR, Nation.JP, kind)


def test_a_japanese_alert_reaches_the_us_and_japan_but_not_korea() -> None:
    policy = default_policy()
    assert policy.may_receive(Nation.JP, Nation.US, EventKind.ALERT)
    assert policy.may_receive(Nation.JP, Nation.JP, EventKind.ALERT)
    assert not policy.may_receive(Nation.JP, Nation.KR, EventKind.ALERT)


def test_without_hub_relay_japan_and_korea_do_not_see_each_other() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8").replace("hub_relay = true", "hub_relay = false")
    policy = parse_policy(text)
    for kind in EventKind:
        assert policy.releasable_to(Nation.JP, kind) == [Nation.US, Nation.JP]
        assert policy.releasable_to(Nation.KR, kind) == [Nation.US, Nation.KR]
        assert not policy.may_receive(Nation.KR, Nation.JP, kind)
        assert policy.may_receive(Nation.US, Nation.KR, kind)


def test_a_nation_may_override_the_relayed_kinds() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8").replace(
        'via_hub = ["KR"]', 'via_hub = ["KR"]\nrelayed_kinds = ["launch_detection"]'
    )
    policy = parse_policy(text)
    assert policy.releasable_to(Nation.JP, EventKind.LAUNCH_DETECTION) == ALL_NATIONS
    assert policy.releasable_to(Nation.JP, EventKind.TRACK_UPDATE) == [Nation.US, Nation.JP]
    assert policy.releasable_to(Nation.KR, EventKind.TRACK_UPDATE) == ALL_NATIONS  # KR keeps the default


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("relayed_kinds = [", "relayed_kindz = [", "relayed_kinds: Field required"),
        ('"track_end"]', '"track_end", "radar_plot"]', "relayed_kinds.4: Input should be"),
        ('"track_end"]', '"track_end", "track_update"]', "relayed_kinds repeats ['track_update']"),
        ('direct = ["US", "JP", "KR"]', 'direct = ["US", "JP", "KR"]\nrelayed_kinds = []', "nations.US.relayed_kinds has no effect"),
        ('via_hub = ["KR"]', 'via_hub = ["KR", "KR"]', "nations.JP.via_hub repeats ['KR']"),
        ('via_hub = ["KR"]', 'via_hub = ["KR"]\nrelayed_kinds = ["alert", "alert"]', "nations.JP.relayed_kinds repeats ['alert']"),
        ('direct = ["JP", "US"]', 'direct = ["JP"]', "nations.JP.via_hub needs the hub US"),
    ],
)  # fmt: skip
def test_bad_policy_is_refused_with_its_path(old: str, new: str, needle: str) -> None:
    shipped = POLICY_FILE.read_text(encoding="utf-8")
    assert old in shipped
    with pytest.raises(PolicyError) as info:
        parse_policy(shipped.replace(old, new, 1))
    assert info.value.reason == "invalid_policy"
    assert needle in info.value.message, info.value.message


# A policy document drawn at random: any relay flag, any relayed kinds, any per-nation override,
# any extra direct recipients. The oracle below restates the rule from the file's comments.
_kind_lists = st.lists(st.sampled_from(list(EventKind)), unique=True)


@st.composite
def _policies(draw: st.DrawFn) -> dict[str, object]:
    nations: dict[str, dict[str, object]] = {}
    for nation in ALL_NATIONS:
        others = [n for n in ALL_NATIONS if n not in (nation, Nation.US)]
        extra_direct = draw(st.lists(st.sampled_from(others), unique=True)) if nation is not Nation.US else []
        direct = sorted({nation, Nation.US, *extra_direct}, key=ALL_NATIONS.index)
        via_hub = [n for n in others if n not in direct and draw(st.booleans())]
        rule: dict[str, object] = {"direct": [n.value for n in direct], "via_hub": [n.value for n in via_hub]}
        relay_own_kinds = bool(via_hub) and draw(st.booleans())  # (`via_hub and draw()` confuses mypy)
        if relay_own_kinds:
            rule["relayed_kinds"] = [k.value for k in draw(_kind_lists)]
        nations[nation.value] = rule
    return {
        "hub": "US",
        "hub_relay": draw(st.booleans()),
        "relayed_kinds": [k.value for k in draw(_kind_lists)],
        "nations": nations,
    }


def _allowed(doc: dict[str, Any], sensor: Nation, ally: Nation, kind: EventKind) -> bool:
    rule = doc["nations"][sensor.value]
    relayed = rule.get("relayed_kinds", doc["relayed_kinds"])
    if ally.value in rule["direct"]:
        return True
    return bool(doc["hub_relay"]) and ally.value in rule["via_hub"] and kind.value in relayed


@settings(max_examples=300, deadline=None)
@given(doc=_policies(), sensor=st.sampled_from(ALL_NATIONS), kind=st.sampled_from(list(EventKind)))
def test_releasable_to_never_lists_a_forbidden_ally(
    doc: dict[str, Any], sensor: Nation, kind: EventKind
) -> None:
    policy = SharingPolicy.model_validate(doc)
    releasable = policy.releasable_to(sensor, kind)
    assert sensor in releasable and Nation.US in releasable
    assert releasable == sorted(releasable, key=ALL_NATIONS.index)
    for ally in ALL_NATIONS:
        assert (ally in releasable) == _allowed(doc, sensor, ally, kind), (ally, doc)
        assert policy.may_receive(sensor, ally, kind) == (ally in releasable)


@pytest.mark.parametrize("hub_relay", [True, False])
@pytest.mark.parametrize("scenario", ["single_srbm", "irbm_over_japan"])
def test_simulated_events_are_marked_only_for_allies_the_policy_allows(
    scenario: str, hub_relay: bool
) -> None:
    text = POLICY_FILE.read_text(encoding="utf-8")
    policy = parse_policy(text if hub_relay else text.replace("hub_relay = true", "hub_relay = false"))
    seen: set[tuple[Nation, EventKind]] = set()
    for item in simulate(load_scenario(scenario), policy=policy):
        header, kind = item.event.header, item.event.kind
        seen.add((header.sensor_nation, kind))
        assert header.releasable_to == policy.releasable_to(header.sensor_nation, kind)
        if header.sensor_nation is not Nation.US and (kind in NATIONAL or not hub_relay):
            third = Nation.KR if header.sensor_nation is Nation.JP else Nation.JP
            assert third not in header.releasable_to, (header, kind)
    assert (Nation.JP, EventKind.SENSOR_STATUS) in seen and (Nation.KR, EventKind.SENSOR_STATUS) in seen


def test_policy_must_let_a_nation_see_its_own_data() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8").replace('direct = ["JP", "US"]', 'direct = ["US"]')
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert "nations.JP.direct" in info.value.message


def test_space_infrared_sensors_measure_lines_of_sight_only() -> None:
    doc = _document()
    sensors = doc["sensor"]
    assert isinstance(sensors, list)
    index = next(i for i, s in enumerate(sensors) if s["kind"] == "space_ir")
    sensors[index]["noise_sigma_m"] = 1_000.0
    with pytest.raises(CatalogError) as info:
        parse_catalog(doc)
    assert f"sensor[{index}]" in info.value.message
    assert "los_sigma_urad" in info.value.message
    ir = [s for s in default_catalog().sensors if s.kind == "space_ir"]
    assert len(ir) >= 2  # a stereo pair
    assert all(s.los_sigma_urad > 0.0 and s.noise_sigma_m == 0.0 for s in ir)


#: The real lofted ICBM flights: scenario -> published flight time, s (KCNA figures, cited in the
#: scenario files).
PUBLISHED_FLIGHTS = {
    "hwasong17_2022_11_18": 4_135.0,
    "hwasong15_2023_02_18": 4_015.0,
    "hwasong18_2023_07_12": 4_491.0,
}


@pytest.mark.parametrize(("scenario", "flight_time_s"), sorted(PUBLISHED_FLIGHTS.items()))
def test_real_icbm_flights_simulate_with_their_published_flight_times(
    scenario: str, flight_time_s: float
) -> None:
    loaded = load_scenario(scenario)
    (launch,) = loaded.launches
    flight = solve_flights(loaded)[launch.id]
    assert flight.flight_time_s == pytest.approx(flight_time_s, rel=0.05)
    assert loaded.duration_s > launch.offset_s + flight.flight_time_s
    events = list(simulate(loaded))
    tracked = {e.event.header.sensor_id for e in events if e.event.kind is EventKind.TRACK_UPDATE}
    assert len(tracked) >= 5
    ends = [e for e in events if e.event.kind is EventKind.TRACK_END]
    assert ends and max(e.emit_offset_s for e in ends) > launch.offset_s + 0.95 * flight_time_s


@pytest.mark.parametrize(("scenario", "in_eez"), [("hwasong17_2022_11_18", True), ("hwasong15_2023_02_18", True), ("hwasong18_2023_07_12", False)])  # fmt: skip
def test_real_icbm_impacts_fall_where_japan_announced_them(scenario: str, in_eez: bool) -> None:
    loaded = load_scenario(scenario)
    flight = solve_flights(loaded)[loaded.launches[0].id]
    assert ("JP_EEZ" in default_areas().areas_at(flight.impact_point)) is in_eez


def test_a_scenario_aims_at_south_korea() -> None:
    loaded = load_scenario("srbm_toward_korea")
    flights = solve_flights(loaded)
    for launch in loaded.launches:
        assert "KR_TERRITORY" in default_areas().areas_at(flights[launch.id].impact_point), launch.id
    predicted = [e.event.payload for e in simulate(loaded) if isinstance(e.event.payload, ImpactPrediction)]
    assert any("KR_TERRITORY" in p.impact_areas for p in predicted)
