"""The run simulates its scenario on a thread while the cluster and the services start."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from producers.publisher import Run
from producers.scenario import Scenario, load_scenario, simulate
from producers.simulation_cache import CachedSimulation
from trilink import pipeline
from trilink.errors import TrilinkError

pytestmark = pytest.mark.unit


def test_the_background_simulation_gives_the_run_s_events(tmp_path: Path) -> None:
    scenario = load_scenario("single_srbm")
    run = Run.new()
    direct = list(pipeline.for_run(simulate(scenario), run, scenario.start_time))
    for cached in (False, True):  # simulated (and kept), then read from the cache
        events, seconds, hit = pipeline._simulate_in_background(scenario, run, tmp_path).result()
        assert hit is cached
        assert [e.event for e in events] == [e.event for e in direct]
        assert [e.emit_offset_s for e in events] == [e.emit_offset_s for e in direct]
        assert seconds > 0


def test_a_failed_simulation_is_raised_where_the_run_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def broken(_scenario: Scenario, _cache_dir: Path | None) -> CachedSimulation:
        release.wait(5)  # still running when the run starts waiting
        raise TrilinkError("no_flight", "launch[0] (id=L1): no trajectory reaches the target")

    monkeypatch.setattr(pipeline, "simulate_cached", broken)
    simulation = pipeline._simulate_in_background(load_scenario("single_srbm"), Run.new(), None)
    release.set()
    with pytest.raises(TrilinkError) as raised:
        simulation.result()
    assert raised.value.reason == "no_flight"
