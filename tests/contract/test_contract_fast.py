"""The specialised codec (``schemas._fast``) against the reference path (guard + fastavro + pydantic).

The fast path may only accept: every event it returns must equal, field for field, what the
reference path returns for the same bytes, and every event it writes must be fastavro's bytes.
Everything else (errors and their reasons) is the reference path's by construction; these
tests check that too, on valid events of every kind, on records pushed to the models' limits,
and on random and mutated bytes.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any
from uuid import UUID

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import _fast, avro, codec
from schemas.errors import EncodeError, WireDecodeError
from schemas.models import (
    EventKind,
    GeoPoint,
    Nation,
    TrackEnd,
    TrackEndReason,
    TrackUpdate,
    WarningEvent,
)
from schemas.samples import sample_event, sample_events
from tests.contract.strategies import events, zigzag

pytestmark = pytest.mark.unit


def _same(a: Any, b: Any, where: str = "event") -> None:
    """Equal values of identical types all the way down (incl. pydantic bookkeeping, -0.0)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, BaseModel):
        assert a.model_fields_set == b.model_fields_set, where
        assert a.__pydantic_extra__ == b.__pydantic_extra__, where
        assert a.__pydantic_private__ == b.__pydantic_private__, where
        assert list(a.__dict__) == list(b.__dict__), where
        for name, value in a.__dict__.items():
            _same(value, b.__dict__[name], f"{where}.{name}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), (where, a, b)
    elif isinstance(a, datetime):
        assert a == b and a.tzinfo is b.tzinfo, (where, a, b)
    else:
        assert a == b, (where, a, b)


def _fastavro_body(event: WarningEvent) -> bytes:
    buffer = BytesIO()
    schemaless_writer(buffer, avro.current().parsed, codec._to_record(event))
    return buffer.getvalue()


def _raw(record: dict[str, Any]) -> bytes:
    buffer = BytesIO()
    buffer.write(_fast.PREFIX)
    schemaless_writer(buffer, avro.current().parsed, record)
    return buffer.getvalue()


def _outcome(decode: Any, data: bytes) -> Any:
    try:
        return decode(data)
    except WireDecodeError as exc:
        return (type(exc), exc.reason, str(exc))


def _check_decode(data: bytes) -> Any:
    """The fast path accepts only what the reference accepts, and decode_event == reference."""
    reference = _outcome(codec._decode_reference, data)
    public = _outcome(codec.decode_event, data)
    fast = _fast.decode(data) if data[: len(_fast.PREFIX)] == _fast.PREFIX else None
    if fast is not None:
        assert isinstance(reference, WarningEvent), (reference, data.hex())
        _same(fast, reference)
    if isinstance(reference, WarningEvent):
        _same(public, reference)
    else:
        assert public == reference, data.hex()
    return reference, fast


# --- the fast path is tied to what it was reviewed against -----------------------------------


def test_fast_path_is_enabled_for_the_reviewed_schema_and_models() -> None:
    assert avro.current().fingerprint == _fast.REVIEWED_FINGERPRINT, (
        "a new release is current: extend schemas/_fast.py to it (or it stays off)"
    )
    assert _fast.models_digest() == _fast.REVIEWED_MODELS_DIGEST, (
        "the structure of schemas/models.py changed: re-check every rule restated in "
        "schemas/_fast.py, then update REVIEWED_MODELS_DIGEST"
    )
    assert _fast.ENABLED
    assert codec._fast_prefix() == _fast.PREFIX


def _named(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, list):
        for branch in schema:
            _named(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            found[schema["name"]] = schema
        for field in schema.get("fields", ()):
            _named(field["type"], found)
        _named(schema.get("items"), found)
    return found


def test_tables_match_the_released_schema() -> None:
    named = _named(avro.current().schema, {})
    for symbols in (
        _fast._NATIONS,
        _fast._MISSILE_CLASSES,
        _fast._PHASES,
        _fast._LEVELS,
        _fast._MSG_TYPES,
        _fast._STATUSES,
        _fast._END_REASONS,
        _fast._HEALTHS,
    ):
        name = type(symbols[0]).__name__
        assert [s.value for s in symbols] == named[name]["symbols"], name
    for cls, fields in _fast._FIELDS.items():
        assert [f["name"] for f in named[cls.__name__]["fields"]] == list(fields), cls
    branches = [b["name"] for b in named["WarningEvent"]["fields"][1]["type"]]
    assert branches == [cls.__name__ for cls in _fast._ENCODERS]
    assert [f.__name__ for f in _fast._DECODERS] == [
        "_launch",
        "_track",
        "_impact",
        "_alert",
        "_end",
        "_status",
    ]


# --- valid events of every kind --------------------------------------------------------------


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events)
def test_fast_encode_is_fastavro_bytes_and_fast_decode_is_the_reference(
    event: WarningEvent,
) -> None:
    body = _fast.encode_body(event)
    assert body == _fastavro_body(event)
    data = codec.encode_event(event)
    assert data == codec._encode_reference(event) == _fast.PREFIX + body
    _reference, fast = _check_decode(data)
    assert fast is not None, "a valid event written by fastavro must take the fast path"
    assert fast == event


def test_a_known_id_is_reused_only_for_the_same_text() -> None:
    for event in sample_events():
        data = codec.encode_event(event)
        text = str(event.header.event_id)
        known = UUID(text)
        same = codec.decode_event(data, (text, known))
        assert same == event and same.header.event_id is known
        other = UUID(int=event.header.event_id.int ^ 1)
        different = codec.decode_event(data, (str(other), other))
        assert different == event and different.header.event_id == event.header.event_id != other


@pytest.mark.parametrize(
    "when",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1900, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) - timedelta(seconds=60),
    ],
)
@pytest.mark.parametrize("sequence", [0, 63, 64, 127, 128, 2**31, 2**63 - 1])
def test_extreme_times_and_sequences(when: datetime, sequence: int) -> None:
    for base in sample_events():
        header = base.header.model_copy(
            update={"measured_at": when, "emitted_at": when + timedelta(seconds=60)}
        )
        header = type(header).model_validate(header.model_dump() | {"sequence": sequence})
        payload = base.payload
        if base.kind is EventKind.LAUNCH_DETECTION:
            payload = payload.model_validate(payload.model_dump() | {"launch_time": when})
        event = WarningEvent(header=header, payload=payload)
        assert _fast.encode_body(event) == _fastavro_body(event)
        _reference, fast = _check_decode(codec.encode_event(event))
        assert fast == event


