"""``trilink record``: consume the warning topics into recording files.

The recorder is a plain assigned consumer without a consumer group: it commits nothing and
joins no group, so it never takes partitions away from (or moves the offsets of) an ally's
service. It reads every partition of the chosen topics, from the beginning or from the end as
it is when recording starts, and writes each record through a :class:`RecordingWriter`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from schemas.models import EventKind, Nation
from trilink.platform.clients import consumer_config
from trilink.platform.topics import ingest_role, topic_name
from trilink.replay.errors import ReplayError
from trilink.replay.format import RecordedMessage, RecordingWriter, capture, original_send_ns
from trilink.settings import get_settings
from trilink.waiting import wait_until

__all__ = ["DEFAULT_ROLES", "MessageFilter", "RecordReport", "Recorder"]

#: Topic roles recorded by default: every missile event and every sensor heartbeat.
DEFAULT_ROLES: tuple[str, ...] = ("warnings", "sensor_status")


def default_roles(topology: str | None = None) -> tuple[str, ...]:
    """What ``trilink record`` records by default: the shared warning topics (``direct``) or the
    nations' ingest topics (``hub``; the setting unless given): every sensor's records either way."""
    if (topology or get_settings().topology) == "hub":
        return tuple(ingest_role(n) for n in ("US", "JP", "KR"))
    return DEFAULT_ROLES


_POLL_TIMEOUT_MS = 100
_METADATA_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class MessageFilter:
    """Which records to keep; an empty set does not filter. Sets within one field are OR-ed,
    fields are AND-ed. A missile matches its exact correlation key or the key of any run of it
    (``TRK-single-srbm-L1`` matches ``TRK-single-srbm-L1:1a2b3c4d``)."""

    kinds: frozenset[str] = frozenset()
    nations: frozenset[str] = frozenset()
    sensors: frozenset[str] = frozenset()
    missiles: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        kinds: Iterable[str] = (),
        nations: Iterable[str] = (),
        sensors: Iterable[str] = (),
        missiles: Iterable[str] = (),
    ) -> MessageFilter:
        """A filter from command-line values, checking kinds and nations against the contract."""
        kind_set = frozenset(kinds)
        known_kinds = {k.value for k in EventKind}
        if unknown := sorted(kind_set - known_kinds):
            raise ReplayError("bad_option", f"unknown event kind(s) {unknown}; known: {sorted(known_kinds)}")
        nation_set = frozenset(n.upper() for n in nations)
        known_nations = {n.value for n in Nation}
        if unknown := sorted(nation_set - known_nations):
            raise ReplayError("bad_option", f"unknown nation(s) {unknown}; known: {sorted(known_nations)}")
        return cls(kind_set, nation_set, frozenset(sensors), frozenset(missiles))

    @property
    def active(self) -> bool:
        return bool(self.kinds or self.nations or self.sensors or self.missiles)

    def accepts(self, message: RecordedMessage) -> bool:
        if self.kinds and message.kind not in self.kinds:
            return False
        if self.nations and message.sensor_nation not in self.nations:
            return False
        if self.sensors and message.sensor_id not in self.sensors:
            return False
        if self.missiles:
            key = message.correlation_key
            if key is None or not any(key == m or key.startswith(m + ":") for m in self.missiles):
                return False
        return True

    def describe(self) -> str:
        """The filter as JSON (stored in the recording's metadata)."""
        return json.dumps({f.name: sorted(getattr(self, f.name)) for f in dataclasses.fields(self)})


@dataclasses.dataclass
class RecordReport:
    """What one recording session did."""

    received: int = 0
    written: int = 0
    filtered_out: int = 0
    by_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    undecodable: dict[str, int] = dataclasses.field(default_factory=dict)
    stopped_because: str = ""
    wall_s: float = 0.0

    def line(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items())) or "nothing"
        bad = ", ".join(f"{k} {v}" for k, v in sorted(self.undecodable.items()))
        return (
            f"recorded {self.written} of {self.received} record(s) ({self.filtered_out} filtered out) "
            f"in {self.wall_s:.1f} s, stopped: {self.stopped_because}: {kinds}"
            + (f"; undecodable, kept as bytes: {bad}" if bad else "")
        )


