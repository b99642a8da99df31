"""Untrusted bytes: every failure is exactly one typed error with a known reason code."""

from __future__ import annotations

import math
import random
import struct
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_writer

from schemas import avro, codec
from schemas.errors import DECODE_REASONS, EncodeError, WireDecodeError
from schemas.models import EventKind, GeoPoint, TrackUpdate, WarningEvent
from schemas.samples import sample_event, sample_events
from tests.contract.strategies import zigzag
from trilink.errors import DeserializationError, SerializationError

pytestmark = pytest.mark.unit


def _reason(data: bytes) -> str:
    with pytest.raises(WireDecodeError) as info:
        codec.decode_event(data)
    assert isinstance(info.value, DeserializationError)
    assert info.value.reason in DECODE_REASONS
    return info.value.reason


def _encode_raw(record: dict[str, Any]) -> bytes:
    """Encode a plain record with the current schema, bypassing the models' checks."""
    buffer = BytesIO()
    buffer.write(codec.MAGIC + avro.current().fingerprint.to_bytes(8, "little"))
    schemaless_writer(buffer, avro.current().parsed, record)
    return buffer.getvalue()


def _track_record(**position: float) -> dict[str, Any]:
    event = sample_event(EventKind.TRACK_UPDATE)
    payload = event.payload.model_dump()
    payload["position"].update(position)
    return {
        "header": event.header.model_dump(),
        "payload": ("trilink.warning.TrackUpdate", payload),
    }


@pytest.fixture
def valid() -> bytes:
    return codec.encode_event(sample_event(EventKind.TRACK_UPDATE))


def test_too_large(valid: bytes) -> None:
    assert _reason(valid + bytes(codec.MAX_MESSAGE_BYTES)) == "too_large"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", "truncated"),
        (b"\xc3", "truncated"),
        (b"\x00\x01", "bad_magic"),
        (b"\xc3\x00", "bad_magic"),
        (b"\x01\xc3", "bad_magic"),
        (b'{"', "bad_magic"),
    ],
)
def test_bad_or_missing_magic(head: bytes, expected: str, valid: bytes) -> None:
    data = head + valid[len(head) :] if len(head) == 2 else head
    assert _reason(data) == expected


def test_unknown_fingerprint_is_named_in_hex(valid: bytes) -> None:
    data = valid[:2] + (0x0123456789ABCDEF).to_bytes(8, "little") + valid[10:]
    with pytest.raises(WireDecodeError) as info:
        codec.decode_event(data)
    assert info.value.reason == "unknown_fingerprint"
    assert "0x0123456789abcdef" in str(info.value)


def test_every_truncation_is_typed(valid: bytes) -> None:
    for cut in range(len(valid)):
        assert _reason(valid[:cut]) in {"bad_magic", "truncated"}, cut


def test_trailing_bytes(valid: bytes) -> None:
    assert _reason(valid + b"\x00") == "trailing_bytes"


def test_huge_array_count_is_rejected_before_decoding(valid: bytes) -> None:
    event = sample_event(EventKind.TRACK_UPDATE)
    # releasable_to's count follows event_id, correlation_key, sensor_id and sensor_nation.
    head = 10 + 1 + 36 + 1 + len(event.header.correlation_key) + 1 + len(event.header.sensor_id)
    assert valid[head + 1] == 6  # zig-zag 3: three nations
    for count in (2**31, 2**62, -(2**31)):
        data = valid[: head + 1] + zigzag(count) + valid[head + 2 :]
        assert _reason(data) in {"truncated", "malformed_body"}


def test_huge_string_length(valid: bytes) -> None:
    data = valid[:10] + zigzag(2**31) + valid[11:]
    assert _reason(data) == "truncated"
    data = valid[:10] + zigzag(-5) + valid[11:]
    assert _reason(data) == "malformed_body"


def test_overlong_varint(valid: bytes) -> None:
    assert _reason(valid[:10] + b"\xff" * 11 + b"\x00") == "malformed_body"


