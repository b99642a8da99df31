"""Unit tests of the ally service's pure parts: no broker, no sockets."""

from __future__ import annotations

import re
import uuid
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from consumers.dedup import DedupWindow, rebuild_order
from consumers.dlq import DLQ_HEADERS, MAX_ERROR_BYTES, dead_letter_headers, truncate_utf8
from consumers.errors import DLQ_REASONS, EmptyRecordError, HeaderMismatchError
from consumers.httpd import parse_kinds
from consumers.ledger import Ledger
from consumers.measure import datetime_ns
from consumers.metrics import CHANNELS, NO_CHANNEL, AllyMetrics
from consumers.policy_filter import WithholdReason, withhold_reason
from consumers.sse import SseHub, SseItem, SubscriberQueue, sse_frame
from schemas.errors import DECODE_REASONS
from schemas.models import EventKind, Nation
from schemas.samples import LAUNCH_TIME, sample_event
from trilink.latency import HOPS
from trilink.policy import SharingPolicy, default_policy, parse_policy

pytestmark = pytest.mark.unit

NATIONS = list(Nation)


RELAYED = (
    EventKind.LAUNCH_DETECTION,
    EventKind.TRACK_UPDATE,
    EventKind.IMPACT_PREDICTION,
    EventKind.TRACK_END,
)


def _policy(hub_relay: bool, relayed: tuple[EventKind, ...] = RELAYED) -> SharingPolicy:
    return parse_policy(
        f"""
hub = "US"
hub_relay = {"true" if hub_relay else "false"}
relayed_kinds = {[k.value for k in relayed]!r}
[nations.US]
direct = ["US", "JP", "KR"]
[nations.JP]
direct = ["JP", "US"]
via_hub = ["KR"]
[nations.KR]
direct = ["KR", "US"]
via_hub = ["JP"]
"""
    )


def _forbidden(
    policy_relays: bool, relayed: tuple[EventKind, ...], sensor: Nation, ally: Nation, kind: EventKind
) -> bool:
    """The rule restated: only JP<->KR is ever forbidden, and only when the hub does not relay the kind."""
    third_party = {sensor, ally} == {Nation.JP, Nation.KR}
    return third_party and not (policy_relays and kind in relayed)


# ------------------------------------------------------------------ sharing policy


@settings(max_examples=500, deadline=None)
@given(
    sensor=st.sampled_from(NATIONS),
    others=st.sets(st.sampled_from(NATIONS)),
    ally=st.sampled_from(NATIONS),
    kind=st.sampled_from(list(EventKind)),
    relay=st.tuples(st.booleans(), st.lists(st.sampled_from(list(EventKind)), unique=True).map(tuple)),
)
def test_never_delivers_what_is_not_releasable_or_forbidden(
    sensor: Nation,
    others: set[Nation],
    ally: Nation,
    kind: EventKind,
    relay: tuple[bool, tuple[EventKind, ...]],
) -> None:
    hub_relay, relayed = relay
    releasable = sorted({sensor, *others}, key=NATIONS.index)
    event = sample_event(kind, sensor_nation=sensor, releasable_to=releasable)
    policy = _policy(hub_relay, relayed)
    reason = withhold_reason(ally, event, policy)
    forbidden = _forbidden(hub_relay, relayed, sensor, ally, kind)
    assert (reason is None) == (ally in releasable and not forbidden)
    if ally not in releasable:
        assert reason is WithholdReason.NOT_RELEASABLE
    elif forbidden:
        assert reason is WithholdReason.POLICY_FORBIDS


@settings(max_examples=200, deadline=None)
@given(sensor=st.sampled_from(NATIONS), ally=st.sampled_from(NATIONS), kind=st.sampled_from(list(EventKind)))
def test_a_header_claiming_everyone_cannot_release_what_the_shipped_policy_forbids(
    sensor: Nation, ally: Nation, kind: EventKind
) -> None:
    event = sample_event(kind, sensor_nation=sensor, releasable_to=NATIONS)  # the producer claims all
    reason = withhold_reason(ally, event, default_policy())
    if _forbidden(True, RELAYED, sensor, ally, kind):
        assert reason is WithholdReason.POLICY_FORBIDS
    else:
        assert reason is None


def test_policy_is_checked_even_when_the_producer_marks_releasable() -> None:
    event = sample_event(sensor_nation=Nation.KR, releasable_to=[Nation.KR, Nation.JP])
    assert withhold_reason(Nation.JP, event, _policy(hub_relay=False)) is WithholdReason.POLICY_FORBIDS
    assert withhold_reason(Nation.JP, event, _policy(hub_relay=True)) is None
    assert withhold_reason(Nation.US, event, default_policy()) is WithholdReason.NOT_RELEASABLE


