"""Hot-path benchmark: trilink's publisher and ally service against kafka-python's own floor, same records.

Four phases in one run, each in its own subprocess so ``time.process_time()`` (all threads of that
process, kafka-python's IO threads included) is that phase's CPU alone:

1. publish: the scenario's events (``--scenario``, default salvo, played as several runs if it has
   fewer than ``--events``) are generated (not timed); ``SensorPublisher.prepare`` (Avro encoding,
   headers, partition) is timed on its own, as ``trilink run`` does it before its clock starts,
   then ``SensorPublisher.publish(prepared, speed=None)`` (stamp, send, metrics, flush). The
   rows print both: publish alone, and encoding plus publish. End offsets of every warnings and
   sensor-status partition before and after delimit the records all later phases read.
2. produce floor: those records, read into memory first (not timed), re-sent (same key, value,
   headers) by a plain ``KafkaProducer(**producer_config(...))`` to a scratch topic, then flush.
   The publisher's ratio is against this floor.
3. consume+produce floor: a group-less ``KafkaConsumer`` (``consumer_config``) assigned and seeked
   to the start offsets polls the records and sends each to a scratch topic, then flush. The ally
   services' ratio is against this floor.
4. ally service: one ``AllyService`` per ``--allies`` entry with all three channels on (ally topic,
   audit file, one live SSE viewer in this driver). Its fresh group's offsets are committed at the
   start offsets beforehand, so it reads the same records as a backlog, alone on the machine like
   phase 3; the viewer subscribes before the service can poll. CPU from ``wait_ready`` until every
   released record is acknowledged on the ally topic, in the audit file and at the viewer; events/s
   from ready until the service counts all of them delivered on all three channels (sse: queued).
   ``end_to_end`` latency includes the wait in the backlog; ``receive_to_deliver`` is the service's.

5. hub (``--hub``, default both): the same number of events published by the sensor publisher in
   the hub topology (to the nations' ingest topics); the hub's floor, a kafka-python consumer that
   sends each record once per feed the sharing policy releases it to (the hub's irreducible work);
   then ``HubService`` over the same records as a backlog, routing on the decoded body and on the
   headers alone, CPU from ready until every record is routed and every feed write acknowledged.

Ratios within one run are the point: the machine is shared and noisy, absolute numbers drift
between runs, ratios to a floor measured minutes apart much less. Prints numbers, asserts nothing;
deletes its scratch topics and consumer groups at the end.

``--repeat N`` runs phases 1, 3 and 4 N times, alternated (fresh records each time: a service
delivers an event id once, so the same records again would all be duplicates to it), and prints
each pair's ratio and their median: one pair's ratio moved between 2.26x and 2.47x in three runs
on one afternoon.

Run: ``TRILINK_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_hotpath.py [--events 20000]
[--scenario salvo] [--allies US,JP,KR] [--repeat N] [--json FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trilink.logs import setup_logging  # noqa: E402
from trilink.platform.clients import admin_config, consumer_config, producer_config  # noqa: E402
from trilink.platform.groups import delete_groups  # noqa: E402
from trilink.platform.topics import topic_name  # noqa: E402
from trilink.processes import thread_cpu_s  # noqa: E402

Offsets = dict[str, int]  # "topic:partition" -> offset (JSON-able)
INPUT_ROLES = ("warnings", "sensor_status")
CHANNELS = ("kafka", "audit", "sse")


def _tp(key: str) -> Any:
    from kafka import TopicPartition

    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition))


def end_offsets(bootstrap: str, roles: tuple[str, ...] = INPUT_ROLES) -> Offsets:
    """End offset of every partition of the warnings and sensor-status topics (or ``roles``)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**consumer_config(bootstrap, None, "bench-hotpath-offsets"))
    try:
        topics = [topic_name(role) for role in roles]
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return {f"{tp.topic}:{tp.partition}": int(n) for tp, n in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def open_range(p: dict[str, Any], client_id: str) -> tuple[Any, dict[Any, int]]:
    """A group-less consumer positioned at ``p["start"]``; returns it and each partition's stop offset."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**consumer_config(p["bootstrap"], None, client_id))
    stops = {_tp(k): end for k, end in p["end"].items() if end > p["start"][k]}
    consumer.assign(list(stops))
    for tp in stops:
        consumer.seek(tp, p["start"][f"{tp.topic}:{tp.partition}"])
    consumer.end_offsets(list(stops))  # connected and leaders known before anything is timed
    return consumer, stops


def drain(consumer: Any, stops: dict[Any, int], on_record: Callable[[Any], object]) -> int:
    """Poll until every partition reached its stop offset; ``on_record`` gets each record before it."""
    stops, n, deadline = dict(stops), 0, time.monotonic() + 300
    while stops:
        if time.monotonic() > deadline:
            raise RuntimeError(f"records still missing on {sorted(map(str, stops))}")
        for tp, records in consumer.poll(timeout_ms=200, max_records=500).items():
            stop = stops.get(tp)
            if stop is None or not records:
                continue
            for record in records:
                if record.offset < stop:
                    on_record(record)
                    n += 1
            if records[-1].offset + 1 >= stop:
                del stops[tp]
                consumer.pause(tp)
    return n


# ------------------------------------------------------------------ workers (one per subprocess)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, then the process CPU seconds (every thread of this process) and wall seconds it took."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu0, time.perf_counter() - t0


def work_publish(p: dict[str, Any]) -> dict[str, Any]:
    from producers.publisher import Run, SensorPublisher, for_run
    from producers.scenario import load_scenario, simulate

    scenario, runs = load_scenario(p["scenario"]), 0
    events: list[Any] = []
    while len(events) < p["events"]:  # play the scenario again (a fresh run: new ids and keys)
        runs += 1
        events.extend(for_run(simulate(scenario), Run.new(), scenario.start_time))
    del events[p["events"] :]
    publisher = SensorPublisher(
        p["bootstrap"], client_id="bench-hotpath-sensors", topology=p.get("topology", "direct")
    )
    try:
        prepared, encode_cpu, encode_wall = timed(lambda: publisher.prepare(events))
        report, cpu, wall = timed(lambda: publisher.publish(prepared, speed=None))
    finally:
        publisher.close()
    return {
        "events": report.sent,
        "failed": report.failed,
        "runs": runs,
        "cpu_s": cpu,
        "wall_s": wall,
        "encode_cpu_s": encode_cpu,
        "encode_wall_s": encode_wall,
    }


def work_produce(p: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaProducer

    consumer, stops = open_range(p, "bench-hotpath-read")
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    drain(consumer, stops, lambda r: records.append((r.key or b"", r.value or b"", list(r.headers or []))))
    consumer.close()
    producer = KafkaProducer(**producer_config(p["bootstrap"], "bench-hotpath-produce"))
    topic = p["scratch"]
    producer.partitions_for(topic)  # metadata before timing

    def send_all() -> None:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush()

    _, cpu, wall = timed(send_all)
    producer.close()
    n, counts = max(len(records), 1), [len(h) for _, _, h in records] or [0]
    return {"events": len(records), "cpu_s": cpu, "wall_s": wall, "headers_per_record": sum(counts) / n} | {
        "headers_min": min(counts),
        "headers_max": max(counts),
        "key_bytes": sum(len(k) for k, _, _ in records) / n,
        "value_bytes": sum(len(v) for _, v, _ in records) / n,
        "header_bytes": sum(len(k.encode()) + len(v or b"") for _, _, h in records for k, v in h) / n,
    }


def work_relay(p: dict[str, Any]) -> dict[str, Any]:
    """Consume each record and send it on; with ``fanout`` (the hub's floor) send it once per
    feed the hub releases it to (looked up by offset, counted before the clock starts)."""
    from kafka import KafkaProducer

    fanout: dict[str, int] | None = None
    if p.get("fanout"):
        fanout = fanout_of_records(p)
    acks = acks_of_records(p) if p.get("ack_scratch") else {}
    consumer, stops = open_range(p, "bench-hotpath-relay")
    producer = KafkaProducer(**producer_config(p["bootstrap"], "bench-hotpath-relay"))
    topic, send = p["scratch"], producer.send
    producer.partitions_for(topic)
    reader: threading.Thread | None = None
    if acks:
        ack_topic = p["ack_scratch"]
        producer.partitions_for(ack_topic)
        reader, acks_read = read_back(p["bootstrap"], ack_topic, len(acks))

    def once(r: Any) -> None:
        send(topic, key=r.key, value=r.value, headers=r.headers)

    def acknowledged(r: Any) -> None:
        send(topic, key=r.key, value=r.value, headers=r.headers)
        ack = acks.get(f"{r.topic}:{r.partition}:{r.offset}")
        if ack is not None:
            send(ack_topic, key=ack[0], value=ack[1], headers=ack[2])

    def per_feed(r: Any) -> None:
        assert fanout is not None
        for _ in range(fanout[f"{r.topic}:{r.partition}:{r.offset}"]):
            send(topic, key=r.key, value=r.value, headers=r.headers)

    def relay() -> int:
        if reader is not None:
            reader.start()
        n = drain(consumer, stops, per_feed if fanout is not None else acknowledged if acks else once)
        producer.flush()
        if reader is not None:
            reader.join(300)
            if acks_read[0] < len(acks):
                raise RuntimeError(f"read back {acks_read[0]} of {len(acks)} acknowledgements")
        return n

    threads0 = thread_cpu_s()
    n, cpu, wall = timed(relay)
    threads1 = thread_cpu_s()
    batching = producer_batching(producer)
    producer.close()
    consumer.close()
    writes = n if fanout is None else sum(fanout.values())
    threads_cpu_s = {name: s - threads0.get(name, 0.0) for name, s in threads1.items()}
    return {
        "events": n,
        "cpu_s": cpu,
        "wall_s": wall,
        "writes": writes,
        "threads_cpu_s": threads_cpu_s,
        "producer": batching,
        "acks": len(acks),
    }


def acks_of_records(p: dict[str, Any]) -> dict[str, tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """Per record the ally acknowledges (an alert or launch detection): the acknowledgement record
    (key, value, headers) its service would send, encoded before the clock starts."""
    from schemas.acks import ACKNOWLEDGED_KINDS, Acknowledgement, ack_headers, encode_ack
    from schemas.codec import decode_event
    from schemas.headers import parse_headers

    consumer, stops = open_range(p, "bench-hotpath-acks")
    out: dict[str, tuple[bytes, bytes, list[tuple[str, bytes]]]] = {}

    def build(r: Any) -> None:
        parsed = parse_headers(r.headers)
        if parsed.kind not in ACKNOWLEDGED_KINDS:
            return
        event = decode_event(r.value)
        ack = Acknowledgement(
            event_id=parsed.event_id,
            correlation_key=event.header.correlation_key,
            kind=event.kind,
            ally=p["ally"],
            instance_id="bench-hotpath-floor",
            sent_ns=parsed.sent_ns,
            delivered_ns=time.time_ns(),
        )
        out[f"{r.topic}:{r.partition}:{r.offset}"] = (
            ack.correlation_key.encode(),
            encode_ack(ack),
            ack_headers(ack),
        )

    drain(consumer, stops, build)
    consumer.close()
    return out


def read_back(bootstrap: str, topic: str, expected: int) -> tuple[threading.Thread, list[int]]:
    """A group-less consumer (a thread) reading ``topic`` from its end until ``expected`` records
    came: what a service's acknowledgement reader does with the allies' acknowledgements."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**consumer_config(bootstrap, None, "bench-hotpath-ack-reader"))
    partitions = [TopicPartition(topic, i) for i in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)  # pinned before anything is sent
    seen = [0]

    def run() -> None:
        deadline = time.monotonic() + 300
        while seen[0] < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100, max_records=500).values():
                seen[0] += len(records)
        consumer.close()

    return threading.Thread(target=run, name="ack-reader-floor", daemon=True), seen


def fanout_of_records(p: dict[str, Any]) -> dict[str, int]:
    """Per ingest record (``topic:partition:offset``): how many feeds the policy releases it to."""
    from schemas.headers import parse_headers
    from schemas.models import Nation
    from trilink.platform.topics import ingest_role
    from trilink.policy import default_policy

    policy = default_policy()
    nation_of = {topic_name(ingest_role(n.value)): n for n in Nation}
    consumer, stops = open_range(p, "bench-hotpath-fanout")
    out: dict[str, int] = {}

    def count(r: Any) -> None:
        kind = parse_headers(r.headers).kind
        out[f"{r.topic}:{r.partition}:{r.offset}"] = len(policy.releasable_to(nation_of[r.topic], kind))

    drain(consumer, stops, count)
    consumer.close()
    return out


def work_hub(p: dict[str, Any]) -> dict[str, Any]:
    """The US hub over the ingest records as a backlog (its group committed at their start):
    CPU from ready until every record is routed and every feed write acknowledged."""
    from consumers.hub import HubService
    from trilink.runtime import tune_service

    n, writes = p["events"], p["writes"]
    hub = HubService(
        p["bootstrap"],
        group_id=p["group"],
        instance_id=f"bench-hotpath-{os.getpid()}",
        http_port=None,
        verify_body=p["verify_body"],
        linger_ms=p.get("linger_ms", 0),
    )

    def released() -> int:
        return sum(hub.released_count(a) for a in ("US", "JP", "KR"))

    hub.start()
    tune_service()
    try:
        if not hub.wait_ready(120):
            raise RuntimeError("hub not ready within 120 s")
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = time.monotonic() + p["timeout_s"]
        while not (done := hub.settled_count() >= n and released() >= writes) and time.monotonic() < deadline:
            time.sleep(0.02)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        hub.stop()
    report = hub.report()
    return {
        "events": hub.settled_count(),
        "writes": released(),
        "settled": done,
        "cpu_s": cpu,
        "wall_s": wall,
        "dead_letters": report.dead_letters,
        "latency": [r.model_dump() for r in report.latency],
        "error": report.error,
    }


def producer_batching(producer: Any) -> dict[str, float]:
    """kafka-python's own batching figures for ``producer`` (records per request, bytes per batch);
    empty, as trilink's clients run with the library's metrics off (``producer_config``)."""
    metrics = (producer.metrics() or {}).get("producer-metrics", {})
    if not metrics:
        return {}
    return {k: round(float(metrics.get(k) or 0.0), 1) for k in ("records-per-request-avg", "batch-size-avg")}


def work_service(p: dict[str, Any]) -> dict[str, Any]:
    """Talks to the driver over stdio: prints PORT, reads GO, prints FRAMES n, reads STOP, returns."""
    from consumers.service import AllyService
    from trilink.runtime import tune_service

    n, out = p["events"], dict[str, Any]()
    service = AllyService(
        p["ally"],
        p["bootstrap"],
        group_id=p["group"],
        instance_id=f"bench-hotpath-{os.getpid()}",
        audit_dir=Path(p["audit_dir"]),
        http_port=0,
        offset_reset="latest",  # not consulted: the driver committed this group's start offsets
        topology="direct",  # it reads the shared warnings topic phase 1 wrote, whatever TRILINK_TOPOLOGY says
    )

    def released() -> int:
        return service.count("received") - service.count("withheld") - service.count("duplicates_suppressed")

    def settled() -> bool:
        if service.count("received") + service.count("dead_letters") < n:
            return False
        return all(service.delivered_count(ch) >= released() for ch in CHANNELS)

    service.start()
    tune_service()  # as `trilink ally` and the fleet do
    try:
        print(f"PORT {service.http_port}", flush=True)
        sys.stdin.readline()  # GO: the driver's viewer is subscribed
        if not service.wait_ready(120):
            raise RuntimeError("service not ready within 120 s")
        threads0 = thread_cpu_s()
        cpu0, t0 = time.process_time(), time.perf_counter()
        out["received_at_ready"] = service.count("received")
        deadline = time.monotonic() + p["timeout_s"]
        while not (done := settled()) and time.monotonic() < deadline:
            time.sleep(0.02)
        out |= {
            "settled": done,
            "wall_s": time.perf_counter() - t0,
            "cpu_s_settled": time.process_time() - cpu0,
        }
        threads1 = thread_cpu_s()
        out["threads_cpu_s"] = {name: threads1[name] - threads0.get(name, 0.0) for name in threads1}
        out["producer"] = producer_batching(service._producer)
        print(f"FRAMES {service.delivered_count('sse') - service.count('subscriber_drops')}", flush=True)
        sys.stdin.readline()  # STOP: the viewer has every frame (or the driver gave up waiting)
        out["cpu_s"] = time.process_time() - cpu0
    finally:
        service.stop()
    report = service.report().model_dump()
    hops = ("end_to_end", "receive_to_deliver")
    out["latency"] = [r for r in report["latency"] if r["kind"] == "*" and r["hop"] in hops]
    out["events"] = service.count("received") + service.count("dead_letters")
    return out | {"released": released(), "counts": report["counts"], "error": report["error"]}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "publish": work_publish,
    "produce": work_produce,
    "relay": work_relay,
    "service": work_service,
    "hub": work_hub,
}


