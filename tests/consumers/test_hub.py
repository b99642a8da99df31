"""The US hub through a real Kafka broker (no mocks): releasability per feed, dead letters that
do not stop it, per-missile order, and at-least-once across a kill -9 of its process."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from consumers.dlq import ALLY_HEADER, REASON_HEADER, SOURCE_HEADER
from consumers.fleet import HUB, AllyFleet
from consumers.hub import HUB_DLQ_ALLY, HubService
from schemas import decode_event, encode_event, message_key
from schemas.headers import HUB_NS_HEADER, INGEST_APPEND_NS_HEADER
from schemas.models import EventKind, Nation
from tests.conftest import thread_cpus
from tests.consumers.support import (
    ALL,
    Producer,
    Record,
    by_key,
    end_offsets,
    event,
    headers_for,
    http_get,
    read_from,
    unique_key,
)
from trilink.latency import decode_sent_ns
from trilink.monitoring.contract import exposition_problems
from trilink.monitoring.discovery import HUB_JOB, target_file
from trilink.monitoring.names import HUB_FAMILIES
from trilink.platform.clients import admin_config
from trilink.platform.topics import feed_role, ingest_role
from trilink.runtime import PINNED_ROLES
from trilink.settings import Settings, get_settings

pytestmark = pytest.mark.integration

FEEDS = {n: feed_role(n.value) for n in ALL}


@pytest.fixture
def make_hub(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., HubService]]:
    """Start a :class:`HubService` in its own consumer group; stopped at teardown."""
    started: list[HubService] = []

    def make(**options: Any) -> HubService:
        options.setdefault("group_id", f"trilink-hub-test-{uuid.uuid4().hex[:8]}")
        options.setdefault("settings", Settings(state_dir=tmp_path / "state", bootstrap=None))
        hub = HubService(kafka_bootstrap, **options)
        started.append(hub)
        hub.start()
        assert hub.wait_ready(30), hub.health()
        return hub

    yield make
    for hub in started:
        hub.stop()


def _feed_starts(bootstrap: str) -> dict[Nation, dict[int, int]]:
    return {n: end_offsets(bootstrap, role) for n, role in FEEDS.items()}


def _ids(records: list[Record]) -> list[str]:
    return [r.headers["ce_id"].decode() for r in records]


@pytest.mark.parametrize("verify_body", [True, False], ids=["decoded-body", "headers"])
def test_korean_only_data_never_reaches_japans_feed(
    kafka_bootstrap: str, make_hub: Callable[..., HubService], verify_body: bool
) -> None:
    hub = make_hub(verify_body=verify_body)
    key = unique_key("hub-release")
    relayed = event(key, 1, kind=EventKind.TRACK_UPDATE, sensor=Nation.KR)  # relayed via the hub
    alert = event(key, 2, kind=EventKind.ALERT, sensor=Nation.KR)  # alerts stay KR-US
    status = event(key, 3, kind=EventKind.SENSOR_STATUS, sensor=Nation.KR)
    marked = event(key, 4, kind=EventKind.TRACK_UPDATE, sensor=Nation.KR, releasable=[Nation.US])
    # Released to every feed and sent last on the same key (one partition, read and written in
    # order by the hub): once a feed holds it, the hub has decided on everything before it.
    sentinel = event(key, 5, kind=EventKind.TRACK_UPDATE, sensor=Nation.KR)
    sentinel_id = str(sentinel.header.event_id)
    starts = _feed_starts(kafka_bootstrap)
    ingest_start = end_offsets(kafka_bootstrap, ingest_role("KR"))
    producer = Producer(kafka_bootstrap)
    for ev in (relayed, alert, status, marked, sentinel):
        producer.send_event(ev, role=ingest_role("KR"))
    producer.flush()
    producer.close()
    got = {
        n: read_from(
            kafka_bootstrap, FEEDS[n], starts[n], lambda rs: sentinel_id in _ids(rs), keep=by_key({key})
        )
        for n in ALL
    }
    everything = {str(e.header.event_id) for e in (relayed, alert, status, marked, sentinel)}
    assert set(_ids(got[Nation.KR])) == everything
    assert set(_ids(got[Nation.US])) == everything
    # JP: only the relayed kind; the producer's marking is checked only when the body is decoded.
    expected_jp = {str(relayed.header.event_id), sentinel_id} | (
        set() if verify_body else {str(marked.header.event_id)}
    )
    assert set(_ids(got[Nation.JP])) == expected_jp
    ingest = read_from(
        kafka_bootstrap, ingest_role("KR"), ingest_start, lambda rs: len(rs) >= 5, keep=by_key({key})
    )
    (partition,) = {r.partition for r in ingest}
    for records in got.values():
        for r in records:
            assert r.partition == partition  # one missile, one partition, sensor to ally
            assert decode_sent_ns(r.headers[HUB_NS_HEADER]) is not None
            assert decode_sent_ns(r.headers[INGEST_APPEND_NS_HEADER]) is not None
            assert decode_event(r.value or b"").header.correlation_key == key
    report = hub.report()
    assert report.withheld["JP"]["alert"] >= 1 and report.withheld["JP"]["sensor_status"] >= 1
    status_code, body = http_get(hub.http_port or 0, "/metrics")
    assert status_code == 200
    assert exposition_problems(body.decode(), HUB_FAMILIES) == []
    status_code, _ = http_get(hub.http_port or 0, "/healthz")
    assert status_code == 200
    announced = target_file(HUB_JOB, hub.target_instance, hub.settings)
    assert announced.exists() and f":{hub.http_port}" in announced.read_text()
    hub.stop()
    assert not announced.exists()


def test_hostile_records_are_dead_lettered_and_the_hub_goes_on(
    kafka_bootstrap: str, make_hub: Callable[..., HubService]
) -> None:
    hub = make_hub()
    key = unique_key("hub-hostile")
    good = event(key, 9, sensor=Nation.JP)
    forged = event(key, 1, sensor=Nation.KR)  # a KR body on JP's ingest topic
    mislabelled = event(key, 2, kind=EventKind.ALERT, sensor=Nation.JP)
    mislabelled_headers = [
        (n, v.replace(b"alert", b"track_update") if n == "ce_type" else v)
        for n, v in headers_for(mislabelled)
    ]
    dlq_start = end_offsets(kafka_bootstrap, "dead_letter")
    starts = _feed_starts(kafka_bootstrap)
    producer = Producer(kafka_bootstrap)
    role = ingest_role("JP")
    producer.send_raw(b"not avro at all", key.encode(), headers_for(event(key, 3)), role=role)
    producer.send_raw(encode_event(good), key.encode(), [("ce_id", b"x")], role=role)
    producer.send_raw(None, key.encode(), headers_for(event(key, 4)), role=role)
    producer.send_event(forged, role=role)
    producer.send_raw(encode_event(mislabelled), message_key(mislabelled), mislabelled_headers, role=role)
    producer.send_event(good, role=role)
    producer.flush()
    producer.close()
    dead = read_from(
        kafka_bootstrap,
        "dead_letter",
        dlq_start,
        lambda rs: len(rs) >= 5,
        keep=lambda r: r.key == key.encode() and r.headers.get(ALLY_HEADER) == HUB_DLQ_ALLY.encode(),
    )
    reasons = Counter(r.headers[REASON_HEADER].decode() for r in dead)
    assert reasons == Counter(
        {"bad_magic": 1, "bad_header": 1, "no_value": 1, "nation_mismatch": 1, "header_mismatch": 1}
    ), reasons
    assert all(r.headers[SOURCE_HEADER].decode().startswith("trilink.ingest.jp.v1/") for r in dead)
    for nation in ALL:  # the good record after them went through to every feed
        records = read_from(
            kafka_bootstrap, FEEDS[nation], starts[nation], lambda rs: len(rs) >= 1, keep=by_key({key})
        )
        assert _ids(records) == [str(good.header.event_id)], nation
    assert hub.running and hub.error is None
    assert sum(hub.report().dead_letters.values()) >= 5


def test_order_per_missile_holds_through_the_hub(
    kafka_bootstrap: str, make_hub: Callable[..., HubService]
) -> None:
    make_hub()
    keys = [unique_key(f"hub-order-{i}") for i in range(4)]
    starts = _feed_starts(kafka_bootstrap)
    producer = Producer(kafka_bootstrap)
    sent: dict[str, list[str]] = {k: [] for k in keys}
    for sequence in range(60):
        for key in keys:
            ev = event(key, sequence, sensor=Nation.US)
            producer.send_event(ev, role=ingest_role("US"))
            sent[key].append(str(ev.header.event_id))
    producer.flush()
    producer.close()
    for nation in ALL:
        records = read_from(
            kafka_bootstrap,
            FEEDS[nation],
            starts[nation],
            lambda rs: len(rs) >= 240,
            keep=by_key(set(keys)),
            timeout_s=40,
        )
        for key in keys:
            mine = [r for r in records if r.key == key.encode()]
            assert _ids(mine) == sent[key], (nation, key)
            assert len({r.partition for r in mine}) == 1


def assert_pinned(fleet: AllyFleet) -> None:
    """Each service process, every thread of it, on the CPU the fleet placed it on (this
    machine's CPUs, as ``cpu_pinning=on`` deals them out; one CPU: not pinned)."""
    allowed = sorted(os.sched_getaffinity(0))
    pinning = len(allowed) >= 2
    for name, pid in fleet.pids().items():
        role = "hub" if name == HUB else f"ally-{name}"
        expected = {allowed[PINNED_ROLES.index(role) % len(allowed)]} if pinning else set(allowed)
        assert fleet.placement[name] == (min(expected) if pinning else None), name
        assert pid is not None
        masks = thread_cpus(pid)
        assert len(masks) > 3, name  # the clients' IO threads were started after the pinning
        assert [tid for tid, cpus in masks.items() if cpus != expected] == [], name


@pytest.fixture
def pinning_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``TRILINK_CPU_PINNING=on`` for the fleet this test starts."""
    monkeypatch.setenv("TRILINK_CPU_PINNING", "on")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_nothing_lost_across_a_hub_kill_9(kafka_bootstrap: str, tmp_path: Path, pinning_on: None) -> None:
    """The hub's process is killed mid-stream and started again in the same group: every event
    reaches every ally it is released to; what a feed carries twice the allies suppress. The
    fleet's processes run pinned to CPUs (``TRILINK_CPU_PINNING=on``)."""
    run = uuid.uuid4().hex[:8]
    fleet = AllyFleet(
        kafka_bootstrap,
        {a: f"trilink-ally-{a.lower()}-hubkill-{run}" for a in ("US", "JP", "KR")},
        f"hubkill-{run}",
        topology="hub",
        rebuild_per_partition=64,
    )
    key_prefix = unique_key("hub-kill")
    total = 1500
    feed_starts = _feed_starts(kafka_bootstrap)
    ally_starts = {n: end_offsets(kafka_bootstrap, f"ally.{n.value}") for n in ALL}
    fleet.start()
    try:
        assert_pinned(fleet)
        producer = Producer(kafka_bootstrap)
        ids: list[str] = []
        keys = {f"{key_prefix}-{i % 12}" for i in range(total)}

        def send_all() -> None:
            for i in range(total):
                ev = event(f"{key_prefix}-{i % 12}", i // 12, sensor=ALL[i % 3])
                ids.append(str(ev.header.event_id))
                producer.send_event(ev, role=ingest_role(ALL[i % 3].value))
                time.sleep(0.002)
            producer.flush()

        sender = threading.Thread(target=send_all)
        sender.start()
        time.sleep(1.2)
        fleet.kill(HUB)
        assert not fleet.alive()[HUB]
        time.sleep(0.5)
        fleet.start_hub()
        assert_pinned(fleet)  # the restarted hub is placed as the first one was
        # It took the dead one's place as the same static member: its group holds one member,
        # under the hub's client id (a new dynamic member waited out the dead one's session).
        admin: Any = KafkaAdminClient(**admin_config(kafka_bootstrap, "test-hub-kill-admin"))
        try:
            members = admin.describe_groups([fleet.hub_group_id])[fleet.hub_group_id]["members"]
        finally:
            admin.close()
        assert [m["group_instance_id"] for m in members] == [f"trilink-hub-hubkill-{run}"]
        sender.join(60)
        producer.close()
        for nation in ALL:
            delivered = read_from(
                kafka_bootstrap,
                f"ally.{nation.value}",
                ally_starts[nation],
                lambda rs: len({r.headers["ce_id"] for r in rs}) >= total,
                keep=by_key(keys),
                timeout_s=60,
                settle_s=2.0,
            )
            got = _ids(delivered)
            assert set(got) == set(ids), (nation, len(set(ids) - set(got)))  # nothing lost
            assert len(got) == len(set(got)), nation  # nothing delivered twice
        fed = read_from(
            kafka_bootstrap,
            FEEDS[Nation.JP],
            feed_starts[Nation.JP],
            lambda rs: False,
            keep=by_key(keys),
            timeout_s=3,
        )
        print(
            f"JP feed: {len(fed)} records for {total} events ({len(fed) - len(set(_ids(fed)))} written twice)"
        )
    finally:
        fleet.stop()
