"""Kafka record key and headers: CloudEvents (Kafka binary mode) plus W3C trace context.

The Avro body is the CloudEvents ``data``; its attributes ride in ``ce_*`` headers so routers
and dead-letter tooling can see what an event is without decoding it. ``traceparent`` lets the
end-to-end latency of one missile's events be followed across hops: its trace id is derived
deterministically from the correlation key (SHA-256, first 16 bytes), so every event about one
missile lands in one trace even when different sensors produce them; the span id is derived
from the event id (SHA-256, first 8 bytes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from schemas import avro
from schemas.errors import BadHeaderError, EncodeError
from schemas.models import EventKind, WarningEvent

__all__ = [
    "CE_SPECVERSION",
    "CONTENT_TYPE",
    "REQUIRED_HEADERS",
    "ParsedHeaders",
    "ce_type",
    "kafka_headers",
    "message_key",
    "parse_headers",
    "trace_id_for",
    "verify_headers_match",
]

CE_SPECVERSION = "1.0"
CONTENT_TYPE = "application/avro"
_TYPE_PREFIX = "org.trilink.warning."
#: Headers this module writes and requires; other headers (tracestate, broker tooling) pass.
REQUIRED_HEADERS = (
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_specversion",
    "ce_time",
    "ce_subject",
    "content-type",
    "traceparent",
)
_MAX_HEADER_BYTES = 256
_TYPE_RE = re.compile(r"^org\.trilink\.warning\.([a-z_]{1,32})\.v([1-9][0-9]{0,5})$")
_SOURCE_RE = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]{1,255}$")
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_TIME_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


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


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def kafka_headers(event: WarningEvent, source: str) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode headers and a ``traceparent`` for one event.

    ``source`` is a URI-reference naming the producer, e.g. ``/trilink/sensors/us-tpy2-1``.
    """
    if not _SOURCE_RE.match(source):
        raise EncodeError("invalid_value", f"ce_source must be a URI-reference, got {source!r}")
    header = event.header
    values = (
        ("ce_id", str(header.event_id)),
        ("ce_source", source),
        ("ce_type", ce_type(event.kind, avro.current().version)),
        ("ce_specversion", CE_SPECVERSION),
        ("ce_time", _rfc3339(header.emitted_at)),
        ("ce_subject", header.correlation_key),
        ("content-type", CONTENT_TYPE),
        (
            "traceparent",
            f"00-{trace_id_for(header.correlation_key)}-{_span_id_for(header.event_id)}-01",
        ),
    )
    return [(name, value.encode("ascii")) for name, value in values]


@dataclass(frozen=True, slots=True)
class ParsedHeaders:
    """The validated headers of one record."""

    event_id: UUID
    source: str
    kind: EventKind
    schema_version: int
    time: datetime
    subject: str
    trace_id: str
    span_id: str
    trace_flags: int


def _bad(name: str, problem: str) -> BadHeaderError:
    return BadHeaderError(f"header {name!r}: {problem}")


def _collect(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in headers:
        if not isinstance(item, tuple) or len(item) != 2:
            raise BadHeaderError("headers must be (name, value) pairs")
        name, raw = item
        if not isinstance(name, str):
            raise BadHeaderError("header name is not a string")
        if name not in REQUIRED_HEADERS:
            continue
        if name in found:
            raise _bad(name, "appears more than once")
        if not isinstance(raw, bytes):
            raise _bad(name, "missing value")
        if len(raw) > _MAX_HEADER_BYTES:
            raise _bad(name, f"longer than {_MAX_HEADER_BYTES} bytes")
        try:
            found[name] = raw.decode("ascii")
        except UnicodeDecodeError:
            raise _bad(name, "not ASCII") from None
    missing = [name for name in REQUIRED_HEADERS if name not in found]
    if missing:
        raise BadHeaderError(f"missing header(s): {', '.join(missing)}")
    return found


def parse_headers(headers: Iterable[tuple[str, bytes | None]]) -> ParsedHeaders:
    """Validate the record headers strictly; anything wrong raises :class:`BadHeaderError`."""
    found = _collect(headers)
    try:
        event_id = UUID(found["ce_id"])
    except ValueError:
        raise _bad("ce_id", "not a UUID") from None
    if str(event_id) != found["ce_id"]:
        raise _bad("ce_id", "not a canonical lower-case UUID")
    if not _SOURCE_RE.match(found["ce_source"]):
        raise _bad("ce_source", "not a URI-reference")
    type_match = _TYPE_RE.match(found["ce_type"])
    if type_match is None:
        raise _bad("ce_type", f"expected {_TYPE_PREFIX}<kind>.v<N>")
    try:
        kind = EventKind(type_match.group(1))
    except ValueError:
        raise _bad("ce_type", f"unknown kind {type_match.group(1)!r}") from None
    version = int(type_match.group(2))
    if version > avro.current().version:
        raise _bad("ce_type", f"schema v{version} is not released")
    if found["ce_specversion"] != CE_SPECVERSION:
        raise _bad("ce_specversion", f"expected {CE_SPECVERSION}")
    if not _TIME_RE.match(found["ce_time"]):
        raise _bad("ce_time", "not an RFC 3339 timestamp")
    try:
        time = datetime.fromisoformat(found["ce_time"])
    except ValueError:
        raise _bad("ce_time", "not a valid date and time") from None
    if not _SUBJECT_RE.match(found["ce_subject"]):
        raise _bad("ce_subject", "not a correlation key")
    if found["content-type"] != CONTENT_TYPE:
        raise _bad("content-type", f"expected {CONTENT_TYPE}")
    trace = _TRACEPARENT_RE.match(found["traceparent"])
    if trace is None:
        raise _bad("traceparent", "expected 00-<32 hex>-<16 hex>-<2 hex>")
    trace_id, span_id, flags = trace.groups()
    if not trace_id.strip("0") or not span_id.strip("0"):
        raise _bad("traceparent", "all-zero trace or span id")
    return ParsedHeaders(
        event_id=event_id,
        source=found["ce_source"],
        kind=kind,
        schema_version=version,
        time=time.astimezone(UTC),
        subject=found["ce_subject"],
        trace_id=trace_id,
        span_id=span_id,
        trace_flags=int(flags, 16),
    )


def verify_headers_match(parsed: ParsedHeaders, event: WarningEvent) -> None:
    """Raise :class:`BadHeaderError` when the headers describe a different event than the body."""
    header = event.header
    if parsed.event_id != header.event_id:
        raise _bad("ce_id", "differs from the body's event_id")
    if parsed.kind is not event.kind:
        raise _bad("ce_type", f"says {parsed.kind.value}, body is {event.kind.value}")
    if parsed.subject != header.correlation_key:
        raise _bad("ce_subject", "differs from the body's correlation_key")
