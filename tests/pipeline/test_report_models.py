"""The typed reports: their published JSON Schemas are current, and they survive a JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumers.ledger import AllyReport
from trilink.pipeline import RunReport, render_summary, summarize
from trilink.report_schemas import DOCS_SCHEMAS_DIR, schema_files, stale_schemas, write_schemas

pytestmark = pytest.mark.unit

FIGURES = {"p50_ms": 1.5, "p90_ms": 2.0, "p99_ms": 4.0, "p99_9_ms": 5.0, "max_ms": 6.0, "mean_ms": 1.8}


def ally_report(ally: str, delivered: int, withheld: int) -> dict[str, object]:
    return {
        "ally": ally,
        "instance_id": "run-1",
        "group_id": f"g-{ally}",
        "counts": {
            "received": {"track_update": delivered + withheld},
            "withheld": {"track_update": withheld} if withheld else {},
            "withheld_by_reason": {"not_releasable": withheld} if withheld else {},
            "delivered": {"kafka": {"track_update": delivered}, "sse": {}, "audit": {}},
            "duplicates_suppressed": 0,
            "dead_letters": {},
            "subscriber_drops": {"sse": 0},
            "delivery_failures": {},
        },
        "latency": [
            {"hop": "end_to_end", "kind": "*", "channel": "kafka", "count": delivered, **FIGURES},
            {"hop": "end_to_end", "kind": "track_update", "channel": "kafka", "count": delivered, **FIGURES},
        ],
        "launches": {},
        "dedup_window_ids": delivered,
        "assigned_partitions": ["trilink.warnings.v1/0"],
        "error": None,
    }


def shares(sensor_s: float, pipeline_ms: float) -> dict[str, object]:
    return {"sensor_id": "s1", "sensor_share_s": sensor_s, "pipeline_share_ms": pipeline_ms}


def run_report() -> RunReport:
    return RunReport.model_validate(
        {
            "scenario": "pair",
            "run_id": "abc",
            "bootstrap": "127.0.0.1:9092",
            "speed": 4.0,
            "complete": True,
            "published": {
                "sent": 12,
                "acknowledged": 12,
                "failed": 0,
                "by_kind": {"track_update": 12},
                "wall_s": 3.0,
                "max_schedule_lag_s": 0.001,
            },
            "expected_deliveries": {"US": 12, "JP": 10},
            "allies": {"US": ally_report("US", 12, 0), "JP": ally_report("JP", 10, 2)},
            "launches": [
                {
                    "launch": "L1",
                    "correlation_key": "k1",
                    "class": "SRBM",
                    "US": {"first_launch_detection": shares(8.0, 3.0), "first_alert": None},
                    "JP": {"first_launch_detection": None, "first_alert": None},
                },
                {
                    "launch": "L2",
                    "correlation_key": "k2",
                    "class": "MRBM",
                    "US": {"first_launch_detection": shares(10.0, 5.0), "first_alert": None},
                    "JP": {"first_launch_detection": shares(12.0, 2.0), "first_alert": None},
                },
            ],
        }
    )


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
