"""Kafka record key and headers: the lean CloudEvents binary-mode set plus trilink's timing.

The Avro body is the CloudEvents ``data``. A record carries only the four attributes the
CloudEvents Kafka binding requires in binary mode (``ce_id``, ``ce_source``, ``ce_type``,
``ce_specversion``) and trilink's wall-clock send time (``trilink_sent_ns``; plus
``trilink_pacing`` when a producer paces in real time). Every other fact (emission time,
correlation key, trace ids) is in the Avro body or the record key, and repeating it in headers
costs every consumer on every hop: kafka-python parses each header in pure Python, and nine
headers tripled its consume cost. Routers and dead-letter tooling still see what an event is
(id, kind, schema version, producer) without decoding it.

Trace context is derived, not transported: every event about one missile shares the trace id
:func:`trace_id_for` (SHA-256 of the correlation key), and :func:`traceparent_for` gives an
event's W3C ``traceparent`` from the body wherever one is wanted.

:func:`parse_headers` is the one parser of transport headers: a single pass that validates
every header of a record (name, value presence, lengths, count) and returns the typed view
together with the headers a relay may pass on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple
from uuid import UUID

from schemas import avro
from schemas.errors import BadHeaderError, EncodeError
from schemas.models import EventKind, WarningEvent
from trilink.latency import decode_sent_ns

__all__ = [
    "ACTUAL_SENT_NS_HEADER",
    "CE_ID_HEADER",
    "CE_SOURCE_HEADER",
    "CE_SPECVERSION",
    "CE_SPECVERSION_HEADER",
    "CE_TYPE_HEADER",
    "DLQ_ALLY_HEADER",
    "DLQ_ERROR_HEADER",
    "DLQ_HEADERS",
    "DLQ_ORIGINAL_DIGEST_HEADER",
    "DLQ_ORIGINAL_SIZE_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_SOURCE_HEADER",
    "HUB_HEADERS",
    "HUB_NS_HEADER",
    "INGEST_APPEND_NS_HEADER",
    "INSTANCE_HEADER",
    "LOADTEST_RUN_HEADER",
    "LOADTEST_SLOT_HEADER",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_TOTAL_HEADER_BYTES",
    "PACING_HEADER",
    "REALTIME_PACING",
    "RECEIVED_NS_HEADER",
    "REQUIRED_HEADERS",
    "SENT_NS_HEADER",
    "ParsedHeaders",
    "ce_type",
    "kafka_headers",
    "message_key",
    "parse_headers",
    "trace_id_for",
    "traceparent_for",
    "verify_headers_match",
]

# --- header names: the one definition of every Kafka header trilink writes or reads ----------

#: CloudEvents Kafka binding, binary mode: the four required attributes every event record carries.
CE_ID_HEADER = "ce_id"
CE_SOURCE_HEADER = "ce_source"
CE_TYPE_HEADER = "ce_type"
CE_SPECVERSION_HEADER = "ce_specversion"
REQUIRED_HEADERS = (CE_ID_HEADER, CE_SOURCE_HEADER, CE_TYPE_HEADER, CE_SPECVERSION_HEADER)
#: The producer's wall-clock send time, int64 big-endian nanoseconds
#: (:func:`trilink.latency.encode_sent_ns`).
SENT_NS_HEADER = "trilink_sent_ns"
#: How the producer paced its events; ``sensor_to_send`` is measured only when its value is
#: :data:`REALTIME_PACING` (a replay's send time has nothing to do with the simulated ``measured_at``).
PACING_HEADER = "trilink_pacing"
REALTIME_PACING = b"realtime"
#: Added by an ally service to what it delivers on its topic: when it received the record
#: (8-byte ns, as ``trilink_sent_ns``) and which instance delivered it.
RECEIVED_NS_HEADER = "trilink_received_ns"
INSTANCE_HEADER = "trilink_ally_instance"
#: A dead letter's headers: why, the error text, where the record came from
#: (``topic/partition/offset``) and which ally refused it.
DLQ_REASON_HEADER = "trilink_dlq_reason"
DLQ_ERROR_HEADER = "trilink_dlq_error"
DLQ_SOURCE_HEADER = "trilink_dlq_source"
DLQ_ALLY_HEADER = "trilink_dlq_ally"
DLQ_HEADERS = (DLQ_REASON_HEADER, DLQ_ERROR_HEADER, DLQ_SOURCE_HEADER, DLQ_ALLY_HEADER)
#: A reduced dead letter (too large to send whole): the original value's size and SHA-256 (hex).
DLQ_ORIGINAL_SIZE_HEADER = "trilink_dlq_original_bytes"
DLQ_ORIGINAL_DIGEST_HEADER = "trilink_dlq_original_sha256"
#: The load test's own: its run id, an event's schedule slot, and the time the sender actually
#: sent it (``trilink_sent_ns`` carries the intended time).
LOADTEST_RUN_HEADER = "trilink_loadtest_run"
LOADTEST_SLOT_HEADER = "trilink_loadtest_slot"
ACTUAL_SENT_NS_HEADER = "trilink_actual_sent_ns"

CE_SPECVERSION = "1.0"
_TYPE_PREFIX = "org.trilink.warning."
#: Longest value of a header trilink reads; longer is refused.
MAX_HEADER_BYTES = 256
#: Most headers one record may carry, and most bytes (names + values) over all of them.
MAX_HEADERS = 32
MAX_TOTAL_HEADER_BYTES = 8192
_CACHE_LIMIT = 4096
_TYPE_RE = re.compile(r"^org\.trilink\.warning\.([a-z_]{1,32})\.v([1-9][0-9]{0,5})$")
_SOURCE_RE = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]{1,255}$")
_SPECVERSION_RAW = CE_SPECVERSION.encode("ascii")
#: Added by the US hub (hub topology) to every record it writes to an ally's feed, each 8 bytes
#: (int64 big-endian ns, as ``trilink_sent_ns``): when the hub received the record, and when the
#: broker appended it to the sensor nation's ingest topic (LogAppendTime, ms resolution). With
#: the feed's own append time they split the hub's share into its hops (``append_to_hub``,
#: ``hub_to_append``). Only the hub writes them: it replaces any a sensor sent.
HUB_NS_HEADER = "trilink_hub_ns"
INGEST_APPEND_NS_HEADER = "trilink_ingest_append_ns"
HUB_HEADERS = (HUB_NS_HEADER, INGEST_APPEND_NS_HEADER)
_CANONICAL_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def message_key(event: WarningEvent) -> bytes:
    """Kafka key: the correlation key, so every event about one missile shares a partition."""
    return event.header.correlation_key.encode("utf-8")


def ce_type(kind: EventKind, version: int) -> str:
    """CloudEvents type of an event kind written with schema release ``version``."""
    return f"{_TYPE_PREFIX}{kind.value}.v{version}"


def trace_id_for(correlation_key: str) -> str:
    """W3C trace id (32 hex) shared by every event about one missile."""
    trace = hashlib.sha256(b"trilink/trace/" + correlation_key.encode("utf-8")).hexdigest()[:32]
    return trace if trace.strip("0") else "1".rjust(32, "0")  # all-zero ids are invalid


def _span_id_for(event_id: UUID) -> str:
    span = hashlib.sha256(b"trilink/span/" + event_id.bytes).hexdigest()[:16]
    return span if span.strip("0") else "1".rjust(16, "0")


def traceparent_for(event: WarningEvent) -> str:
    """The W3C ``traceparent`` of an event, derived from its body (sampled flag set)."""
    header = event.header
    return f"00-{trace_id_for(header.correlation_key)}-{_span_id_for(header.event_id)}-01"


def kafka_headers(event: WarningEvent, source: str) -> list[tuple[str, bytes]]:
    """The CloudEvents binary-mode headers of one event (``source`` names the producer,
    a URI-reference such as ``/trilink/sensors/us-tpy2-1``)."""
    if not _SOURCE_RE.match(source):
        raise EncodeError("invalid_value", f"ce_source must be a URI-reference, got {source!r}")
    return [
        (CE_ID_HEADER, str(event.header.event_id).encode("ascii")),
        (CE_SOURCE_HEADER, source.encode("ascii")),
        (CE_TYPE_HEADER, _ce_type_raw(event.kind)),
        (CE_SPECVERSION_HEADER, _SPECVERSION_RAW),
    ]


def _ce_type_raw(kind: EventKind) -> bytes:
    return ce_type(kind, avro.current().version).encode("ascii")


class ParsedHeaders(NamedTuple):
    """The validated headers of one record.

    ``forward`` holds every header as received, in order: what a relay passes on (a record
    with a header it could not send is refused by :func:`parse_headers`, never forwarded).
    """

    event_id: UUID
    #: ``event_id`` as the canonical text the header carried: what channels print, and what
    #: :func:`schemas.codec.decode_event` compares the body's id with before parsing it again.
    event_id_text: str
    source: str
    kind: EventKind
    schema_version: int
    sent_ns: int | None
    realtime: bool
    forward: tuple[tuple[str, bytes], ...]
    #: The hub's :data:`HUB_NS_HEADER` and :data:`INGEST_APPEND_NS_HEADER` (None: not relayed by a hub).
    hub_ns: int | None = None
    ingest_append_ns: int | None = None


def _bad(name: str, problem: str) -> BadHeaderError:
    return BadHeaderError(f"header {name!r}: {problem}")


# Validated ce_type and ce_source values (few distinct ones on the wire: a sensor catalog's
# worth), so the hot path matches each once. Bounded: a hostile producer cannot grow them.
_TYPES: dict[bytes, tuple[EventKind, int]] = {}
_SOURCES: dict[bytes, str] = {}


def _parse_type(raw: bytes) -> tuple[EventKind, int]:
    cached = _TYPES.get(raw)
    if cached is not None:
        return cached
    match = _TYPE_RE.match(raw.decode("ascii"))
    if match is None:
        raise _bad(CE_TYPE_HEADER, f"expected {_TYPE_PREFIX}<kind>.v<N>")
    try:
        kind = EventKind(match.group(1))
    except ValueError:
        raise _bad(CE_TYPE_HEADER, f"unknown kind {match.group(1)!r}") from None
    version = int(match.group(2))
    if version > avro.current().version:
        raise _bad(CE_TYPE_HEADER, f"schema v{version} is not released")
    if len(_TYPES) < _CACHE_LIMIT:
        _TYPES[raw] = (kind, version)
    return kind, version


def _parse_source(raw: bytes) -> str:
    cached = _SOURCES.get(raw)
    if cached is not None:
        return cached
    source = raw.decode("ascii")
    if not _SOURCE_RE.match(source):
        raise _bad(CE_SOURCE_HEADER, "not a URI-reference")
    if len(_SOURCES) < _CACHE_LIMIT:
        _SOURCES[raw] = source
    return source


def parse_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> ParsedHeaders:
    """Validate every header of a record in one pass; anything wrong raises :class:`BadHeaderError`.

    Refused: a header that is not a ``(str, bytes)`` pair (a null value included: a relay
    could not send it on), more than :data:`MAX_HEADERS` headers or
    :data:`MAX_TOTAL_HEADER_BYTES` in all, a header trilink reads that is longer than
    :data:`MAX_HEADER_BYTES`, repeated, missing or malformed. Headers trilink does not read
    (``tracestate``, broker tooling, older trilink releases' ``ce_time``/``traceparent``) pass.
    """
    forward = tuple(headers or ())
    if len(forward) > MAX_HEADERS:
        raise BadHeaderError(f"{len(forward)} headers; at most {MAX_HEADERS} are accepted")
    found: dict[str, bytes] = {}
    total = 0
    for item in forward:
        if type(item) is not tuple or len(item) != 2:
            raise BadHeaderError("headers must be (name, value) pairs")
        name, raw = item
        if type(name) is not str:
            raise BadHeaderError("header name is not a string")
        if type(raw) is not bytes:
            raise _bad(name[:64], "missing value")
        total += len(name) + len(raw)
        if name in _READ:
            if name in found:
                raise _bad(name, "appears more than once")
            if len(raw) > MAX_HEADER_BYTES:
                raise _bad(name, f"longer than {MAX_HEADER_BYTES} bytes")
            found[name] = raw
    if total > MAX_TOTAL_HEADER_BYTES:
        raise BadHeaderError(f"{total} bytes of headers; at most {MAX_TOTAL_HEADER_BYTES} are accepted")
    missing = [name for name in REQUIRED_HEADERS if name not in found]
    if missing:
        raise BadHeaderError(f"missing header(s): {', '.join(missing)}")
    raw_id = found[CE_ID_HEADER]
    if _CANONICAL_UUID(raw_id) is None:
        raise _bad(CE_ID_HEADER, "not a canonical lower-case UUID")
    event_id_text = raw_id.decode("ascii")
    event_id = UUID(event_id_text)
    try:
        source = _parse_source(found[CE_SOURCE_HEADER])
    except UnicodeDecodeError:
        raise _bad(CE_SOURCE_HEADER, "not ASCII") from None
    try:
        kind, version = _parse_type(found[CE_TYPE_HEADER])
    except UnicodeDecodeError:
        raise _bad(CE_TYPE_HEADER, "not ASCII") from None
    if found[CE_SPECVERSION_HEADER] != _SPECVERSION_RAW:
        raise _bad(CE_SPECVERSION_HEADER, f"expected {CE_SPECVERSION}")
    sent_ns = _ns_header(found, SENT_NS_HEADER)
    hub_ns = _ns_header(found, HUB_NS_HEADER)
    ingest_append_ns = _ns_header(found, INGEST_APPEND_NS_HEADER)
    return ParsedHeaders(
        event_id=event_id,
        event_id_text=event_id_text,
        source=source,
        kind=kind,
        schema_version=version,
        sent_ns=sent_ns,
        realtime=found.get(PACING_HEADER) == REALTIME_PACING,
        forward=forward,  # type: ignore[arg-type]  # every value was checked to be bytes above
        hub_ns=hub_ns,
        ingest_append_ns=ingest_append_ns,
    )


def _ns_header(found: dict[str, bytes], name: str) -> int | None:
    raw = found.get(name)
    if raw is None:
        return None
    ns = decode_sent_ns(raw)
    if ns is None:
        raise _bad(name, "expected 8 bytes (int64 big-endian nanoseconds)")
    return ns


#: Every header :func:`parse_headers` reads (the others pass unread).
_READ = frozenset((*REQUIRED_HEADERS, SENT_NS_HEADER, PACING_HEADER, *HUB_HEADERS))


def verify_headers_match(parsed: ParsedHeaders, event: WarningEvent) -> None:
    """Raise :class:`BadHeaderError` when the headers describe a different event than the body."""
    if parsed.event_id != event.header.event_id:
        raise _bad(CE_ID_HEADER, "differs from the body's event_id")
    if parsed.kind is not event.kind:
        raise _bad(CE_TYPE_HEADER, f"says {parsed.kind.value}, body is {event.kind.value}")
