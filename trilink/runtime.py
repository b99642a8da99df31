"""Process-wide settings of trilink's long-running streaming processes."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from trilink.errors import ConfigError
from trilink.processes import thread_ids
from trilink.settings import get_settings

#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that handles thousands of events
    a second.

    Every event allocates a few dozen short-lived objects (the client library's record, future
    and batch objects, the decoded models), almost none of them in reference cycles; with the
    default thresholds the collector runs every 700 allocations and walks every object that
    survived start-up each time it reaches the older generations. Measured on an ally service
    (``bench/bench_hotpath.py``) that was about a fifth of its CPU. :func:`gc.freeze` moves
    what start-up allocated (modules, schemas, catalogs, clients) out of the collector's sight,
    and a larger young threshold makes collections rarer; cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)


def tune_service(switch_interval_ms: float | None = None) -> None:
    """A consuming service's process (the hub, an ally): :func:`tune_gc`, and the GIL switch
    interval set to ``switch_interval_ms`` (None: ``Settings.service_switch_interval_ms``).

    A service's loop thread handles a poll's records holding the GIL, while the Kafka client's
    IO threads (the producer's sender, the consumer's network loop) want it for a moment after
    each socket event. At CPython's default of 5 ms the loop is made to hand over in the middle
    of a batch whenever one of them is waiting, and each hand-over is a futex wake, a context
    switch and cold caches for both threads. With a longer interval the loop hands over when it
    blocks (in ``poll``, in the poll linger), which it does after every batch. Measured in the
    demo (README, Benchmarks, sixth session): p99 a half to a third of the 5 ms figure in six
    alternated pairs, CPU per record unchanged.
    """
    if switch_interval_ms is None:
        switch_interval_ms = get_settings().service_switch_interval_ms
    tune_gc()
    sys.setswitchinterval(switch_interval_ms / 1000)


@contextmanager
def gc_tuned() -> Iterator[None]:
    """:func:`tune_gc` for one stretch of a process that lives on (a run's publishing), then the
    collector as it was: what was frozen back in its sight, its thresholds restored."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


#: The pipeline's processes in the order :func:`cpu_for` deals them out over the CPUs: on 2
#: CPUs the broker, the run's sensors and the JP service share one, the hub, US and KR the
#: other (about 1 core each at the demo's peak).
PINNED_ROLES = ("broker", "hub", "run", "ally-US", "ally-JP", "ally-KR")
#: ``cpu_pinning=auto`` pins on machines with at most this many CPUs.
AUTO_PIN_MAX_CPUS = 4


def cpu_for(role: str, mode: str, *, index: int = 0, cpus: Iterable[int] | None = None) -> int | None:
    """The CPU a process of ``role`` (one of :data:`PINNED_ROLES`; ``index``: the n-th broker
    node) is pinned to, or None (``mode`` off, one CPU, or auto on a larger machine).

    Why: on 2 cores the demo runs seven busy processes (broker, sensors, hub, three allies)
    whose threads the scheduler moves between the cores; the hypothesis is that each move
    runs on cold caches. Pinned, the demo's broker spent 498-577 instead of 641-668 µs of CPU
    per event, and the worst ally's p99 was 120, 76 and 98 ms in three runs against 118, 157
    and 109 unpinned (``bench/bench_demo.py --no-floor``, plaintext, alternated, 2026-12-04).
    Why it is off by default: the floor bench's plain-client pipeline, pinned the same way,
    stalled (p99 0.1-2.3 s in four runs against 35 ms in one unpinned run beside them), and
    that is not understood; a process that cannot move to the idle core can stall.
    """
    allowed = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if mode == "off" or len(allowed) < 2 or (mode == "auto" and len(allowed) > AUTO_PIN_MAX_CPUS):
        return None
    if role not in PINNED_ROLES:
        raise ConfigError(
            "invalid_option", f"no CPU placement for {role!r}; one of {', '.join(PINNED_ROLES)}"
        )
    return allowed[(PINNED_ROLES.index(role) + index) % len(allowed)]


def pin_process(pid: int, cpu: int | None) -> None:
    """Pin every thread ``pid`` has to ``cpu`` (threads it starts later inherit the mask of
    the thread that starts them); None leaves it as it is."""
    if cpu is not None:
        _set_mask(pid, {cpu})


@contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """This process on ``cpu`` (every thread, those started inside included) for a stretch,
    then every thread on the CPUs the process had before (a ``trilink run`` called inside a
    longer-lived process, a test's, leaves it free to use them again)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    pin_process(os.getpid(), cpu)
    try:
        yield
    finally:
        _set_mask(os.getpid(), before)


def _set_mask(pid: int, cpus: set[int]) -> None:
    for tid in thread_ids(pid) or [pid]:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, FileNotFoundError):  # the thread ended meanwhile
            continue
