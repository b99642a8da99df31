"""The lean CloudEvents header set: round trip, derived trace context and strict rejection of
every class of bad header (value, length, count, total size, repetition)."""

from __future__ import annotations

import re

import pytest

from schemas import avro
from schemas.errors import BadHeaderError, EncodeError
from schemas.headers import (
    MAX_HEADERS,
    MAX_TOTAL_HEADER_BYTES,
    REQUIRED_HEADERS,
    SENT_NS_HEADER,
    kafka_headers,
    parse_headers,
    trace_id_for,
    traceparent_for,
    verify_headers_match,
)
from schemas.models import EventKind
from schemas.samples import sample_event, sample_events
from trilink.latency import encode_sent_ns

pytestmark = pytest.mark.unit

SOURCE = "/trilink/sensors/us-tpy2-shariki"


@pytest.mark.parametrize("kind", list(EventKind))
def test_headers_round_trip(kind: EventKind) -> None:
    event = sample_event(kind)
    headers = kafka_headers(event, SOURCE)
    assert [name for name, _ in headers] == list(REQUIRED_HEADERS)
    values = dict(headers)
    assert values["ce_type"] == f"org.trilink.warning.{kind.value}.v{avro.current().version}".encode()
    assert values["ce_specversion"] == b"1.0"
    parsed = parse_headers([*headers, (SENT_NS_HEADER, encode_sent_ns(123))])
    assert parsed.event_id == event.header.event_id
    assert parsed.kind is kind
    assert parsed.schema_version == avro.current().version
    assert parsed.source == SOURCE
    assert parsed.sent_ns == 123
    assert not parsed.realtime
    verify_headers_match(parsed, event)


def test_trace_context_is_derived_from_the_body() -> None:
    first = traceparent_for(sample_event())
    second = traceparent_for(sample_event(event_id="00000000-0000-4000-8000-000000000001"))
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", first)
    assert first.split("-")[1] == second.split("-")[1] == trace_id_for("TRK-20240101-0001")
    assert first.split("-")[2] != second.split("-")[2]
    assert trace_id_for("TRK-2") != trace_id_for("TRK-20240101-0001")


def test_unknown_headers_pass_and_are_forwarded() -> None:
    headers = [*kafka_headers(sample_event(), SOURCE), ("tracestate", b"x=1"), ("ce_time", b"old")]
    parsed = parse_headers(headers)
    assert parsed.kind is EventKind.TRACK_UPDATE
    assert list(parsed.forward) == headers


@pytest.mark.parametrize(
    "extra",
    [
        [("other", None)],  # a null value: a relay could not send it on
        [(f"h{i}", b"x") for i in range(MAX_HEADERS)],  # too many headers
        [("big", b"x" * MAX_TOTAL_HEADER_BYTES)],  # too many header bytes
        [(SENT_NS_HEADER, b"1234")],  # a send time that is not 8 bytes
    ],
    ids=["null-value", "too-many", "too-large", "bad-sent-ns"],
)
def test_every_class_of_bad_extra_header_is_rejected(extra: list[tuple[str, bytes | None]]) -> None:
    with pytest.raises(BadHeaderError) as info:
        parse_headers([*kafka_headers(sample_event(), SOURCE), *extra])
    assert info.value.reason == "bad_header"


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
        ("ce_id", b"\xff\xfe"),
        ("ce_source", b"/" + b"a" * 300),
        ("ce_id", None),
        ("ce_type", b"\xff"),
        ("ce_specversion", b"1" * 300),
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
