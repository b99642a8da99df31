"""trilink.waiting.wait_until: the one polling loop."""

from __future__ import annotations

import time

import pytest

from trilink.waiting import wait_until

pytestmark = pytest.mark.unit


def test_returns_the_first_truthy_value() -> None:
    calls = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(calls), timeout_s=5.0, interval_s=0.001) == "ready"


def test_none_after_the_timeout_and_the_predicate_ran_at_the_deadline() -> None:
    seen: list[float] = []
    start = time.monotonic()

    def never() -> bool:
        seen.append(time.monotonic())
        return False

    assert wait_until(never, timeout_s=0.05, interval_s=0.01) is None
    assert len(seen) >= 2 and seen[-1] - start >= 0.05


def test_runs_once_even_without_time() -> None:
    assert wait_until(lambda: 42, timeout_s=0.0) == 42
    assert wait_until(lambda: [], timeout_s=0.0) is None
