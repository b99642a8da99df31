"""``trilink loadtest`` in the hub topology on the session's real broker: the senders write each
event to its sensor nation's ingest topic, the hub (its own process) releases it to the feeds,
every ally gets all it is released to once and in order, and the report (its JSON and the text
printed) shows the hub: its own counts and hops, and every ally's hop rows around it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_support import wait_for_group_coordinator
from trilink.cli import main
from trilink.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_topology(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TRILINK_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TRILINK_TOPOLOGY", "hub")
    get_settings.cache_clear()
    wait_for_group_coordinator(kafka_bootstrap)
    yield kafka_bootstrap
    get_settings.cache_clear()


def test_load_through_the_hub_is_delivered_whole_and_shows_the_hub_hop(
    hub_topology: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "lt.json"
    code = main(
        [
            "loadtest",
            "--rate", "200", "--duration", "3", "--warmup", "1",
            "--max-schedule-lag", "5000",  # this host is shared: judge the pipeline, not its neighbours
            "--report", str(report_path),
        ]
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert code == 0 or (code == 2 and report["harness"]["saturated"]), report["harness"]
    assert report["harness"]["sent"] == report["harness"]["planned"] == 800
    for ally in ("US", "JP", "KR"):
        counts = report["allies"][ally]
        assert counts["expected"] == counts["delivered"] > 0, (ally, counts)
        assert (counts["lost"], counts["duplicates"], counts["out_of_order"], counts["dead_lettered"]) == (
            0,
            0,
            0,
            0,
        ), (ally, counts)
        hops = {r["hop"] for r in report["service_hops"] if r["ally"] == ally and r["count"] > 0}
        assert {"send_to_append", "append_to_hub", "hub_to_append", "append_to_receive"} <= hops, (ally, hops)
    # the default mix's alerts and heartbeats of JP and KR sensors are bilateral with the US
    assert report["allies"]["JP"]["expected"] < report["allies"]["US"]["expected"] == 800
    hub = report["hub"]
    assert sum(n for kinds in hub["received"].values() for n in kinds.values()) == 800
    assert {r["hop"] for r in hub["latency"]} >= {"append_to_hub", "hub_to_ack"}
    text = capsys.readouterr().out
    assert "[hub] received 800  released US 800 " in text
    for label in ("append_to_hub", "hub_to_ack [JP]", "hub_to_append", "receive_to_deliver [kafka]"):
        assert f"  {label} " in text, label