class Recorder:
    """Reads the chosen topics with a group-less consumer and writes what passes the filter."""

    def __init__(
        self,
        bootstrap: str,
        writer: RecordingWriter,
        *,
        topics: Iterable[str] | None = None,
        message_filter: MessageFilter | None = None,
        from_beginning: bool = False,
        client_id: str | None = None,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.writer = writer
        self.filter = message_filter or MessageFilter()
        self.topics = list(topics) if topics is not None else [topic_name(r) for r in default_roles()]
        self.session_id = uuid.uuid4().hex[:12]
        self._stop = threading.Event()
        self._consumer: Any = KafkaConsumer(
            **consumer_config(bootstrap, None, client_id or f"trilink-recorder-{self.session_id}")
        )
        try:
            partitions = [TopicPartition(topic, p) for topic in self.topics for p in self._partitions(topic)]
            self._consumer.assign(partitions)
            if from_beginning:
                self._consumer.seek_to_beginning(*partitions)
            else:
                self._consumer.seek_to_end(*partitions)
            # Resolve positions now: "the end" is the end when recording starts.
            self.start_offsets = {(tp.topic, tp.partition): self._consumer.position(tp) for tp in partitions}
            ends = self._consumer.end_offsets(partitions)
            self.end_offsets = {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}
        except BaseException:
            self._consumer.close()
            raise
        self._partitions_assigned = partitions
        self.writer.metadata.update(
            {
                "trilink.recording.session": self.session_id,
                "trilink.recording.topics": ",".join(self.topics),
                "trilink.recording.filter": self.filter.describe(),
                "trilink.recording.bootstrap": bootstrap,
            }
        )
        self._origin_ns: int | None = None
        #: The report of the recording in progress, counted as it goes (read by the progress line).
        self.live_report: RecordReport | None = None

    def _partitions(self, topic: str) -> list[int]:
        found = wait_until(lambda: self._consumer.partitions_for_topic(topic), _METADATA_TIMEOUT_S, 0.2)
        if not found:
            raise ReplayError("bad_option", f"topic {topic!r} does not exist on the cluster")
        return sorted(found)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (safe from a signal handler)."""
        self._stop.set()

    def caught_up(self) -> bool:
        """True when every partition has been read up to the end it had when recording started."""
        return all(
            self._consumer.position(tp) >= self.end_offsets[(tp.topic, tp.partition)]
            for tp in self._partitions_assigned
        )

    def run(
        self,
        *,
        until_idle_s: float | None = None,
        max_records: int | None = None,
        until_end: bool = False,
        timeout_s: float | None = None,
    ) -> RecordReport:
        """Record until stopped, idle for ``until_idle_s``, ``max_records`` written, caught up
        with the end offsets of the start (``until_end``) or ``timeout_s`` elapsed."""
        report = self.live_report = RecordReport()
        start = last_record = time.monotonic()
        try:
            while True:
                if self._stop.is_set():
                    report.stopped_because = "signal"
                    break
                if max_records is not None and report.written >= max_records:
                    report.stopped_because = f"{max_records} record(s) written"
                    break
                if until_end and self.caught_up():
                    report.stopped_because = "caught up with the end offsets of the start"
                    break
                now = time.monotonic()
                if until_idle_s is not None and now - last_record >= until_idle_s:
                    report.stopped_because = f"idle for {until_idle_s:g} s"
                    break
                if timeout_s is not None and now - start >= timeout_s:
                    report.stopped_because = f"timeout after {timeout_s:g} s"
                    break
                budget = None if max_records is None else max(1, max_records - report.written)
                batch = self._consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=budget)
                received_ns = time.time_ns()
                for records in batch.values():
                    for record in records:
                        self._handle(record, received_ns, report)
                    last_record = time.monotonic()
                self.writer.tick()
        finally:
            self.writer.close()
            report.wall_s = time.monotonic() - start
        return report

    def _handle(self, record: Any, received_ns: int, report: RecordReport) -> None:
        report.received += 1
        headers = record.headers or []
        if self._origin_ns is None:
            self._origin_ns = original_send_ns(headers, record.timestamp)
            self.writer.metadata["trilink.recording.origin_ns"] = str(self._origin_ns)
        message = capture(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            timestamp_type=record.timestamp_type,
            key=record.key,
            value=record.value,
            headers=headers,
            received_ns=received_ns,
            origin_ns=self._origin_ns,
        )
        if not self.filter.accepts(message):
            report.filtered_out += 1
            return
        self.writer.write(message)
        report.written += 1
        kind = message.kind or "unknown"
        report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
        if message.decode_error:
            report.undecodable[message.decode_error] = report.undecodable.get(message.decode_error, 0) + 1

    def close(self) -> None:
        self.writer.close()
        self._consumer.close()
