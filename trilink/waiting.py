"""Waiting on observable state: one polling loop instead of a hand-written one per caller."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.05) -> T | None:
    """Call ``predicate`` every ``interval_s`` until it returns something truthy, and return that;
    None once ``timeout_s`` has passed without. The predicate runs at least once, and once more
    at the deadline, so a state reached during the last sleep is still seen. The caller raises
    its own typed error on None (it knows what was awaited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval_s, remaining))