def test_negative_zero_and_limits_survive() -> None:
    point = GeoPoint(lat_deg=-0.0, lon_deg=180.0, alt_m=50_000_000.0)
    base = sample_event(EventKind.TRACK_UPDATE)
    assert isinstance(base.payload, TrackUpdate)
    payload = base.payload.model_copy(update={"position": point, "position_sigma_m": 1.7e308})
    event = WarningEvent(header=base.header, payload=payload)
    assert _fast.encode_body(event) == _fastavro_body(event)
    _reference, fast = _check_decode(codec.encode_event(event))
    assert fast == event
    _same(fast.payload.position, point)  # type: ignore[union-attr]


# --- records at and beyond the models' limits ------------------------------------------------

_FLOATS = st.sampled_from(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        math.nextafter(1.0, 2.0),
        90.0,
        math.nextafter(90.0, 100.0),
        -90.0,
        180.0,
        math.nextafter(180.0, 200.0),
        -180.5,
        360.0,
        math.nextafter(360.0, 0.0),
        3600.0,
        3600.5,
        20_000.0,
        -20_000.0,
        20_000.1,
        -12_000.0,
        -12_000.5,
        50_000_000.0,
        5e7 + 1,
        1.7e308,
        5e-324,
        -5e-324,
        math.inf,
        -math.inf,
        math.nan,
    ]
)
_TEXTS = st.sampled_from(
    [
        "",
        "A",
        "a",
        "1",
        "A" * 32,
        "A" * 33,
        "x" * 64,
        "x" * 65,
        "JP_EEZ",
        "JP_EEZ\n",
        "jp_eez",
        "_A",
        "A-B",
        "TRK-1",
        "TRK 1",
        "-TRK",
        "TRK/1:a.b",
        "é",
        "\uff21",  # fullwidth A
        "t" * 280,
        "t" * 281,
        "€" * 280,
        "TRK-20240101-0001",
    ]
)
_UUID_TEXTS = st.sampled_from(
    [
        "6f1c2a4e-8d3b-4c1e-9a7f-2b5d8e0c1a23",
        "6F1C2A4E-8D3B-4C1E-9A7F-2B5D8E0C1A23",
        "6f1c2a4e8d3b4c1e9a7f2b5d8e0c1a23",
        "{6f1c2a4e-8d3b-4c1e-9a7f-2b5d8e0c1a23}",
        "urn:uuid:6f1c2a4e-8d3b-4c1e-9a7f-2b5d8e0c1a23",
        "6f1c2a4e-8d3b-4c1e-9a7f-2b5d8e0c1a2",
        "6f1c2a4e-8d3b-4c1e-9a7f-2b5d8e0c1a2z",
        "6f1c2a4e_8d3b_4c1e_9a7f_2b5d8e0c1a23",
        "",
    ]
)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] + [path]
    if isinstance(value, tuple):  # union (name, record)
        return _leaves(value[1], (*path, 1))
    return [path]


