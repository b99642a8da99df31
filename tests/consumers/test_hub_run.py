"""``trilink run`` in the hub topology on the session's real broker: the hub runs as its own
process, every ally gets exactly what is released to it through its own feed, and the report
shows the hub's hops (the hub's own and the allies' view of them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_support import group_ids, wait_for_group_coordinator
from trilink.cli import main
from trilink.pipeline import RunReport
from trilink.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_topology(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TRILINK_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TRILINK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TRILINK_TOPOLOGY", "hub")
    get_settings.cache_clear()
    wait_for_group_coordinator(kafka_bootstrap)
    yield kafka_bootstrap
    get_settings.cache_clear()


def test_run_through_the_hub_delivers_what_is_released_and_reports_the_hub_hop(
    hub_topology: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "run.json"
    groups_before = group_ids(hub_topology, "-run-")
    status = main(
        ["run", "irbm_over_japan", "--fast", "--report", str(json_path), "--html", str(tmp_path / "r.html")]
    )
    out, err = capfd.readouterr()
    assert status == 0, (out, err)
    report = RunReport.model_validate_json(json_path.read_text())
    assert report.topology == "hub" and report.complete
    # The run's own consumer groups (the hub's and each ally's) are deleted when it ends.
    assert group_ids(hub_topology, report.run_id) == set()
    assert group_ids(hub_topology, "-run-") <= groups_before
    hub = report.hub
    assert hub is not None and hub.error is None and not hub.dead_letters
    for ally, rep in report.allies.items():
        # The feed holds only what is released to the ally: nothing to withhold, nothing missing.
        assert sum(rep.counts.withheld.values()) == 0, (ally, rep.counts.withheld)
        assert rep.delivered_total("kafka") == report.expected_deliveries[ally], ally
        assert hub.released_total(ally) == report.expected_deliveries[ally], ally
        for hop in ("send_to_append", "append_to_hub", "hub_to_append", "append_to_receive"):
            row = rep.latency_row(hop, "none")
            assert row is not None and row.count > 0, (ally, hop)
        end_to_end = rep.latency_row("end_to_end", "kafka")
        assert end_to_end is not None
        assert end_to_end.count == report.expected_deliveries[ally]
    assert sum(hub.withheld["JP"].values()) > 0  # KR- and US-bilateral data stopped at the hub
    for hop, feed in (("send_to_append", "none"), ("append_to_hub", "none"), ("hub_to_ack", "JP")):
        hub_row = hub.latency_row(hop, feed)
        assert hub_row is not None and hub_row.count > 0, (hop, feed)
    text = "\n".join(hub.lines())  # what trilink run prints above the allies' tables
    assert text.startswith("[hub] received") and "hub_to_ack [KR]" in text