def test_a_japanese_alert_is_withheld_by_korea_and_delivered_to_the_us_and_japan() -> None:
    policy = default_policy()
    marked = policy.releasable_to(Nation.JP, EventKind.ALERT)
    assert marked == [Nation.US, Nation.JP]
    as_produced = sample_event(EventKind.ALERT, sensor_nation=Nation.JP, releasable_to=marked)
    claims_all = sample_event(EventKind.ALERT, sensor_nation=Nation.JP, releasable_to=NATIONS)
    for event in (as_produced, claims_all):
        assert withhold_reason(Nation.US, event, policy) is None
        assert withhold_reason(Nation.JP, event, policy) is None
    assert withhold_reason(Nation.KR, as_produced, policy) is WithholdReason.NOT_RELEASABLE
    assert withhold_reason(Nation.KR, claims_all, policy) is WithholdReason.POLICY_FORBIDS
    # the same sensor's trajectory data does reach Korea, through the hub
    track = sample_event(EventKind.TRACK_UPDATE, sensor_nation=Nation.JP, releasable_to=NATIONS)
    assert withhold_reason(Nation.KR, track, policy) is None


# ------------------------------------------------------------------ de-duplication window


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 50), ids=st.lists(st.integers(0, 80), max_size=300))
def test_window_never_exceeds_capacity_and_remembers_the_newest(capacity: int, ids: list[int]) -> None:
    window = DedupWindow(capacity)
    recent: list[int] = []  # reference LRU
    for n in ids:
        event_id = UUID(int=n)
        new = window.check_and_add(event_id)
        assert new == (n not in recent)
        if n in recent:
            recent.remove(n)
        recent.append(n)
        recent = recent[-capacity:]
        assert len(window) <= capacity
        assert {UUID(int=i) for i in recent} == {u for u in (UUID(int=i) for i in range(81)) if u in window}


def test_window_rejects_a_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        DedupWindow(0)


def test_discard_lets_an_id_through_again() -> None:
    window = DedupWindow(4)
    event_id = uuid.uuid4()
    assert window.check_and_add(event_id)
    assert not window.check_and_add(event_id)
    window.discard(event_id)
    assert window.check_and_add(event_id)