def _get(record: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        record = record[key]
    return record


def _set(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    if not path:
        return value  # type: ignore[no-any-return]
    head, *rest = path
    if isinstance(record, tuple):
        return (record[0], _set(record[1], tuple(rest), value))  # type: ignore[return-value]
    return {**record, head: _set(record[head], tuple(rest), value)}


@st.composite
def _replacement(draw: st.DrawFn, old: Any, record: dict[str, Any]) -> Any:
    times = [record["header"]["measured_at"], record["header"]["emitted_at"]]
    if isinstance(old, bool):
        return draw(st.booleans())
    if isinstance(old, int):
        return draw(st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]))
    if isinstance(old, float):
        return draw(_FLOATS)
    if isinstance(old, datetime):
        base = draw(st.sampled_from(times))
        return base + timedelta(microseconds=draw(st.sampled_from([-1, 0, 1, -(10**6)])))
    if isinstance(old, UUID):
        return draw(_UUID_TEXTS)
    if isinstance(old, str) and old in {n.value for n in Nation}:
        return draw(st.sampled_from(list(Nation))).value
    if isinstance(old, str):
        return draw(st.sampled_from([record["header"]["correlation_key"]]) | _TEXTS)
    if isinstance(old, list):
        pool = old or ["JP_EEZ"]
        return draw(
            st.sampled_from([[], pool[:1] * 2, (pool * 17)[:17], list(reversed(pool)), pool + pool[:1]])
        )
    if old is None:
        return draw(st.sampled_from([times[0], "TRK-OTHER", record["header"]["correlation_key"]]))
    return old


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, data=st.data())
def test_records_at_the_limits_are_judged_like_the_reference(
    event: WarningEvent, data: st.DataObject
) -> None:
    record: dict[str, Any] = codec._to_record(event)
    record["header"]["event_id"] = str(record["header"]["event_id"])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _leaves(record) if p and not isinstance(_get(record, p), dict)]
        path = data.draw(st.sampled_from(paths))
        record = _set(record, path, data.draw(_replacement(_get(record, path), record)))
    try:
        raw = _raw(record)
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError):
        assume(False)  # not even Avro: nothing to decode
        return
    reference, fast = _check_decode(raw)
    if isinstance(reference, WarningEvent):
        assert fast is not None, "the fast path must accept what fastavro writes and pydantic accepts"


# --- untrusted bytes ---------------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randrange(10, len(buf)) if len(buf) > 10 else 0
        if op == 0:
            buf[at] = rng.randrange(256)
        elif op == 1:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 2:
            del buf[at : at + rng.randint(1, 8)]
        elif op == 3:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 4:
            buf[at:at] = zigzag(rng.choice([2**31, 2**40, -1, -3, 10**6, 2**63 - 1]))
        else:
            buf[at : at + 1] = rng.choice([b"\x80\x00", b"\x81\x00", b"\xff" * 10 + b"\x01"])
    return bytes(buf)


