"""The typed reports: their published JSON Schemas are current, and they survive a JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumers.ledger import AllyReport
from tests.pipeline.support import ally_report, run_report
from trilink.pipeline import RunReport, render_summary, summarize
from trilink.report_schemas import DOCS_SCHEMAS_DIR, schema_files, stale_schemas, write_schemas

pytestmark = pytest.mark.unit


def test_published_schemas_are_current() -> None:
    stale = stale_schemas(DOCS_SCHEMAS_DIR)
    assert not stale, f"regenerate with `trilink report-schemas`: {stale}"


def test_schema_check_sees_a_stale_file(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert stale_schemas(tmp_path) == []
    (tmp_path / "run-report.schema.json").write_text("{}\n")
    assert stale_schemas(tmp_path) == ["run-report.schema.json"]
    (tmp_path / "ally-report.schema.json").unlink()
    assert stale_schemas(tmp_path) == ["ally-report.schema.json", "run-report.schema.json"]


def test_schemas_describe_the_serialized_names() -> None:
    run = json.loads(schema_files()["run-report.schema.json"])
    launch = run["$defs"]["LaunchWarnings"]
    assert "class" in launch["properties"] and "missile_class" not in launch["properties"]
    ally = json.loads(schema_files()["ally-report.schema.json"])
    assert set(ally["required"]) >= {"ally", "counts", "latency", "launches", "error"}


def test_run_report_round_trips_through_json() -> None:
    report = run_report()
    text = report.model_dump_json()
    assert json.loads(text)["launches"][0]["class"] == "SRBM"
    assert RunReport.model_validate_json(text) == report


def test_ally_report_rejects_unknown_fields() -> None:
    body = ally_report("KR", 1, 0) | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        AllyReport.model_validate(body)


def test_summary_per_ally() -> None:
    rows = {r.ally: r for r in summarize(run_report())}
    us, jp = rows["US"], rows["JP"]
    assert (us.delivered, us.expected, us.withheld) == (12, 12, 0)
    assert (jp.delivered, jp.expected, jp.withheld) == (10, 10, 2)
    assert us.end_to_end_p50_ms == 1.5 and us.end_to_end_p99_ms == 4.0
    # first warning = sensor share + pipeline share: US 8.003 s and 10.005 s, JP only L2
    assert us.first_warning_median_s == pytest.approx(9.004)
    assert us.first_warning_worst_s == pytest.approx(10.005)
    assert (us.launches_warned, jp.launches_warned, jp.launches) == (2, 1, 2)
    text = render_summary(list(rows.values()))
    assert text.splitlines()[0].startswith("ally")
    assert "1/2" in text.splitlines()[2] and "2/2" in text.splitlines()[1]
