"""Each ally's live page in a real headless Chromium during a real run.

The three ally services run one process each (:class:`consumers.fleet.AllyFleet`, as ``trilink
run`` starts them) against the session's Kafka broker; one browser tab per ally opens that ally's
page at ``/`` before anything is published; then the real :class:`~producers.publisher.SensorPublisher`
plays the ``single_srbm`` scenario plus four alerts made here so that each ally is released a
different set of them (a KR alert not marked releasable to JP, a JP alert KR's policy does not
relay). Every event sent is checked against each ally's own release check
(:func:`consumers.policy_filter.withhold_reason`): a page must show every event released to its
ally and none withheld from it (JP and KR are withheld the other's sensor heartbeats and alert).
Screenshots: ``.trilink/artifacts/screenshots/<test>-<ally>.png``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.fleet import AllyFleet
from consumers.policy_filter import withhold_reason
from producers.publisher import Run, SensorPublisher, for_run
from producers.scenario import ScheduledEvent, load_scenario, simulate
from schemas.models import (
    Alert,
    AlertLevel,
    AlertMsgType,
    AlertStatus,
    EventKind,
    Nation,
    WarningEvent,
)
from schemas.samples import sample_header
from tests.browser import Browser
from trilink.policy import default_policy
from trilink.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SCENARIO = "single_srbm"  # one launch: tracks and impact predictions from several sensors, heartbeats
ALLIES = ("US", "JP", "KR")
SENSOR_OF = {Nation.US: "us-tpy2-shariki", Nation.JP: "jp-fps5-sado", Nation.KR: "kr-aegis-eastsea"}


def _alert(
    key: str,
    sensor: Nation,
    *,
    releasable: list[Nation],
    level: AlertLevel,
    areas: list[str],
    text: str,
    references: list[uuid.UUID] | None = None,
) -> WarningEvent:
    now = datetime.now(UTC)
    header = sample_header(
        event_id=uuid.uuid4(),
        correlation_key=key,
        sensor_id=SENSOR_OF[sensor],
        sensor_nation=sensor,
        releasable_to=releasable,
        sequence=1_000_000 + len(text),
        measured_at=now - timedelta(milliseconds=5),
        emitted_at=now,
    )
    payload = Alert(
        level=level,
        msg_type=AlertMsgType.UPDATE if references else AlertMsgType.ALERT,
        status=AlertStatus.ACTUAL,
        affected_areas=areas,
        text=text,
        references=references or [],
    )
    return WarningEvent(header=header, payload=payload)


def _alerts(key: str) -> list[WarningEvent]:
    """Four alerts about one missile: US (to all) and its update, KR (not to JP), JP (to all;
    KR's policy does not relay JP alerts)."""
    us, jp, kr = Nation.US, Nation.JP, Nation.KR
    everyone = [us, jp, kr]
    first = _alert(
        key,
        us,
        releasable=everyone,
        level=AlertLevel.WARNING,
        areas=["JP_EEZ"],
        text="Test: US alert, JP EEZ.",
    )
    update = _alert(
        key,
        us,
        releasable=everyone,
        level=AlertLevel.EMERGENCY,
        areas=["JP_EEZ", "JP_TERRITORY"],
        text="Test: US update, now JP territory as well.",
        references=[first.header.event_id],
    )
    from_kr = _alert(
        key,
        kr,
        releasable=[kr, us],
        level=AlertLevel.WARNING,
        areas=["KR_EEZ"],
        text="Test: KR alert, not for JP.",
    )
    from_jp = _alert(
        key,
        jp,
        releasable=everyone,
        level=AlertLevel.ADVISORY,
        areas=["JP_EEZ"],
        text="Test: JP alert, not for KR.",
    )
    return [first, update, from_kr, from_jp]


def _alerted_areas(events: list[WarningEvent]) -> dict[str, str]:
    """Area -> highest level among alerts not updated or cancelled since (what the page fills)."""
    alerts = [e for e in events if isinstance(e.payload, Alert)]
    closed = {ref for e in alerts if isinstance(e.payload, Alert) for ref in e.payload.references}
    levels = list(AlertLevel)
    out: dict[str, AlertLevel] = {}
    for e in alerts:
        assert isinstance(e.payload, Alert)
        if e.header.event_id in closed or e.payload.msg_type is AlertMsgType.CANCEL:
            continue
        for area in e.payload.affected_areas:
            if area not in out or levels.index(e.payload.level) > levels.index(out[area]):
                out[area] = e.payload.level
    return {area: level.value.lower() for area, level in out.items()}


@dataclass
class LiveRun:
    fleet: AllyFleet
    ports: dict[str, int]
    sent: list[WarningEvent] = field(default_factory=list)

    def released(self, ally: str) -> set[str]:
        policy = default_policy()
        return {str(e.header.event_id) for e in self.sent if withhold_reason(Nation(ally), e, policy) is None}

    def withheld(self, ally: str) -> set[str]:
        return {str(e.header.event_id) for e in self.sent} - self.released(ally)


@pytest.fixture(scope="module")
def live_fleet(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    state: Path = tmp_path_factory.mktemp("live-page")
    tag = uuid.uuid4().hex[:8]
    group_ids = {ally: f"test-live-page-{tag}-{ally.lower()}" for ally in ALLIES}
    fleet = AllyFleet(
        kafka_bootstrap,
        group_ids,
        f"live-{tag}",
        http=True,
        settings=Settings(state_dir=state / "state", bootstrap=None),
    )
    try:
        fleet.start()
        ports = {a: p for a, p in fleet.http_ports.items() if p is not None}
        assert set(ports) == set(ALLIES)
        yield LiveRun(fleet, ports)
    finally:
        fleet.stop()


def test_each_ally_page_draws_what_it_was_released_live(
    live_fleet: LiveRun, kafka_bootstrap: str, browser: Browser
) -> None:
    run = live_fleet
    driver = browser.driver
    tabs: dict[str, str] = {}
    for index, ally in enumerate(ALLIES):
        if index:
            driver.switch_to.new_window("tab")
        tabs[ally] = driver.current_window_handle
        browser.open(f"http://127.0.0.1:{run.ports[ally]}/")
        # subscribed (the stream answered) and the static layers loaded, before anything is sent
        browser.wait_for_js(
            "window.trilink && window.trilink.ready && document.getElementById('status').dataset.state === 'open'"
        )
        assert browser.text("#ally") == ally
        browser.wait_for_js("document.querySelectorAll('#layer-land path').length === 1")
        browser.wait_for_js("document.querySelectorAll('#layer-areas path').length >= 4")

    scenario = load_scenario(SCENARIO)
    live_run = Run.new()
    events = list(for_run(simulate(scenario), live_run, scenario.start_time))
    key = next(e.event.header.correlation_key for e in events if e.event.kind is EventKind.LAUNCH_DETECTION)
    last = events[-1].emit_offset_s
    made = _alerts(key)
    events += [ScheduledEvent(last, alert) for alert in made]
    from_kr, from_jp = str(made[2].header.event_id), str(made[3].header.event_id)
    publisher = SensorPublisher(kafka_bootstrap, client_id=f"trilink-sensors-{live_run.run_id}")
    try:
        published = publisher.publish(iter(events), speed=None, on_sent=run.sent.append)
    finally:
        publisher.close()
    assert published.failed == 0 and published.acknowledged == published.sent == len(events)
    assert run.fleet.wait_settled(dict.fromkeys(ALLIES, published.sent), 60.0), run.fleet.settled()

    alerts_sent = {str(e.header.event_id) for e in run.sent if e.kind is EventKind.ALERT}
    for ally in ALLIES:
        driver.switch_to.window(tabs[ally])
        released, withheld = run.released(ally), run.withheld(ally)
        if ally != "US":  # the other's heartbeats and alert
            assert withheld & alerts_sent and len(withheld) > 1, ally
        browser.wait_for_js(f"window.trilink.seenEventIds().length >= {len(released)}", timeout_s=60)
        seen = set(browser.evaluate("window.trilink.seenEventIds()"))
        assert seen == released, (ally, len(seen), len(released), sorted(seen - released)[:5])
        assert not seen & withheld

        # the picture: tracks with launch points, impact ellipses, the alerts, areas under alert
        browser.wait_for_js("document.querySelectorAll('#layer-tracks .track .track-line').length > 0")
        assert browser.evaluate("document.querySelectorAll('#layer-tracks .launch').length") > 0
        assert browser.evaluate("document.querySelectorAll('#layer-impacts .impact-ellipse').length") > 0
        listed = set(
            browser.evaluate("[...document.querySelectorAll('#alerts li')].map(li => li.dataset.eventId)")
        )
        assert listed == released & alerts_sent
        assert (from_kr in listed, from_jp in listed) == (ally != "JP", ally != "KR")
        alerted = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#layer-areas .area.alerted')]"
            ".map(a => [a.dataset.area, [...a.classList].find(c => ['advisory', 'warning', 'emergency'].includes(c))]))"
        )
        expected = _alerted_areas([e for e in run.sent if str(e.header.event_id) in released])
        assert alerted == expected and expected["JP_TERRITORY"] == "emergency"

        # sensors on the map: only those whose heartbeats this ally was released
        nations = set(
            browser.evaluate(
                "[...document.querySelectorAll('#layer-sensors [data-sensor]')].map(s => s.dataset.sensor.slice(0, 2))"
            )
        )
        assert nations == {"US": {"us", "jp", "kr"}, "JP": {"us", "jp"}, "KR": {"us", "kr"}}[ally]

        # nothing withheld anywhere in the document either (log entries carry event ids)
        html = browser.evaluate("document.documentElement.outerHTML")
        assert not [event_id for event_id in withheld if event_id in html]

        # live per-hop latency from the service's ledger
        browser.wait_for_js(
            "document.querySelectorAll('#latency tbody tr[data-hop=\"end_to_end\"]').length > 0"
        )
        counts = browser.evaluate("window.trilink.counts()")
        assert counts["track_update"] > 0 and counts["alert"] == len(released & alerts_sent)
        assert browser.console_errors() == []
        browser.screenshot(ally)