def test_fuzzed_bytes_get_the_same_outcome_on_both_paths() -> None:
    rng = random.Random(20240601)
    seeds = [codec.encode_event(e) for e in sample_events()]
    outcomes: dict[str, int] = {}
    for case in range(12_000):
        if case % 4 == 0:
            data = _fast.PREFIX + rng.randbytes(rng.randint(0, 200))
        elif case % 4 == 1:
            data = rng.randbytes(rng.randint(0, 40))
        else:
            data = _mutate(rng, rng.choice(seeds))
        reference, fast = _check_decode(data)
        label = "ok" if isinstance(reference, WarningEvent) else reference[1]
        outcomes[label] = outcomes.get(label, 0) + 1
        if fast is not None:
            outcomes["fast"] = outcomes.get("fast", 0) + 1
    assert {"ok", "fast", "truncated", "malformed_body", "trailing_bytes", "invalid_value"} <= (
        outcomes.keys()
    ), outcomes


def test_every_single_byte_change_and_cut_gets_the_same_outcome() -> None:
    for seed in (codec.encode_event(e) for e in sample_events()):
        for at in range(len(_fast.PREFIX), len(seed)):
            for value in (0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, seed[at] ^ 0x01, seed[at] ^ 0x80):
                _check_decode(seed[:at] + bytes([value]) + seed[at + 1 :])
        for cut in range(len(seed) + 1):
            _check_decode(seed[:cut])
        _check_decode(seed + b"\x00")


def test_non_canonical_but_legal_encodings_defer_to_the_reference() -> None:
    event = sample_event(EventKind.IMPACT_PREDICTION)
    record = codec._to_record(event)
    data = codec.encode_event(event)
    body = data[len(_fast.PREFIX) :]
    areas = b"\x02\x0cJP_EEZ\x00"  # one block of one area
    assert areas in body
    # The same array written as a block with a byte size (negative count), then two blocks.
    for variant in (b"\x01\x0e\x0cJP_EEZ\x00", b"\x02\x0cJP_EEZ\x00"):
        _check_decode(data.replace(areas, variant, 1))
    assert _raw(record) == data


# --- encode falls back to fastavro for what it does not plainly accept ---------------------


def _encode_outcome(encode: Any, event: Any) -> Any:
    try:
        return encode(event)
    except EncodeError as exc:
        return (exc.reason, str(exc))


@pytest.mark.parametrize(
    "change",
    [
        {"track_quality": "high"},
        {"track_quality": 1},
        {"track_quality": True},
        {"phase": "BOOST"},
        {"phase": "SIDEWAYS"},
        {"phase": None},
    ],
)
def test_unchecked_payloads_encode_like_fastavro(change: dict[str, Any]) -> None:
    event = sample_event(EventKind.TRACK_UPDATE)
    payload = TrackUpdate.model_construct(**{**dict(event.payload), **change})
    bad = WarningEvent.model_construct(header=event.header, payload=payload)
    assert _encode_outcome(codec.encode_event, bad) == _encode_outcome(codec._encode_reference, bad)


@pytest.mark.parametrize(
    "change",
    [
        {"sequence": 2**63},
        {"sequence": -1},
        {"sequence": 1.5},
        {"measured_at": datetime(2024, 1, 1)},  # naive: fastavro reads it as local time
        {"measured_at": 1_704_067_200_000_000},
        {"event_id": "not-a-uuid"},
        {"sensor_nation": "XX"},
        {"releasable_to": []},
        {"simulated": 2},
        {"simulated": "yes"},
        {"correlation_key": b"bytes"},
    ],
)
def test_unchecked_headers_encode_like_fastavro(change: dict[str, Any]) -> None:
    event = sample_event(EventKind.TRACK_END)
    header = type(event.header).model_construct(**{**dict(event.header), **change})
    bad = WarningEvent.model_construct(header=header, payload=event.payload)
    assert _encode_outcome(codec.encode_event, bad) == _encode_outcome(codec._encode_reference, bad)


def test_unchecked_merge_target_encodes_like_fastavro() -> None:
    event = sample_event(EventKind.TRACK_END)
    for target in (7, "TRK-9", None):
        payload = TrackEnd.model_construct(reason=TrackEndReason.MERGED, merged_into=target)
        bad = WarningEvent.model_construct(header=event.header, payload=payload)
        assert _encode_outcome(codec.encode_event, bad) == _encode_outcome(codec._encode_reference, bad)
