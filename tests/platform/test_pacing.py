"""trilink.pacing: the one pacer (publisher, replayer, load-test senders), the poll linger and the
readers' linger."""

from __future__ import annotations

import threading
import time

import pytest

from trilink.pacing import SPIN_NS, linger_after_poll, pace_until

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


@pytest.mark.parametrize(("records", "lingers"), [(0, False), (1, False), (2, True), (500, True)])
def test_only_a_poll_with_several_records_lingers(records: int, lingers: bool) -> None:
    stop = threading.Event()
    polled_ns = time.monotonic_ns()
    batch = {"partition": [object()] * records} if records else {}
    linger_after_poll(batch, polled_ns, 30_000_000, stop)
    waited_ns = time.monotonic_ns() - polled_ns
    assert (waited_ns >= 29_000_000) is lingers  # a sleep may wake ~early


def test_a_stop_ends_the_linger() -> None:
    stop = threading.Event()
    stop.set()
    began_ns = time.monotonic_ns()
    linger_after_poll({"a": [object()] * 5, "b": [object()] * 5}, began_ns, 60_000_000_000, stop)
    assert time.monotonic_ns() - began_ns < 1_000_000_000


@pytest.mark.parametrize(
    ("batch", "lingers"),
    [({}, False), ({"a": []}, False), ({"a": [], "b": [object()]}, True), ({"a": [object()] * 9}, True)],
)
def test_a_reader_lingers_after_any_record(batch: dict[str, list[object]], lingers: bool) -> None:
    stop = threading.Event()
    polled_ns = time.monotonic_ns()
    linger_after_poll(batch, polled_ns, 30_000_000, stop, min_records=1)
    waited_ns = time.monotonic_ns() - polled_ns
    assert (waited_ns >= 29_000_000) is lingers  # a sleep may wake ~early


def test_a_stop_ends_the_readers_linger_and_zero_turns_it_off() -> None:
    stop = threading.Event()
    began_ns = time.monotonic_ns()
    linger_after_poll({"a": [object()]}, began_ns, 0, stop, min_records=1)
    stop.set()
    linger_after_poll({"a": [object()]}, began_ns, 60_000_000_000, stop, min_records=1)
    assert time.monotonic_ns() - began_ns < 1_000_000_000
