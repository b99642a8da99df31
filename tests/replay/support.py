"""Helpers of the replay tests: recorded rows made from a real scenario without a broker."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from producers.publisher import Run, for_run
from producers.scenario import ScheduledEvent, load_scenario, simulate
from schemas import encode_event, kafka_headers, message_key
from schemas.headers import PACING_HEADER, REALTIME_PACING, SENT_NS_HEADER
from schemas.models import EventKind
from trilink.latency import encode_sent_ns
from trilink.replay.format import RecordedMessage, RecordingWriter, capture

WARNINGS = "trilink.warnings.v1"
STATUS = "trilink.sensor-status.v1"
#: Wall-clock send time of the first synthetic row, ns (any fixed instant will do).
T0_NS = 1_700_000_000_000_000_000


@cache
def scheduled(scenario: str = "single_srbm") -> tuple[ScheduledEvent, ...]:
    loaded = load_scenario(scenario)
    run = Run("0badcafe", loaded.start_time)
    return tuple(for_run(simulate(loaded), run, loaded.start_time))


def rows(
    count: int | None = None,
    scenario: str = "single_srbm",
    partitions: int = 12,
    *,
    legacy_ce_time: bool = False,
) -> list[RecordedMessage]:
    """Rows as the recorder would write them: keyed, partitioned, offsets per partition, a
    send-time header at the event's emit offset, LogAppendTime 1 ms later. ``legacy_ce_time``
    adds the ``ce_time`` header that recordings made before the lean header set carry."""
    out = []
    offsets: dict[tuple[str, int], int] = {}
    items = scheduled(scenario)[:count]
    for item in items:
        event = item.event
        topic = STATUS if event.kind is EventKind.SENSOR_STATUS else WARNINGS
        key = message_key(event)
        partition = sum(key) % (3 if topic == STATUS else partitions)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        sent_ns = T0_NS + int(item.emit_offset_s * 1e9)
        headers = [
            *kafka_headers(event, f"/trilink/sensors/{event.header.sensor_id}"),
            (PACING_HEADER, REALTIME_PACING),
            (SENT_NS_HEADER, encode_sent_ns(sent_ns)),
        ]
        if legacy_ce_time:
            headers.append(("ce_time", event.header.emitted_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()))
        out.append(
            capture(
                topic=topic,
                partition=partition,
                offset=offset,
                timestamp_ms=sent_ns // 1_000_000 + 1,
                timestamp_type=1,
                key=key,
                value=encode_event(event),
                headers=headers,
                received_ns=sent_ns + 2_000_000,
                origin_ns=T0_NS,
            )
        )
    return out


def write_recording(directory: Path, messages: list[RecordedMessage], **writer_options: object) -> list[Path]:
    """Write rows with a RecordingWriter (small blocks unless told otherwise); returns the files."""
    options: dict[str, object] = {"flush_records": 25, "fsync": False}
    options.update(writer_options)
    with RecordingWriter(directory, "test", **options) as writer:  # type: ignore[arg-type]
        for message in messages:
            writer.write(message)
    return writer.files
