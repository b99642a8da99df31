"""CloudEvents + traceparent headers: round trip, determinism and strict rejection."""

from __future__ import annotations

import re

import pytest

from schemas.errors import BadHeaderError, EncodeError
from schemas.headers import (
    REQUIRED_HEADERS,
    kafka_headers,
    parse_headers,
    trace_id_for,
    verify_headers_match,
)
from schemas.models import EventKind
from schemas.samples import sample_event, sample_events

pytestmark = pytest.mark.unit

SOURCE = "/trilink/sensors/us-tpy2-shariki"


@pytest.mark.parametrize("kind", list(EventKind))
def test_headers_round_trip(kind: EventKind) -> None:
    event = sample_event(kind)
    headers = kafka_headers(event, SOURCE)
    assert [name for name, _ in headers] == list(REQUIRED_HEADERS)
    values = dict(headers)
    assert values["ce_type"] == f"org.trilink.warning.{kind.value}.v1".encode()
    assert values["ce_specversion"] == b"1.0"
    assert values["content-type"] == b"application/avro"
    assert values["ce_time"] == b"2024-01-01T00:00:40.001500Z"
    assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", values["traceparent"])
    parsed = parse_headers(headers)
    assert parsed.event_id == event.header.event_id
    assert parsed.kind is kind
    assert parsed.schema_version == 1
    assert parsed.time == event.header.emitted_at
    assert parsed.source == SOURCE
    verify_headers_match(parsed, event)


def test_trace_id_is_shared_by_one_missile_and_span_ids_differ() -> None:
    first = parse_headers(kafka_headers(sample_event(), SOURCE))
    other_event = sample_event(event_id="00000000-0000-4000-8000-000000000001")
    second = parse_headers(kafka_headers(other_event, SOURCE))
    assert first.trace_id == second.trace_id == trace_id_for("TRK-20240101-0001")
    assert first.span_id != second.span_id
    assert trace_id_for("TRK-2") != first.trace_id


def test_unknown_headers_are_ignored() -> None:
    headers = [*kafka_headers(sample_event(), SOURCE), ("tracestate", b"x=1"), ("other", None)]
    assert parse_headers(headers).kind is EventKind.TRACK_UPDATE


def _replace(name: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
    return [(n, value if n == name else v) for n, v in kafka_headers(sample_event(), SOURCE)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ce_id", b"not-a-uuid"),
        ("ce_id", b"6F1C2A4E-8D3B-4C1E-9A7F-2B5D8E0C1A23"),
        ("ce_source", b""),
        ("ce_source", b"has space"),
        ("ce_type", b"org.trilink.warning.track_update"),
        ("ce_type", b"org.trilink.warning.teleport.v1"),
        ("ce_type", b"org.trilink.warning.track_update.v99"),
        ("ce_specversion", b"0.3"),
        ("ce_time", b"yesterday"),
        ("ce_time", b"2024-13-01T00:00:00Z"),
        ("ce_time", b"2024-01-01T00:00:00"),
        ("ce_subject", b"bad key!"),
        ("content-type", b"application/json"),
        ("traceparent", b"00-abc-def-01"),
        ("traceparent", b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01"),
        ("traceparent", b"ff-" + b"1" * 32 + b"-" + b"1" * 16 + b"-01"),
        ("ce_id", b"\xff\xfe"),
        ("ce_source", b"/" + b"a" * 300),
        ("ce_id", None),
    ],
)
def test_malformed_header_is_rejected(name: str, value: bytes | None) -> None:
    with pytest.raises(BadHeaderError) as info:
        parse_headers(_replace(name, value))
    assert info.value.reason == "bad_header"
    assert name in str(info.value)


@pytest.mark.parametrize("name", REQUIRED_HEADERS)
def test_missing_or_duplicated_header(name: str) -> None:
    headers = kafka_headers(sample_event(), SOURCE)
    with pytest.raises(BadHeaderError, match=name):
        parse_headers([(n, v) for n, v in headers if n != name])
    with pytest.raises(BadHeaderError, match="more than once"):
        parse_headers([*headers, (name, dict(headers)[name])])


def test_garbage_header_shapes() -> None:
    with pytest.raises(BadHeaderError):
        parse_headers([("ce_id",)])  # type: ignore[list-item]
    with pytest.raises(BadHeaderError):
        parse_headers([(b"ce_id", b"x")])  # type: ignore[list-item]


def test_headers_that_describe_another_event_are_rejected() -> None:
    events = sample_events()
    parsed = parse_headers(kafka_headers(events[0], SOURCE))
    with pytest.raises(BadHeaderError, match="ce_type"):
        verify_headers_match(parsed, events[1])


def test_bad_source_is_refused_when_producing() -> None:
    with pytest.raises(EncodeError, match="ce_source"):
        kafka_headers(sample_event(), "")
