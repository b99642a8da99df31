"""A small run report built by hand, for the unit tests of the report, summary and HTML page."""

from __future__ import annotations

from trilink.pipeline import RunReport

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
