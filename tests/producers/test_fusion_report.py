"""``trilink scenario report``: the truth against each nation's fused estimate, as a table, a PNG
and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.scenario import load_scenario
from producers.scenario_report import ScenarioReport, build_report, normalised_miss, render_table
from schemas.models import GeoPoint, ImpactPrediction, Nation, UncertaintyEllipse
from schemas.samples import sample_event
from trilink.cli import main

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_command_writes_a_table_a_png_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, data = tmp_path / "r.png", tmp_path / "r.json"
    assert main(["scenario", "report", "srbm_toward_korea", "--png", str(png), "--json", str(data)]) == 0
    out = capsys.readouterr().out
    assert "launch L1 (SRBM)" in out and "boost-phase fused predictions more than 3 sigma off" in out
    assert png.read_bytes()[:8] == PNG_MAGIC
    report = ScenarioReport.model_validate(json.loads(data.read_text(encoding="utf-8")))
    assert [launch.launch_id for launch in report.launches] == ["L1", "L2"]
    for launch in report.launches:
        assert launch.sensor_detection_s  # per sensor
        assert set(launch.nation_detection_s) == set(Nation)  # per nation
        assert launch.predictions and all(p.semi_major_m > 0 for p in launch.predictions)
        # the scenario aims at South Korea: Korea's authority alerts, with its own areas only
        assert {a.nation for a in launch.alerts} == {Nation.KR}
        assert all(area.startswith("KR_") for a in launch.alerts for area in a.areas)


def test_errors_shrink_and_the_table_names_every_nation() -> None:
    report = build_report(load_scenario("single_srbm"))
    (launch,) = report.launches
    jp = [p for p in launch.predictions if p.nation is Nation.JP]
    assert jp[-1].error_m < jp[0].error_m
    assert jp[-1].error_m < 5_000.0
    table = render_table(report)
    for nation in Nation:
        assert f"\n  {nation.value} " in table


def test_normalised_miss_is_in_ellipse_units() -> None:
    event = sample_event()
    prediction = ImpactPrediction(
        impact_point=GeoPoint(lat_deg=40.0, lon_deg=135.0, alt_m=0.0),
        impact_time=event.header.emitted_at,
        ellipse=UncertaintyEllipse(semi_major_m=10_000.0, semi_minor_m=1_000.0, orientation_deg=0.0),
    )
    # 20 km due north: two sigmas along the major axis; 2 km due east: two along the minor
    north = normalised_miss(prediction, (40.0 + 20.0 / 111.195, 135.0))
    assert north[1] == pytest.approx(2.0, rel=0.01)
    east = normalised_miss(prediction, (40.0, 135.0 + 2.0 / (111.195 * 0.76604)))
    assert east[1] == pytest.approx(2.0, rel=0.02)
