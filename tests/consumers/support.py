"""Helpers of the ally-service integration tests: produce contract events, read topics, SSE clients.

Every test uses its own correlation keys and consumer groups (the broker is shared by the whole
session), and reads topics from the end offsets it noted before producing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from schemas import encode_event, kafka_headers, message_key
from schemas.headers import SENT_NS_HEADER
from schemas.models import EventKind, Nation, WarningEvent
from schemas.samples import sample_event
from trilink.latency import encode_sent_ns
from trilink.platform.clients import consumer_config, producer_config
from trilink.platform.topics import topic_name

ALL = [Nation.US, Nation.JP, Nation.KR]


def unique_key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event(
    key: str,
    sequence: int,
    *,
    kind: EventKind = EventKind.TRACK_UPDATE,
    sensor: Nation = Nation.US,
    releasable: Iterable[Nation] = ALL,
) -> WarningEvent:
    releasable_to = sorted({sensor, *releasable}, key=ALL.index)
    return sample_event(
        kind,
        event_id=uuid.uuid4(),
        correlation_key=key,
        sensor_nation=sensor,
        releasable_to=releasable_to,
        sequence=sequence,
    )


def headers_for(ev: WarningEvent) -> list[tuple[str, bytes]]:
    return [*kafka_headers(ev, "/trilink/tests"), (SENT_NS_HEADER, encode_sent_ns(time.time_ns()))]


class Producer:
    """A kafka-python producer with trilink's settings; ``send`` returns (partition, offset)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaProducer

        self._p: Any = KafkaProducer(**producer_config(bootstrap, "trilink-tests-ally"))

    def send_event(self, ev: WarningEvent, role: str = "warnings") -> Any:
        return self._p.send(
            topic_name(role), value=encode_event(ev), key=message_key(ev), headers=headers_for(ev)
        )

    def send_raw(
        self, value: bytes | None, key: bytes, headers: list[tuple[str, bytes]], role: str = "warnings"
    ) -> Any:
        return self._p.send(topic_name(role), value=value, key=key, headers=headers)

    def flush(self) -> None:
        self._p.flush(timeout=30)

    def close(self) -> None:
        self._p.close(timeout=10)


def end_offsets(bootstrap: str, role: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "trilink-tests-offsets"))
    try:
        topic = topic_name(role)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    raw_headers: list[tuple[str, bytes]]
    timestamp_ms: int = 0


def read_from(
    bootstrap: str,
    role: str,
    start: dict[int, int],
    done: Callable[[list[Record]], bool],
    *,
    keep: Callable[[Record], bool] = lambda r: True,
    timeout_s: float = 20.0,
    settle_s: float = 0.5,
) -> list[Record]:
    """Records of ``role`` from ``start`` offsets passing ``keep``, read until ``done`` (then
    ``settle_s`` more, to catch anything extra) or ``timeout_s``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "trilink-tests-reader"))
    topic = topic_name(role)
    out: list[Record] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(start)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=100).items():
                for r in records:
                    rec = Record(
                        tp.partition, r.offset, r.key, r.value, dict(r.headers), list(r.headers), r.timestamp
                    )
                    if keep(rec):
                        out.append(rec)
            if settle_until is None and done(out):
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
        return out
    finally:
        consumer.close()


def by_key(keys: set[str]) -> Callable[[Record], bool]:
    encoded = {k.encode() for k in keys}
    return lambda r: r.key in encoded


class SseClient:
    """Reads ``/stream`` on a thread and keeps the parsed events (id, kind, data dict)."""

    def __init__(self, port: int, query: str = "") -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        path = "/stream" + (f"?{query}" if query else "")
        self._sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        self._file = self._sock.makefile("rb")
        self.status_line = self._file.readline().decode()
        while self._file.readline() not in (b"\r\n", b"\n", b""):
            pass
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in self._file:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in fields:
                        self.events.append(
                            (fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"]))
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        except (OSError, ValueError):
            pass

    def ids(self) -> list[str]:
        return [e[0] for e in self.events]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)


class StalledSseClient:
    """Subscribes to ``/stream`` with a tiny receive buffer and never reads."""

    def __init__(self, port: int) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self._sock.connect(("127.0.0.1", port))
        self._sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")

    def close(self) -> None:
        self._sock.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, body