def test_rebuild_keeps_the_newest_ids_by_append_time_in_order() -> None:
    ids = [UUID(int=i) for i in range(10)]
    # (append_ms, partition, offset, id): two partitions interleaved in time, one id repeated
    tail = [(100 + i, i % 2, i // 2, ids[i]) for i in range(10)] + [(50, 0, 99, ids[9])]
    ordered = rebuild_order(tail, capacity=4)
    assert ordered == ids[6:10]
    window = DedupWindow(4)
    window.load(ordered)
    assert all(i in window for i in ids[6:])
    assert not any(i in window for i in ids[:6])
    # the oldest of the rebuilt ids is the first evicted
    window.check_and_add(uuid.uuid4())
    assert ids[6] not in window
    assert ids[7] in window


def test_rebuild_of_an_empty_tail_is_empty() -> None:
    assert rebuild_order([], capacity=10) == []


# ------------------------------------------------------------------ SSE queues


def _item(n: int, kind: EventKind = EventKind.TRACK_UPDATE) -> SseItem:
    return SseItem(kind, sse_frame(str(UUID(int=n)), kind.value, b'{"n":%d}' % n), 0, None)


def test_full_queue_drops_the_oldest_and_keeps_order() -> None:
    queue = SubscriberQueue(capacity=3)
    dropped = [queue.offer(_item(n)) for n in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert queue.dropped == 2
    assert [item.frame for item in queue.take(0)] == [_item(n).frame for n in (2, 3, 4)]
    assert queue.take(0) == []


def test_hub_never_blocks_on_a_stalled_subscriber_and_counts_its_drops() -> None:
    drops: list[int] = []
    counts: list[int] = []
    hub = SseHub(queue_size=2, on_drop=drops.append, on_count=counts.append)
    stalled = hub.subscribe()
    reader = hub.subscribe()
    alerts_only = hub.subscribe(frozenset({EventKind.ALERT}))
    received = []
    for n in range(10):
        hub.publish(_item(n))
        received += reader.take(0)  # this one keeps up
    hub.publish(_item(10, EventKind.ALERT))
    received += reader.take(0)
    assert len(received) == 11
    assert stalled.dropped == 9
    assert sum(drops) == 9
    assert [i.kind for i in alerts_only.take(0)] == [EventKind.ALERT]
    hub.unsubscribe(stalled)
    assert counts == [1, 2, 3, 2]
    assert stalled.closed


def test_closed_queue_returns_at_once() -> None:
    queue = SubscriberQueue(capacity=1)
    queue.close()
    assert queue.take(10.0) == []
    assert queue.offer(_item(1)) == 0


def test_sse_frame_format() -> None:
    frame = sse_frame("abc", "alert", b'{"x":1}')
    assert frame == b'id: abc\nevent: alert\ndata: {"x":1}\n\n'


def test_kind_filter_parsing() -> None:
    assert parse_kinds("") is None
    assert parse_kinds("kind=track_update,alert") == {EventKind.TRACK_UPDATE, EventKind.ALERT}
    assert parse_kinds("kind=alert&kind=track_end") == {EventKind.ALERT, EventKind.TRACK_END}
    with pytest.raises(ValueError, match="bogus"):
        parse_kinds("kind=bogus")


# ------------------------------------------------------------------ dead letters


def test_dead_letter_headers_keep_the_original_and_add_four() -> None:
    original = [("ce_id", b"x"), ("trilink_dlq_reason", b"stale"), ("empty", None)]
    headers = dead_letter_headers(
        original,
        reason="bad_magic",
        error="expected C3 01",
        topic="t",
        partition=3,
        offset=42,
        ally="JP",
    )
    assert headers[:2] == [("ce_id", b"x"), ("empty", b"")]
    extra = dict(headers[2:])
    assert list(extra) == list(DLQ_HEADERS)
    assert extra["trilink_dlq_reason"] == b"bad_magic"
    assert extra["trilink_dlq_error"] == b"expected C3 01"
    assert extra["trilink_dlq_source"] == b"t/3/42"
    assert extra["trilink_dlq_ally"] == b"JP"


@given(st.text(max_size=2000))
def test_error_header_is_truncated_on_a_character_boundary(text: str) -> None:
    raw = truncate_utf8(text, MAX_ERROR_BYTES)
    assert len(raw) <= MAX_ERROR_BYTES
    assert text.encode("utf-8").startswith(raw)
    assert text.startswith(raw.decode("utf-8"))  # never a split character


def test_dlq_reasons_cover_decode_and_consumer_checks() -> None:
    assert DECODE_REASONS < DLQ_REASONS
    assert {EmptyRecordError.REASON, HeaderMismatchError.REASON} <= DLQ_REASONS
    assert all(re.fullmatch(r"[a-z_]+", r) for r in DLQ_REASONS)


# ------------------------------------------------------------------ metrics


def test_metric_names_units_and_bounded_labels() -> None:
    registry = CollectorRegistry()
    AllyMetrics("KR", registry)  # its families share the registry under test
    book = Ledger("KR")
    registry.register(book)
    for hop in HOPS:
        for kind in EventKind:
            channel = CHANNELS[0] if hop in ("receive_to_deliver", "end_to_end") else NO_CHANNEL
            book.record_ns(hop, kind.value, channel, 1_000_000)
    book.dead_letter("bad_magic")
    allowed_labels = {"ally", "hop", "kind", "channel", "reason", "topic", "event", "sensor", "missing", "le"}
    bounded_values = {
        "ally": {n.value for n in Nation},
        "missing": {n.value for n in Nation},
        "hop": set(HOPS),
        "kind": {k.value for k in EventKind},
        "channel": {*CHANNELS, NO_CHANNEL},
    }
    families = list(registry.collect())
    assert families
    for family in families:
        assert family.name.startswith("trilink_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        for sample in family.samples:
            assert set(sample.labels) <= allowed_labels, (family.name, sample.labels)
            for label, values in bounded_values.items():
                if label in sample.labels:
                    assert sample.labels[label] in values, (family.name, sample.labels)
    rows = book.rows()
    merged = [r for r in rows if r["kind"] == "*" and r["hop"] == "end_to_end"]
    assert merged[0]["count"] == len(EventKind)
    assert merged[0]["p50_ms"] == pytest.approx(1.0, rel=0.01)


def test_latency_buckets_include_the_pipeline_objective() -> None:
    registry = CollectorRegistry()
    ledger = Ledger("US")
    registry.register(ledger)
    ledger.record_ns("end_to_end", "alert", "kafka", 10_000_000)
    text = "\n".join(
        f"{s.name}{s.labels}" for f in registry.collect() for s in f.samples if s.name.endswith("_bucket")
    )
    assert "'le': '0.05'" in text


def test_datetime_ns_is_exact() -> None:
    assert datetime_ns(LAUNCH_TIME) == 1_704_067_200 * 10**9
