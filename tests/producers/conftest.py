"""Fixtures shared by the producer tests."""

from __future__ import annotations

import pytest

from producers.scenario import ScheduledEvent, load_scenario, simulate


@pytest.fixture(scope="session")
def salvo_events() -> list[ScheduledEvent]:
    """The salvo scenario simulated once for the session (about half a minute on 2 cores);
    the detection and fusion tests read it, none changes it."""
    return list(simulate(load_scenario("salvo")))
