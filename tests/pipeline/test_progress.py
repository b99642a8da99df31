"""The progress display: a live line on a terminal, plain lines elsewhere, figures from /metrics."""

from __future__ import annotations

import io
import itertools
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumers.ledger import Ledger
from trilink.progress import (
    AllyFigures,
    AllyMetricsProbe,
    NullProgress,
    Progress,
    RateMeter,
    Status,
    parse_ally_metrics,
    render_status,
)

pytestmark = pytest.mark.unit


class FakeClock:
    """Seconds that advance only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_render_shows_every_figure_given() -> None:
    status = Status(
        phase="publishing", sent=250, total=1000, delivered={"US": 240, "JP": 230}, lag_s=0.012, detail="x"
    )
    text = render_status(status, elapsed_s=75, rate_per_s=50.0, eta_s=15.0, label="run ab12")
    assert text == (
        "run ab12 publishing | sent 250/1,000 (25%) | 50/s | delivered US 240 JP 230 | lag 12 ms"
        " | ETA 15 s | x | 1m15s elapsed"
    )


def test_render_leaves_out_what_is_unknown() -> None:
    text = render_status(Status(phase="starting Kafka"), elapsed_s=3, rate_per_s=None, eta_s=None)
    assert text == "starting Kafka | 3 s elapsed"


def test_rate_meter_uses_the_recent_window_and_restarts_on_a_new_count() -> None:
    meter = RateMeter(window_s=5.0)
    assert meter.add(0.0, 0) is None
    assert meter.add(1.0, 100) == pytest.approx(100.0)
    for t in range(2, 11):
        meter.add(float(t), 100 + (t - 1) * 10)  # slows to 10/s
    assert meter.add(11.0, 200) == pytest.approx(10.0, rel=0.01)
    assert meter.add(12.0, 5) is None  # a new phase counting from zero


def test_live_mode_redraws_one_line_in_place() -> None:
    clock = FakeClock()
    counts = itertools.count(0, 100)
    out = io.StringIO()
    progress = Progress(
        lambda: Status(phase="sending", sent=next(counts), total=400), out=out, live=True, clock=clock
    )
    for _ in range(3):
        progress.tick()
        clock.now += 1.0
    progress.say("a message")
    progress.tick()
    text = out.getvalue()
    frames = text.split("\r")
    assert frames[0] == "" and len(frames) >= 5
    # ticks never end a line; the message clears the live line first and ends with a newline
    assert text.count("\n") == 1 and "\x1b[Ka message\n" in text
    assert "sent 200/400 (50%) | 100/s | ETA 2 s" in frames[3]
    progress.stop()
    assert out.getvalue().endswith("\n")


def test_plain_mode_prints_whole_lines_without_control_characters() -> None:
    clock = FakeClock()
    counts = itertools.count(0, 10)
    out = io.StringIO()
    progress = Progress(
        lambda: Status(phase="replaying", sent=next(counts)), out=out, live=False, clock=clock
    )
    assert progress.interval_s == 10.0
    progress.tick()
    clock.now += 10.0
    progress.tick()
    progress.say("done soon")
    lines = out.getvalue().splitlines()
    assert lines[0] == "replaying | sent 0 | 0 s elapsed"
    assert lines[1] == "replaying | sent 10 | 1/s | 10 s elapsed"
    assert lines[2] == "done soon"
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_file_is_not_a_terminal() -> None:
    out = io.StringIO()
    assert Progress(lambda: Status(phase="x"), out=out).live is False


def test_the_thread_draws_and_the_end_leaves_a_final_line() -> None:
    out = io.StringIO()
    with Progress(lambda: Status(phase="waiting", sent=1, total=2), out=out, live=True, interval_s=0.05):
        pass
    assert out.getvalue().endswith("waiting | sent 1/2 (50%) | 0 s elapsed\n")


def test_a_failing_source_does_not_end_the_command() -> None:
    def broken() -> Status:
        raise OSError("service gone")

    out = io.StringIO()
    with Progress(broken, out=out, live=False, interval_s=0.01):
        pass  # neither the thread nor the final line raise
    NullProgress(out).say("plain")
    assert out.getvalue().endswith("plain\n")
    NullProgress(out, quiet=True).say("not shown")
    assert "not shown" not in out.getvalue()


def test_ally_figures_come_from_the_services_exposition() -> None:
    ledger = Ledger("JP")
    ledger.delivered[("track_update", "kafka")] = 7
    ledger.delivered[("alert", "kafka")] = 2
    ledger.delivered[("alert", "audit")] = 9
    ledger.withheld["sensor_status"] = 3
    registry = CollectorRegistry()
    registry.register(ledger)
    text = generate_latest(registry).decode()
    text += 'trilink_ally_consumer_lag_seconds{ally="JP"} 0.25\n'
    figures = parse_ally_metrics(text)
    assert (figures.delivered, figures.withheld, figures.lag_s) == (9, 3, 0.25)


def test_probe_keeps_the_last_figures_of_a_service_that_does_not_answer() -> None:
    probe = AllyMetricsProbe({"US": 1, "JP": None})  # port 1: nothing listens
    assert probe.targets == {"US": ["127.0.0.1:1"]}
    assert probe.read() == {}


def test_the_run_lag_is_the_wait_of_the_oldest_event_sent_and_not_delivered() -> None:
    """The hub's queue is invisible to an ally's own consumer lag: the run's lag counts from the
    sensors' send of the first event an ally has not delivered yet."""
    from trilink.pipeline import _oldest_wait_s

    now = time.monotonic()
    sent_at = [now - 9.0, now - 8.0, now - 5.0, now - 1.0]  # four events sent
    releases = {"US": [0, 1, 2, 3], "KR": [0, 3]}  # KR gets only the first and the last
    figures = {"US": AllyFigures(2, 0, 0.0), "KR": AllyFigures(1, 0, 0.0)}
    # US waits for event 2 (sent 5 s ago), KR for event 3 (1 s ago): the worst is US's
    assert 4.9 < _oldest_wait_s(figures, releases, sent_at, {}) < 5.5
    # all delivered: no lag; an event released but not yet sent does not count either
    done = {"US": AllyFigures(4, 0, 0.0), "KR": AllyFigures(2, 0, 0.0)}
    assert _oldest_wait_s(done, releases, sent_at, {}) == 0.0
    assert _oldest_wait_s(figures, releases, sent_at[:2], {}) == 0.0
    # a restarted ally's count covers its last process only: left out
    assert 0.9 < _oldest_wait_s(figures, releases, sent_at, {"US": 1}) < 1.5