# ------------------------------------------------------------------ driver


def _result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"worker printed no result: {stdout[-2000:]!r}")


def run_worker(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--params", json.dumps(params)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker exited {done.returncode}")
    return _result(done.stdout)


class Viewer(threading.Thread):
    """One live SSE subscriber that reads everything and counts frames (``id:`` lines)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:  # the service subscribes the viewer before it answers
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("SSE stream closed before its response headers")
            head += chunk
        self.sock.settimeout(None)
        self.frames, self._tail = head.count(b"\nid: "), head[-4:]

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 16):
                data = self._tail + chunk
                self.frames += data.count(b"\nid: ")
                self._tail = data[-4:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def commit_start(admin: Any, group: str, start: Offsets) -> None:
    """Commit a fresh group's start offsets, so its service reads exactly the bench's records."""
    from kafka.errors import CoordinatorNotAvailableError
    from kafka.structs import OffsetAndMetadata

    offsets = {_tp(k): OffsetAndMetadata(o, "", -1) for k, o in start.items()}
    for attempt in range(10):  # a fresh broker creates __consumer_offsets on the first group lookup
        try:
            errors = admin.alter_group_offsets(group, offsets)
            break
        except CoordinatorNotAvailableError:
            if attempt == 9:
                raise
            time.sleep(1.0)
    if bad := {str(tp): e.__name__ for tp, e in errors.items() if e.__name__ != "NoError"}:
        raise RuntimeError(f"committing the start offsets failed: {bad}")


def run_service(admin: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Commit the fresh group's start offsets, run the service worker with a viewer attached."""
    commit_start(admin, params["group"], params["start"])
    cmd = [sys.executable, __file__, "--worker", "service", "--params", json.dumps(params)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    viewer: Viewer | None = None
    try:
        line = proc.stdout.readline().split()
        if line[:1] != ["PORT"]:
            raise RuntimeError(f"service worker did not start: {line}")
        viewer = Viewer(int(line[1]))
        viewer.start()
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        line = proc.stdout.readline().split()
        if line[:1] == ["FRAMES"]:
            deadline = time.monotonic() + 60
            while viewer.frames < int(line[1]) and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.stdin.write("STOP\n")
            proc.stdin.flush()
        stdout = proc.stdout.read()
        proc.wait(120)
    finally:
        if viewer is not None:
            viewer.close()
        if proc.poll() is None:
            proc.kill()
    result = _result(stdout) | {"viewer_frames": viewer.frames if viewer else 0}
    committed = admin.list_group_offsets({params["group"]: None}).get(params["group"], {})
    ends = [(committed.get(_tp(k)), o) for k, o in params["end"].items()]
    result["committed_at_end"] = all(c is not None and c.offset == o for c, o in ends)
    return result


def _row(name: str, r: dict[str, Any], floor: dict[str, Any] | None) -> dict[str, Any]:
    cpu_us = r["cpu_s"] / max(r["events"], 1) * 1e6
    floor_us = floor["cpu_s"] / max(floor["events"], 1) * 1e6 if floor else cpu_us
    row = {"phase": name, "events": r["events"], "cpu_us_per_event": cpu_us}
    return row | {"events_per_s": r["events"] / r["wall_s"], "cpu_ratio_to_floor": cpu_us / floor_us}


def print_threads(r: dict[str, Any], label: str = "") -> None:
    """CPU per event of each thread (from /proc) and the producer's batching, for one phase."""
    n = max(r["events"], 1)
    threads = sorted(r.get("threads_cpu_s", {}).items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{name} {1e6 * s / n:.1f}" for name, s in threads if s > 0)
    print(f"#   {label}CPU us/event by thread: {text}; producer {r.get('producer')}")


def print_service(ally: str, r: dict[str, Any]) -> None:
    c, lat = r["counts"], {(x["hop"], x["channel"]): x for x in r["latency"]}
    delivered = {ch: sum(c["delivered"][ch].values()) for ch in CHANNELS}
    print(
        f"# {ally}: settled {r['settled']}, released {r['released']} (withheld {sum(c['withheld'].values())}, "
        f"duplicates {c['duplicates_suppressed']}, dead letters {sum(c['dead_letters'].values())}), delivered "
        f"{delivered}, viewer frames {r['viewer_frames']}, sse drops {c['subscriber_drops']['sse']}, received "
        f"before ready {r['received_at_ready']}, group committed = end offsets {r['committed_at_end']}, "
        f"error {r['error']}"
    )
    print_threads(r)
    for hop in ("receive_to_deliver", "end_to_end"):
        cells = [(ch, lat.get((hop, ch), {})) for ch in CHANNELS]
        text = "  ".join(f"{ch} {x.get('p50_ms', 0):.1f}/{x.get('p99_ms', 0):.1f}" for ch, x in cells)
        note = "  (includes the wait in the backlog)" if hop == "end_to_end" else ""
        print(f"#   {hop} p50/p99 ms: {text}{note}")


def run_hub_phases(
    admin: Any, bootstrap: str, sizing: dict[str, Any], scratch: str, args: Any, *, groups: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], int]:
    """Publish ``sizing`` to the ingest topics, then the hub's floor and the hub itself over them."""
    from trilink.platform.topics import ingest_role

    roles = tuple(ingest_role(n) for n in ("US", "JP", "KR"))
    before = end_offsets(bootstrap, roles)
    run_worker("publish", {"bootstrap": bootstrap, "topology": "hub"} | sizing)
    after = end_offsets(bootstrap, roles)
    n = sum(end - before.get(k, 0) for k, end in after.items())
    start = {k: before.get(k, 0) for k in after}
    span = {"bootstrap": bootstrap, "start": start, "end": after}
    floor = run_worker("relay", span | {"scratch": scratch, "fanout": True})
    hubs: dict[str, dict[str, Any]] = {}
    modes = ("decoded", "headers") if args.hub == "both" else (args.hub,)
    for mode in modes:
        groups.append(f"trilink-hub-bench-{mode}-{uuid.uuid4().hex[:8]}")
        commit_start(admin, groups[-1], start)
        params = {"group": groups[-1], "events": n, "writes": floor["writes"], "timeout_s": args.timeout}
        options = {"verify_body": mode == "decoded", "linger_ms": args.hub_linger_ms}
        hubs[mode] = run_worker("hub", span | params | options)
    return floor, hubs, n


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--events", type=int, default=20000, help="records to publish (default 20000)")
    parser.add_argument("--scenario", default="salvo", help="scenario file or shipped name (default salvo)")
    parser.add_argument("--allies", default="US", help="comma-separated allies, run one after another")
    parser.add_argument("--bootstrap", default=os.environ.get("TRILINK_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a service may take to settle")
    parser.add_argument(
        "--hub",
        choices=("both", "decoded", "headers", "none"),
        default="both",
        help="hub phases: publish the same number of events to the ingest topics, then the hub's "
        "floor (consume once, produce once per feed the policy releases a record to) and the hub "
        "routing on the decoded body and/or on the headers (default both)",
    )
    parser.add_argument("--hub-linger-ms", type=int, default=0, help="the hub producer's linger (default 0)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="publish fresh records and run the consume+produce floor and each ally service over them "
        "this many times, alternated; print every pair's ratio and their median (default 1: the "
        "table's pair only)",
    )
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        # As trilink's own processes do: the client library's records to a file under
        # .trilink/logs, trilink's warnings to the terminal (its IO loop's "Task ran for" lines
        # from the floor's relay had reached the terminal).
        setup_logging(f"bench-hotpath-{args.worker}")
        print("RESULT " + json.dumps(WORKERS[args.worker](json.loads(args.params))), flush=True)
        return 0

    import kafka
    from kafka import KafkaAdminClient

    bootstrap = args.bootstrap
    machine = {"nproc": len(os.sched_getaffinity(0)), "python": platform.python_version()}
    machine |= {"kafka_python": kafka.__version__, "loadavg_1m": os.getloadavg()[0]}
    print(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"# machine: nproc {machine['nproc']}, python {machine['python']}, kafka-python "
        f"{machine['kafka_python']}, load {machine['loadavg_1m']:.2f}, broker {bootstrap}",
        flush=True,
    )
    admin = KafkaAdminClient(**admin_config(bootstrap, "bench-hotpath-admin"))
    tag = uuid.uuid4().hex[:8]
    allies = [a.strip().upper() for a in args.allies.split(",") if a.strip()] or ["US"]
    kinds = ("produce", "relay", "relay-acks", "acks", "hubfloor")
    scratch = {kind: f"bench-hotpath-{tag}-{kind}" for kind in kinds}
    groups: list[str] = []
    services: dict[str, dict[str, Any]] = {}
    try:
        before = end_offsets(bootstrap)
        replicas = min(3, len(admin.describe_cluster()["brokers"]))  # like the ally topics
        partitions = sum(1 for k in before if k.startswith(topic_name("warnings") + ":"))
        spec = {"num_partitions": partitions, "replication_factor": replicas}
        admin.create_topics(dict.fromkeys(scratch.values(), spec), wait_for_metadata=True)
        sizing = {"scenario": args.scenario, "events": args.events}
        pub = run_worker("publish", {"bootstrap": bootstrap} | sizing)
        after = end_offsets(bootstrap)
        by_topic = {topic_name(r): 0 for r in INPUT_ROLES}
        for k, end in after.items():
            by_topic[k.rpartition(":")[0]] += end - before.get(k, 0)
        n = sum(by_topic.values())
        if n != pub["events"]:
            print(f"# WARNING: {pub['events']} published but the topics grew by {n} (another producer?)")
        span = {"bootstrap": bootstrap, "start": {k: before.get(k, 0) for k in after}, "end": after}
        produce = run_worker("produce", span | {"scratch": scratch["produce"]})
        relay = run_worker("relay", span | {"scratch": scratch["relay"]})
        acks_scratch = {"scratch": scratch["relay-acks"], "ack_scratch": scratch["acks"], "ally": allies[0]}
        relay_acks = run_worker("relay", span | acks_scratch)

        def service_run(ally: str, over: dict[str, Any], count: int) -> dict[str, Any]:
            groups.append(f"bench-hotpath-{ally.lower()}-{uuid.uuid4().hex[:8]}")
            with tempfile.TemporaryDirectory(prefix="trilink-bench-hotpath-") as audit_dir:
                params = {"ally": ally, "group": groups[-1], "events": count, "audit_dir": audit_dir}
                return run_service(admin, over | params | {"timeout_s": args.timeout})

        for ally in allies:
            services[ally] = service_run(ally, span, n)
        pairs = {ally: [(relay, r)] for ally, r in services.items()}
        for _ in range(args.repeat - 1):
            # Alternated: fresh records (a service delivers an event id once: the same records
            # again would be duplicates to it), their floor, then each service over them.
            start_again = end_offsets(bootstrap)
            run_worker("publish", {"bootstrap": bootstrap} | sizing)
            end_again = end_offsets(bootstrap)
            again = {"bootstrap": bootstrap, "start": start_again, "end": end_again}
            count = sum(end - start_again.get(k, 0) for k, end in end_again.items())
            floor_again = run_worker("relay", again | {"scratch": scratch["relay"]})
            for ally in allies:
                pairs[ally].append((floor_again, service_run(ally, again, count)))
        if args.hub != "none":
            hub_floor, hubs, n_hub = run_hub_phases(
                admin, bootstrap, sizing, scratch["hubfloor"], args, groups=groups
            )
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics(list(scratch.values()), raise_errors=False)
        delete_groups(admin, groups)
        admin.close()

    encode_and_publish = pub | {
        "cpu_s": pub["cpu_s"] + pub["encode_cpu_s"],
        "wall_s": pub["wall_s"] + pub["encode_wall_s"],
    }
    rows = [
        _row("publish prepared (SensorPublisher)", pub, produce),
        _row("encode + publish", encode_and_publish, produce),
        _row("produce floor (KafkaProducer)", produce, None),
        _row("consume+produce floor", relay, None),
        _row("  + acknowledgements floor", relay_acks, None),
    ] + [_row(f"ally {ally} service (3 channels)", r, relay) for ally, r in services.items()]
    if args.hub != "none":
        rows.append(_row("hub floor (consume, produce per feed)", hub_floor, None))
        rows += [_row(f"hub ({mode})", r, hub_floor) for mode, r in hubs.items()]
    shape = [produce[k] for k in ("headers_per_record", "headers_min", "headers_max")]
    sizes = [produce[k] for k in ("key_bytes", "value_bytes", "header_bytes")]
    print(
        f"# records: {n} ({', '.join(f'{t} {c}' for t, c in by_topic.items())}) from {pub['runs']} run(s); "
        f"headers per record {shape[0]:.2f} (min {shape[1]}, max {shape[2]}); mean record "
        f"{sum(sizes):.0f} B = key {sizes[0]:.0f} + value {sizes[1]:.0f} + headers {sizes[2]:.0f}"
    )
    print(f"{'phase':<34} {'events':>7} {'CPU us/event':>13} {'events/s':>10} {'ratio to floor':>15}")
    for row in rows:
        print(
            f"{row['phase']:<34} {row['events']:>7} {row['cpu_us_per_event']:>13.1f} "
            f"{row['events_per_s']:>10,.0f} {row['cpu_ratio_to_floor']:>14.2f}x"
        )
    print(
        "# ratio: publish / produce floor, ally service / consume+produce floor (CPU per event); "
        "'publish prepared' is what `trilink run` spends once its clock runs (it encodes first)"
    )
    print(
        f"# '+ acknowledgements floor': the same relay, also sending the {allies[0]} service's "
        f"{relay_acks['acks']} acknowledgements (alerts, launch detections; encoded beforehand) and "
        "reading them back on a second consumer: the Kafka work a service does. Service ratio to it: "
        + ", ".join(
            f"{ally} {_row('', r, relay_acks)['cpu_ratio_to_floor']:.2f}x" for ally, r in services.items()
        )
    )
    if args.repeat > 1:
        for ally, runs in pairs.items():
            ratios = [_row("", r, floor)["cpu_ratio_to_floor"] for floor, r in runs]
            listed = ", ".join(
                f"{_row('', r, None)['cpu_us_per_event']:.1f}/{_row('', floor, None)['cpu_us_per_event']:.1f}"
                f" = {ratio:.2f}x"
                for (floor, r), ratio in zip(runs, ratios, strict=True)
            )
            print(
                f"# {ally} service / consume+produce floor, {len(runs)} alternated pairs (us/event): {listed}; "
                f"median {statistics.median(ratios):.2f}x"
            )
    print("# consume+produce floor:")
    print_threads(relay)
    print("# + acknowledgements floor:")
    print_threads(relay_acks)
    for ally, r in services.items():
        print_service(ally, r)
    if args.hub != "none":
        print(
            f"# hub: {n_hub} ingest records, {hub_floor['writes']} feed writes "
            f"({hub_floor['writes'] / max(n_hub, 1):.2f} per record); ratio: hub / hub floor"
        )
        for mode, r in hubs.items():
            hops = "  ".join(
                f"{x['hop']}[{x['feed']}] {x['p50_ms']:.1f}/{x['p99_ms']:.1f}" for x in r["latency"]
            )
            print(
                f"# hub ({mode}): settled {r['settled']}, records {r['events']}, writes {r['writes']}, "
                f"dead letters {r['dead_letters']}, error {r['error']}; p50/p99 ms (backlog) {hops}"
            )
    if args.json:
        record = {"command": sys.argv, "machine": machine, "records": n, "by_topic": by_topic, "rows": rows}
        record |= {"record_shape": produce, "publish": pub, "relay": relay, "services": services}
        if args.hub != "none":
            record |= {"hub_floor": hub_floor, "hubs": hubs}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