def test_bad_union_and_enum_index(valid: bytes) -> None:
    record = _track_record()
    good = _encode_raw(record)
    assert codec.decode_event(good) == sample_event(EventKind.TRACK_UPDATE)
    payload_index = good.index(b"\x02" + struct.pack("<d", 39.25))  # union branch 1, then lat_deg
    assert _reason(good[:payload_index] + zigzag(6) + good[payload_index + 1 :]) == ("malformed_body")
    phase_at = len(good) - 10  # enum index before the quality double and the v2 class enum
    assert _reason(good[:phase_at] + zigzag(3) + good[phase_at + 1 :]) == "malformed_body"
    assert _reason(good[:-1] + zigzag(5)) == "malformed_body"  # missile_class (v2): 5 symbols


def test_bad_boolean_byte(valid: bytes) -> None:
    at = valid.index(b"\x01\x00\x02")  # simulated=True, exercise=False, union index 1
    assert _reason(valid[:at] + b"\x07" + valid[at + 1 :]) == "malformed_body"


def test_invalid_utf8(valid: bytes) -> None:
    at = valid.index(b"TRK")
    assert _reason(valid[:at] + b"\xff" + valid[at + 1 :]) == "malformed_body"


def test_bad_uuid_text(valid: bytes) -> None:
    assert _reason(valid[:11] + b"z" + valid[12:]) == "invalid_value"


@pytest.mark.parametrize(
    "position",
    [{"lat_deg": 91.0}, {"lon_deg": -180.5}, {"lat_deg": math.nan}, {"alt_m": math.inf}],
)
def test_out_of_range_or_non_finite_values(position: dict[str, float]) -> None:
    assert _reason(_encode_raw(_track_record(**position))) == "invalid_value"


def test_time_order_is_checked_on_decode() -> None:
    record = _track_record()
    record["header"]["emitted_at"], record["header"]["measured_at"] = (
        record["header"]["measured_at"],
        record["header"]["emitted_at"],
    )
    assert _reason(_encode_raw(record)) == "invalid_value"


def test_timestamp_beyond_year_9999(valid: bytes) -> None:
    record = _track_record()
    data = bytearray(_encode_raw(record))
    stamp = record["header"]["measured_at"]
    micros = int(stamp.timestamp()) * 1_000_000
    old = zigzag(micros)
    at = bytes(data).index(old)
    data[at : at + len(old)] = zigzag(2**62)
    assert _reason(bytes(data)) == "invalid_value"


def test_encoding_an_invalid_model_raises_serialization_error() -> None:
    event = sample_event(EventKind.TRACK_UPDATE)
    bad_point = GeoPoint.model_construct(lat_deg=math.nan, lon_deg=0.0, alt_m=0.0)
    payload = TrackUpdate.model_construct(**{**dict(event.payload), "position": bad_point})
    bad = WarningEvent.model_construct(header=event.header, payload=payload)
    with pytest.raises(SerializationError):
        codec.encode_event(bad, revalidate=True)
    wrong_type = WarningEvent.model_construct(
        header=event.header,
        payload=TrackUpdate.model_construct(**{**dict(event.payload), "track_quality": "high"}),
    )
    with pytest.raises(EncodeError):
        codec.encode_event(wrong_type)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(10, len(buf)) if len(buf) > 10 else 0
        if op == 0:
            buf[at] = rng.randrange(256)
        elif op == 1:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 2:
            del buf[at : at + rng.randint(1, 8)]
        elif op == 3:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        else:
            buf[at:at] = zigzag(rng.choice([2**31, 2**40, -1, 10**6]))
    return bytes(buf)


def _outcome(data: bytes) -> str:
    """``ok`` for a valid event, else the typed error's reason; anything else propagates."""
    try:
        event = codec.decode_event(data)
    except WireDecodeError as exc:
        return exc.reason
    return "ok" if isinstance(event, WarningEvent) else "not an event"


def test_fuzz_only_typed_errors_or_valid_events() -> None:
    rng = random.Random(20231219)
    seeds = [codec.encode_event(e) for e in sample_events()]
    prefix = seeds[0][:10]
    outcomes: dict[str, int] = {}
    for case in range(4000):
        if case % 4 == 0:
            data = prefix + rng.randbytes(rng.randint(0, 200))
        elif case % 4 == 1:
            data = rng.randbytes(rng.randint(0, 40))
        else:
            data = _mutate(rng, rng.choice(seeds))
        outcome = _outcome(data)
        assert outcome in DECODE_REASONS or outcome == "ok", (outcome, data.hex())
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # The run must have exercised several failure paths, or the fuzzer is broken.
    assert {"truncated", "malformed_body", "bad_magic"} <= outcomes.keys(), outcomes
