"""Sensor catalog, areas and sharing policy: shipped files load, bad files fail with paths."""

from __future__ import annotations

import tomllib

import pytest

from producers.areas import default_areas
from producers.catalog import SENSORS_FILE, default_catalog, parse_catalog
from producers.errors import CatalogError
from schemas.models import Nation
from trilink.errors import ConfigError
from trilink.policy import POLICY_FILE, PolicyError, default_policy, parse_policy

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


def test_default_policy_follows_the_public_hub_topology() -> None:
    policy = default_policy()
    assert policy.releasable_to(Nation.US) == [Nation.US, Nation.JP, Nation.KR]
    assert policy.releasable_to(Nation.JP) == [Nation.US, Nation.JP, Nation.KR]
    assert policy.releasable_to(Nation.KR) == [Nation.US, Nation.JP, Nation.KR]
    assert policy.relayed_by_hub(Nation.JP, Nation.KR)
    assert policy.relayed_by_hub(Nation.KR, Nation.JP)
    assert not policy.relayed_by_hub(Nation.US, Nation.KR)


def test_without_hub_relay_japan_and_korea_do_not_see_each_other() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8").replace("hub_relay = true", "hub_relay = false")
    policy = parse_policy(text)
    assert policy.releasable_to(Nation.JP) == [Nation.US, Nation.JP]
    assert policy.releasable_to(Nation.KR) == [Nation.US, Nation.KR]
    assert not policy.may_receive(Nation.KR, Nation.JP)
    assert policy.may_receive(Nation.US, Nation.KR)


def test_policy_must_let_a_nation_see_its_own_data() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8").replace('direct = ["JP", "US"]', 'direct = ["US"]')
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert "nations.JP.direct" in info.value.message
