"""trilink.pacing.pace_until: the one pacer (publisher, replayer, load-test senders)."""

from __future__ import annotations

import threading
import time

import pytest

from trilink.pacing import SPIN_NS, pace_until

pytestmark = pytest.mark.unit


def test_a_past_due_time_returns_at_once() -> None:
    stop = threading.Event()
    assert pace_until(time.monotonic_ns() - 1, stop)
    assert pace_until(time.monotonic_ns() - 1, stop, spin_ns=SPIN_NS)


@pytest.mark.parametrize("spin_ns", [0, SPIN_NS])
def test_never_returns_before_the_due_time(spin_ns: int) -> None:
    stop = threading.Event()
    due = time.monotonic_ns() + 20_000_000
    assert pace_until(due, stop, spin_ns=spin_ns)
    assert time.monotonic_ns() >= due - (0 if spin_ns else 1_000_000)  # a sleep may wake ~early


def test_a_stop_ends_the_wait() -> None:
    stop = threading.Event()
    threading.Timer(0.02, stop.set).start()
    assert not pace_until(time.monotonic_ns() + 60_000_000_000, stop, spin_ns=SPIN_NS)


def test_any_clock() -> None:
    stop = threading.Event()
    ticks = iter(range(0, 100, 10))
    assert pace_until(50, stop, lambda: next(ticks), spin_ns=100)  # spins on the given clock
