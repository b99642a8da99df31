"""The run simulates its scenario on a thread while the cluster and the services start."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from producers.publisher import Run
from producers.scenario import ScheduledEvent, load_scenario, simulate
from trilink import pipeline
from trilink.errors import TrilinkError

pytestmark = pytest.mark.unit


def test_the_background_simulation_gives_the_run_s_events() -> None:
    scenario = load_scenario("single_srbm")
    run = Run.new()
    events, seconds = pipeline._simulate_in_background(scenario, run).result()
    direct = list(pipeline.for_run(simulate(scenario), run, scenario.start_time))
    assert [e.event.header.event_id for e in events] == [e.event.header.event_id for e in direct]
    assert seconds > 0


def test_a_failed_simulation_is_raised_where_the_run_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def broken(_scenario: object) -> Iterator[ScheduledEvent]:
        release.wait(5)  # still running when the run starts waiting
        raise TrilinkError("no_flight", "launch[0] (id=L1): no trajectory reaches the target")
        yield  # a generator, as simulate is

    monkeypatch.setattr(pipeline, "simulate", broken)
    simulation = pipeline._simulate_in_background(load_scenario("single_srbm"), Run.new())
    release.set()
    with pytest.raises(TrilinkError) as raised:
        simulation.result()
    assert raised.value.reason == "no_flight"
