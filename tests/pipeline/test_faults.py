"""Faults during a run: ``--kill`` parsing, the fleet's supervisor restarting a killed service,
and the read-back of the ally topics that checks, independently of the services' own counts,
that each ally holds each event released to it exactly once."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.fleet import HUB, AllyFleet
from schemas.headers import CE_ID_HEADER, INSTANCE_HEADER
from tests.pipeline.support import run_report
from trilink.cli import main
from trilink.errors import ConfigError
from trilink.pipeline import Kill, RunReport
from trilink.platform.clients import producer_config
from trilink.platform.topics import topic_name
from trilink.readback import AllyTopicReadback, TopicCheck
from trilink.report_html import render_html
from trilink.settings import get_settings


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "service", "at_s"),
    [("jp@5", "JP", 5.0), ("HUB@2.5s", "HUB", 2.5), (" us@0 ", "US", 0.0), ("Kr@12", "KR", 12.0)],
)
def test_kill_option_parses(text: str, service: str, at_s: float) -> None:
    kill = Kill.parse(text)
    assert (kill.service, kill.at_s) == (service, at_s)
    assert Kill.parse(str(kill)) == kill


@pytest.mark.unit
@pytest.mark.parametrize("text", ["fr@1", "jp", "jp@", "jp@-1", "jp@x", "@3", "jp@3@4", "hub@1e3"])
def test_kill_option_refuses_what_it_cannot_do(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Kill.parse(text)
    assert caught.value.reason == "bad_kill"


@pytest.mark.unit
def test_a_bad_kill_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "single_srbm", "--kill", "fr@1"])
    assert caught.value.code == 2
    assert "--kill takes SERVICE@SECONDS" in capsys.readouterr().err


@pytest.mark.unit
def test_faults_and_an_unclean_topic_show_in_the_text_and_the_page() -> None:
    bad = TopicCheck(expected=10, found=9, missing=1, twice=2, unexpected=0, missing_listed=["e-1"])
    good = TopicCheck(expected=12, found=12, missing=0, twice=0, unexpected=0)
    assert good.clean and not bad.clean
    assert not TopicCheck(expected=1, found=1, missing=0, twice=0, unexpected=1).clean
    report = run_report().model_copy(
        update={
            "complete": False,
            "kills": ["HUB@2s"],
            "restarts": {"HUB": 1},
            "ally_topics": {"US": good, "JP": bad},
        }
    )
    page = render_html(report)
    assert "killed HUB@2s" in page and "HUB 1x" in page
    assert "<li class=bad>JP: 9 of 10 expected events on its ally topic, 1 missing, 2 twice" in page
    assert "<li>US: 12 of 12 expected events" in page and "nothing lost, nothing twice" in page


# ---------------------------------------------------------------------------- real broker


@pytest.mark.integration
def test_the_readback_finds_missing_twice_and_unexpected_events(kafka_bootstrap: str) -> None:
    from kafka import KafkaProducer

    instance = f"readback-{uuid.uuid4().hex[:8]}"
    readback = AllyTopicReadback(kafka_bootstrap, ("US", "JP"), client_id="test-readback")
    ids = [uuid.uuid4() for _ in range(4)]
    producer: Any = KafkaProducer(**producer_config(kafka_bootstrap, "test-readback"))

    def deliver(ally: str, event_id: uuid.UUID, by: str = instance) -> None:
        headers = [(CE_ID_HEADER, str(event_id).encode()), (INSTANCE_HEADER, by.encode())]
        producer.send(topic_name(f"ally.{ally}"), value=b"x", key=b"k", headers=headers)

    deliver("US", ids[0])
    deliver("US", ids[1])
    deliver("US", ids[1])  # twice
    deliver("US", ids[3])  # not released to US
    deliver("JP", ids[0])
    deliver("JP", ids[1], by="someone-else")  # another instance's delivery: not ours
    producer.flush()
    producer.close()

    checks = readback.check(instance, {"US": set(ids[:3]), "JP": set(ids[:2])})
    us, jp = checks["US"], checks["JP"]
    assert (us.expected, us.found, us.missing, us.twice, us.unexpected) == (3, 2, 1, 1, 1)
    assert us.missing_listed == [str(ids[2])]
    assert (jp.expected, jp.found, jp.missing, jp.twice, jp.unexpected) == (2, 1, 1, 0, 0)
    assert not us.clean and not jp.clean


@pytest.mark.integration
def test_a_run_survives_kill_9_of_the_hub_and_an_ally(
    run_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``trilink run --kill hub@2 --kill jp@4``, as a user types it: the run's supervisor starts
    both again and says so, the run completes (exit 0), every ally topic holds each released
    event exactly once and no warning goes unacknowledged. In the hub topology, the default
    (the suite runs in the direct one unless a test says otherwise)."""
    monkeypatch.setenv("TRILINK_TOPOLOGY", "hub")
    get_settings.cache_clear()
    report_path = tmp_path / "run.json"
    status = main(
        [
            "run",
            "single_srbm",
            "--speed",
            "60",  # ~10 s of publishing: both kills land while events flow
            "--kill",
            "hub@2",
            "--kill",
            "jp@4",
            "--no-progress",
            "--audit-dir",
            str(tmp_path / "audit"),
            "--report",
            str(report_path),
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, (out, err)
    report = RunReport.model_validate_json(report_path.read_text())
    assert report.complete and report.topology == "hub"
    assert report.kills == ["HUB@2s", "JP@4s"] and report.restarts == {"HUB": 1, "JP": 1}
    assert set(report.ally_topics) == {"US", "JP", "KR"}
    for ally, check in report.ally_topics.items():
        assert check.clean, check.line(ally)
        assert check.found == check.expected == report.expected_deliveries[ally] > 0
    for ally, rep in report.allies.items():
        acks = rep.acknowledgements
        assert acks is not None and acks.unacknowledged == 0, (ally, acks)
    # US was never restarted: its book saw every warning it delivered acknowledged by all,
    # JP's among them (JP's own book covers only its last process).
    us_acks = report.allies["US"].acknowledgements
    assert us_acks is not None and us_acks.acknowledged_by_all > 0
    # what happens, on stderr with the progress (stdout keeps the results)
    assert "the hub: restarted as process" in err and "ally JP's service: restarted as process" in err
    assert "faults: killed HUB@2s, JP@4s; restarted by the run's supervisor: HUB 1x, JP 1x" in out
    assert out.count("nothing lost, nothing twice") == 3


@pytest.mark.integration
def test_a_service_past_its_restarts_is_left_down_and_the_wait_ends(kafka_bootstrap: str) -> None:
    """``max_restarts`` 0: a killed service stays down, and waiting for it ends at once instead
    of at the drain timeout."""
    tag = uuid.uuid4().hex[:8]
    fleet = AllyFleet(
        kafka_bootstrap,
        {"JP": f"trilink-ally-jp-giveup-{tag}"},
        f"giveup-{tag}",
        topology="direct",
        supervise=True,
        max_restarts=0,
    )
    fleet.start()
    try:
        fleet.kill("JP")
        # No deadline of its own: only the left-down service can end this wait (if it did not,
        # the suite's per-test timeout would fail the test).
        assert not fleet.wait_settled({"JP": 1}, timeout_s=math.inf)
        assert fleet.given_up == {"JP"} and fleet.restarts == {}
        assert HUB not in fleet.alive()
    finally:
        reports = fleet.stop()
    assert reports == {}  # a dead process sends no report
