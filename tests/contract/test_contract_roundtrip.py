"""Round trips: every event kind survives encode -> decode unchanged, old versions decode."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from fastavro import parse_schema
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import avro, codec
from schemas.errors import EncodeError
from schemas.models import EventKind, MissileClass, WarningEvent
from schemas.samples import sample_event, sample_events
from tests.contract.strategies import BY_KIND

pytestmark = pytest.mark.unit

#: A track update encoded with released v1 (from schemas.samples at release time). Frozen:
#: if this stops decoding, recordings made with v1 stop decoding too.
V1_TRACK_UPDATE_HEX = (
    "c3014ad10e5829fbe0204836663163326134652d386433622d346331652d396137662d3262356438"
    "653063316132332254524b2d32303234303130312d303030311e75732d747079322d73686172696b"
    "690006000204005480e89ba8e2f58606b8ff9ba8e2f586060100020000000000a043409a99999999"
    "795f40000000000064e9400000000000209c400000000000005e40000000000068a0400000000000"
    "e075400000000000003940009a9999999999e93f"
)


@pytest.mark.parametrize("kind", list(EventKind))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_kind_round_trips(kind: EventKind, data: st.DataObject) -> None:
    event = data.draw(BY_KIND[kind])
    encoded = codec.encode_event(event)
    decoded = codec.decode_event(encoded)
    assert decoded == event
    assert decoded.kind is kind
    assert encoded[:2] == codec.MAGIC
    assert int.from_bytes(encoded[2:10], "little") == avro.current().fingerprint


def test_samples_cover_every_kind_and_round_trip() -> None:
    events = sample_events()
    assert [e.kind for e in events] == list(EventKind)
    for event in events:
        assert codec.decode_event(codec.encode_event(event)) == event


def test_decode_accepts_bytearray_and_memoryview() -> None:
    encoded = codec.encode_event(sample_event())
    assert codec.decode_event(bytearray(encoded)) == codec.decode_event(memoryview(encoded))


def test_frozen_v1_bytes_decode_with_current_reader() -> None:
    data = bytes.fromhex(V1_TRACK_UPDATE_HEX)
    assert codec.decode_event(data) == sample_event(EventKind.TRACK_UPDATE)


@pytest.fixture
def reader_v2() -> Iterator[avro.ReleasedSchema]:
    """Pretend a release after the current one exists (one more MissileClass symbol) and is
    the current reader."""
    current = avro.current()
    schema = copy.deepcopy(current.schema)
    launch = schema["fields"][1]["type"][0]
    enum = next(f for f in launch["fields"] if f["name"] == "missile_class")["type"]
    enum["symbols"].append("HGV")
    version = current.version + 1
    newer = avro.ReleasedSchema(
        version,
        current.path.with_name(f"v{version}.avsc"),
        schema,
        parse_schema(schema),
        avro.fingerprint(schema),
    )
    caches = (avro.released_by_fingerprint, codec._readers, codec._prefix)
    original = avro._released
    releases = (*original(), newer)
    avro._released = lambda: releases  # type: ignore[assignment]
    for cached in caches:
        cached.cache_clear()
    try:
        yield newer
    finally:
        avro._released = original  # type: ignore[assignment]
        for cached in caches:
            cached.cache_clear()


def test_v1_message_resolves_to_a_newer_reader(reader_v2: avro.ReleasedSchema) -> None:
    v1 = avro.load_released()[0]
    event = sample_event(EventKind.LAUNCH_DETECTION)
    old = codec.encode_event(event)  # written while v2 is current: carries v2's fingerprint
    assert int.from_bytes(old[2:10], "little") == reader_v2.fingerprint
    v1_bytes = old[:2] + v1.fingerprint.to_bytes(8, "little") + old[10:]
    _writer, reader, _check = codec._readers()[v1.fingerprint]
    assert reader is not None, "a v1 message must go through schema resolution"
    assert codec.decode_event(v1_bytes) == event
    assert event.payload.missile_class is MissileClass.IRBM  # type: ignore[union-attr]


def test_encode_rejects_what_is_not_an_event() -> None:
    with pytest.raises(EncodeError):
        codec.encode_event("not an event")  # type: ignore[arg-type]


def test_message_key_is_the_correlation_key() -> None:
    event = sample_event(correlation_key="TRK-7")
    assert codec.message_key(event) == b"TRK-7"
    assert isinstance(event, WarningEvent)
