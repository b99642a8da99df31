"""trilink.latency's datetime <-> epoch conversions: the one definition, exact to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from trilink.latency import EPOCH, datetime_from_ns, datetime_ns, epoch_us

pytestmark = pytest.mark.unit

MOMENT = datetime(2026, 12, 3, 21, 30, 15, 123456, tzinfo=UTC)


def test_exact_to_the_microsecond() -> None:
    assert epoch_us(MOMENT) == 1_796_333_415_123_456
    assert datetime_ns(MOMENT) == 1_796_333_415_123_456_000
    assert datetime_ns(EPOCH) == 0 == epoch_us(EPOCH)


def test_any_timezone_is_the_same_instant() -> None:
    tokyo = MOMENT.astimezone(timezone(timedelta(hours=9)))
    assert datetime_ns(tokyo) == datetime_ns(MOMENT)


def test_round_trip_truncates_below_a_microsecond() -> None:
    assert datetime_from_ns(datetime_ns(MOMENT)) == MOMENT
    assert datetime_from_ns(datetime_ns(MOMENT) + 999) == MOMENT
    assert datetime_from_ns(0) == EPOCH
