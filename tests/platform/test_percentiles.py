"""trilink.latency.percentile_of_sorted: the one small-sample percentile (nearest rank)."""

from __future__ import annotations

import pytest

from trilink.latency import percentile_of_sorted
from trilink.platform.smoke import SmokeResult

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
        ([15, 20, 35, 40, 50], 30, 20),  # rank ceil(0.3 * 5) = 2
        ([15, 20, 35, 40, 50], 40, 20),
        ([15, 20, 35, 40, 50], 50, 35),
        ([7], 1, 7),
        ([0.5, 1.5], 50, 0.5),
    ],
)
def test_nearest_rank(values: list[float], percentile: float, expected: float) -> None:
    assert percentile_of_sorted(values, percentile) == expected


def test_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile_of_sorted([], 50)


def test_smoke_round_trips_use_it() -> None:
    result = SmokeResult(count=5, round_trip_us=[50, 15, 40, 20, 35])
    assert result.percentile_us(50) == 35
    assert result.percentile_us(100) == 50
