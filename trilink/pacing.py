"""Pacing: waiting until an event's due time, interruptible by a stop flag. One helper for the
sensor publisher, the replayer and the load-test senders.

A timed sleep overshoots by ~0.1-1 ms, so the last ``spin_ns`` before the due time are spun
on the clock instead. Spinning holds a core (and the GIL: a process pacing this way should
shorten its switch interval, as the replayer does), so each caller chooses: the replayer,
whose point is the recording's exact timing, spins its last 1.5 ms; the publisher and the
load-test senders, which share the machine with the services they measure, sleep only
(``spin_ns=0``) and report how late each send was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sized
from typing import Any, Protocol

__all__ = ["SPIN_NS", "Stop", "linger_after_poll", "pace_until"]

#: How long before the due time the replayer stops sleeping and spins.
SPIN_NS = 1_500_000


class Stop(Protocol):
    """A stop flag (``threading.Event`` or ``multiprocessing.Event``)."""

    def wait(self, timeout: float | None = None) -> bool: ...


def pace_until(
    due_ns: int, stop: Stop, clock_ns: Callable[[], int] = time.monotonic_ns, spin_ns: int = 0
) -> bool:
    """Block until ``clock_ns()`` reaches ``due_ns``: True when due, False as soon as ``stop``
    is set while waiting. Sleeps on ``stop`` until ``spin_ns`` before the due time, then spins."""
    remaining_ns = due_ns - clock_ns()
    if remaining_ns > spin_ns and stop.wait((remaining_ns - spin_ns) / 1e9):
        return False
    if spin_ns:
        while clock_ns() < due_ns:
            pass
    return True


def linger_after_poll(
    batch: Mapping[Any, Sized], polled_ns: int, linger_ns: int, stop: Stop, *, min_records: int = 2
) -> None:
    """A consuming loop's poll linger: after a poll (``batch``: its records by partition) that
    returned at least ``min_records`` records, the next poll waits until ``linger_ns`` after this
    one (``polled_ns``, on ``time.monotonic_ns``), so records arriving meanwhile come together in
    one fetch.

    The services (``Settings.poll_linger_ms``, ``min_records`` 2): several records in one poll
    mean they arrive faster than the loop polls, and a fetch round trip costs kafka-python about
    a millisecond of CPU whatever it carries, so waiting saves CPU when it matters. A poll that
    returned one record (or none) means the loop keeps up record by record: it polls again at
    once, so at low load no record waits for the linger.

    Readers whose figures come from the records they read, not from when they read them
    (``Settings.reader_linger_ms``, ``min_records`` 1): any record read means wait."""
    if linger_ns and sum(map(len, batch.values())) >= min_records:
        pace_until(polled_ns + linger_ns, stop)
