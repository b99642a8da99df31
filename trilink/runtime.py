"""Process-wide settings of trilink's long-running streaming processes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

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
