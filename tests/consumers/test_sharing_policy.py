"""The per-kind sharing policy end to end: a scenario through the real broker and the three
ally services (one process each, as ``trilink run`` starts them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from producers.scenario import load_scenario, simulate
from schemas.models import Nation
from trilink.pipeline import run_pipeline
from trilink.policy import default_policy

pytestmark = pytest.mark.integration

ALLIES = (Nation.US, Nation.JP, Nation.KR)


def test_national_products_are_withheld_by_the_third_nation_and_the_rest_is_delivered(
    run_broker: str, tmp_path: Path
) -> None:
    scenario = load_scenario("single_srbm")
    policy = default_policy()
    events = [item.event for item in simulate(scenario)]
    # What the shipped policy says each ally must not see (counted per kind, from the events).
    forbidden = {
        ally: Counter(
            e.kind.value for e in events if not policy.may_receive(e.header.sensor_nation, ally, e.kind)
        )
        for ally in ALLIES
    }
    assert not forbidden[Nation.US]
    assert forbidden[Nation.KR] and forbidden[Nation.JP]  # sensor_status of the other nation

    result = run_pipeline(scenario, speed=None, audit_dir=tmp_path / "audit", progress=False)

    assert result.complete
    assert result.publish.sent == result.publish.acknowledged == len(events)
    for ally in ALLIES:
        report = result.allies[ally.value].model_dump()
        counts = report["counts"]
        assert report["error"] is None, report["error"]
        withheld = {kind: n for kind, n in counts["withheld"].items() if n}
        assert withheld == dict(forbidden[ally]), ally
        # The producer marked them correctly, so the header check is the one that withholds.
        assert {r: n for r, n in counts["withheld_by_reason"].items() if n} == (
            {"not_releasable": sum(forbidden[ally].values())} if forbidden[ally] else {}
        )
        delivered = sum(counts["delivered"]["kafka"].values())
        expected = result.expected[ally.value]
        assert expected == len(events) - sum(forbidden[ally].values())
        assert delivered == expected, (ally, delivered, expected)  # nothing undelivered
        assert sum(counts["received"].values()) == len(events)
        assert sum(counts["dead_letters"].values()) == 0
        assert counts["duplicates_suppressed"] == 0
