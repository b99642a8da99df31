"""Hand-specialised codec for the *current* release (v2): the hot path of :mod:`schemas.codec`.

fastavro walks the parsed schema for every value and pydantic re-checks every field through
its generic validators; for the one schema almost every message is written with, both can be
replaced by straight-line code. This module is that code, for release v2 only (v2 appended one
enum, ``missile_class``, to the track update, impact prediction and alert records; messages written
with v1 take the reference path, which resolves them to v2):

* :func:`encode_body` writes the Avro body straight from the model attributes (no record
  dict). Its output must be byte-for-byte fastavro's ``schemaless_writer`` output.
* :func:`decode` parses a whole message in one bounded pass (every length and count is
  checked against the bytes left before anything is sliced; trailing bytes are refused),
  converts values exactly as fastavro does (``UUID(text)``, epoch + microseconds), re-applies
  every rule of :mod:`schemas.models` and builds the models without running pydantic again.

The fast path may only say *yes*. :func:`decode` returns ``None`` at the first thing it does
not plainly accept (bad structure, bad UTF-8, a value out of range, an unusual but legal
encoding such as a negative array block count), and the codec then runs the reference path
(guard + fastavro + pydantic), which decides the outcome and the error reason. Likewise a
failing :func:`encode_body` sends the event to fastavro. So errors are the reference path's
by construction; what needs proof is that a *yes* here is the reference path's yes, which
``tests/contract/test_contract_fast.py`` checks with hypothesis and fuzzing.

The code is tied to what it was reviewed against: :data:`REVIEWED_FINGERPRINT` (the schema)
and :data:`REVIEWED_MODELS_DIGEST` (the structure of :mod:`schemas.models`, where the rules
live: :func:`models_digest`). If either changes, :data:`ENABLED` turns false, the codec uses
the reference path only, and a contract test fails until this module is brought back in step.
The digest covers what the checks here restate (fields, types, constraints, defaults, enum
symbols, constants, model config and the validators' code), not comments, docstrings or field
descriptions, so editing prose in the models leaves the fast path on.
"""

from __future__ import annotations

import hashlib
import re
import struct
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import CodeType, FunctionType, ModuleType
from typing import Any, Final
from uuid import UUID

from pydantic import BaseModel

from schemas import models
from schemas._guard import read_long
from schemas.errors import MalformedBodyError, TruncatedError
from schemas.models import (
    MAX_AREAS,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    Alert,
    AlertLevel,
    AlertMsgType,
    AlertStatus,
    EnuVelocity,
    EventHeader,
    FlightPhase,
    GeoPoint,
    ImpactPrediction,
    LaunchDetection,
    MissileClass,
    Nation,
    SensorHealth,
    SensorStatus,
    TrackEnd,
    TrackEndReason,
    TrackUpdate,
    UncertaintyEllipse,
    WarningEvent,
)

__all__ = [
    "ENABLED",
    "PREFIX",
    "REVIEWED_FINGERPRINT",
    "REVIEWED_MODELS_DIGEST",
    "decode",
    "encode_body",
    "models_digest",
]

#: CRC-64-AVRO fingerprint of released v2, the schema this module encodes and decodes.
REVIEWED_FINGERPRINT: Final = 0xBF0C4B6A6D150123
#: :func:`models_digest` of :mod:`schemas.models` when the checks below were last compared with it.
REVIEWED_MODELS_DIGEST: Final = "d8fcd2d9ddc25ac07551e116964eeab8b44762d3e86ed9857a3895063fb73e2a"
#: Single-object prefix (marker + fingerprint) of messages this module handles.
PREFIX: Final = b"\xc3\x01" + REVIEWED_FINGERPRINT.to_bytes(8, "little")
_PREFIX_BYTES = len(PREFIX)

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _code(code: CodeType, doc: str | None = None) -> Any:
    # Bytecode, names and constants (nested code objects recursively; the docstring dropped):
    # what a function does, without its line numbers, comments or prose.
    consts = tuple(
        _code(c) if isinstance(c, CodeType) else sorted(map(repr, c)) if isinstance(c, frozenset) else repr(c)
        for i, c in enumerate(code.co_consts)
        if not (i == 0 and doc is not None and c == doc)
    )
    return (code.co_code.hex(), code.co_names, code.co_varnames, consts)


def _functions(namespace: dict[str, Any], module_name: str) -> list[Any]:
    found = []
    for name, value in sorted(namespace.items()):
        func = getattr(value, "wrapped", value)  # pydantic's decorator proxy
        func = getattr(func, "__func__", func)  # classmethod, staticmethod
        func = getattr(func, "fget", func)  # property
        if isinstance(func, FunctionType) and func.__module__ == module_name:
            found.append((name, _code(func.__code__, func.__doc__)))
    return found


def models_digest(module: ModuleType = models) -> str:
    """SHA-256 of the structure of a models module: for every model the fast path builds, its
    fields (name, type, constraints, default) and config; every enum's symbols; the module's
    upper-case constants; and the code of its functions and of the models' validators."""
    parts: list[Any] = []
    for name in sorted(cls.__name__ for cls in _FIELDS):
        cls = getattr(module, name)
        config = sorted((k, repr(v)) for k, v in cls.model_config.items())
        fields = [
            (
                field,
                repr(info.annotation),
                repr(info.metadata),
                repr(info.default),
                repr(info.default_factory),
            )
            for field, info in cls.model_fields.items()
        ]
        parts.append((name, config, fields, _functions(dict(vars(cls)), module.__name__)))
    for name, value in sorted(vars(module).items()):
        if isinstance(value, type) and issubclass(value, Enum) and value.__module__ == module.__name__:
            parts.append((name, [(m.name, m.value) for m in value]))
        elif name.isupper() and isinstance(value, int | float | str | tuple):
            parts.append((name, repr(value)))
        elif name.isupper() and isinstance(value, frozenset):
            parts.append((name, sorted(map(repr, value))))
    parts.append(_functions(dict(vars(module)), module.__name__))
    text = _ADDRESS.sub("", repr(parts)).replace(f"{module.__name__}.", "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain_models() -> bool:
    # Building a model without pydantic is sound only for plain frozen models: no private
    # attributes, no post-init hook, no extra fields, the four slots BaseModel declares.
    slots = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    plain = all(name in BaseModel.__dict__ for name in slots)
    for cls, fields in _FIELDS.items():
        plain = plain and not cls.__private_attributes__ and cls.__pydantic_post_init__ is None
        plain = plain and cls.model_config.get("extra") == "forbid"
        plain = plain and tuple(cls.model_fields) == fields
    return plain


# --- building models without re-validation ---------------------------------------------------

#: Field names per model, in declaration order (checked against the models at import).
_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {
    GeoPoint: ("lat_deg", "lon_deg", "alt_m"),
    EnuVelocity: ("east_m_s", "north_m_s", "up_m_s"),
    UncertaintyEllipse: ("semi_major_m", "semi_minor_m", "orientation_deg"),
    EventHeader: (
        "event_id",
        "correlation_key",
        "sensor_id",
        "sensor_nation",
        "releasable_to",
        "sequence",
        "measured_at",
        "emitted_at",
        "simulated",
        "exercise",
    ),
    LaunchDetection: (
        "launch_point",
        "launch_point_sigma_m",
        "launch_time",
        "confidence",
        "missile_class",
    ),
    TrackUpdate: (
        "position",
        "velocity",
        "position_sigma_m",
        "velocity_sigma_m_s",
        "phase",
        "track_quality",
        "missile_class",
    ),
    ImpactPrediction: (
        "impact_point",
        "impact_time",
        "launch_time",
        "ellipse",
        "impact_areas",
        "overflown_areas",
        "missile_class",
    ),
    Alert: ("level", "msg_type", "status", "affected_areas", "text", "references", "missile_class"),
    TrackEnd: ("reason", "merged_into"),
    SensorStatus: (
        "health",
        "site",
        "max_range_m",
        "sector_center_deg",
        "sector_width_deg",
        "heartbeat_interval_s",
    ),
    WarningEvent: ("header", "payload"),
}
_FIELD_SETS = {cls: frozenset(names) for cls, names in _FIELDS.items()}

_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _make(cls: type[Any], values: dict[str, Any]) -> Any:
    """What ``model_validate`` leaves behind for an all-fields dict of already valid values."""
    model = _new(cls)
    _set_dict(model, values)
    _set_fields_set(model, set(_FIELD_SETS[cls]))
    _set_extra(model, None)
    _set_private(model, None)
    return model


# --- wire primitives -------------------------------------------------------------------------

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INF = float("inf")
#: Zig-zag varints of 0..127 (lengths, counts, enum and union indexes), precomputed.
_SMALL = tuple(bytes([n << 1]) if n < 64 else bytes([(n << 1) & 0x7F | 0x80, n >> 6]) for n in range(128))


def _long(value: int) -> bytes:
    """Zig-zag varint of an Avro long; refuses what fastavro would refuse (out of range)."""
    if 0 <= value < 128:
        return _SMALL[value]
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise OverflowError("long out of range")
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(value: str) -> bytes:
    raw = value.encode()
    size = len(raw)
    return (_SMALL[size] if size < 128 else _long(size)) + raw


def _micros(value: datetime) -> int:
    # fastavro's formula for aware datetimes; a naive one raises here (fastavro then decides).
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _strings(values: list[str]) -> bytes:
    if not values:
        return b"\x00"
    return _long(len(values)) + b"".join([_string(v) for v in values]) + b"\x00"


class _DeferError(Exception):
    """The fast decoder does not accept this message; the reference path decides."""


def _read_text(data: bytes, pos: int, end: int) -> tuple[str, int]:
    size, pos = read_long(data, pos)
    stop = pos + size
    if size < 0 or stop > end:
        raise _DeferError
    return data[pos:stop].decode(), stop


def _read_count(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Item count of the next array block: positive and payable with the bytes left."""
    count, pos = read_long(data, pos)
    if count < 0 or count > end - pos:  # every item below takes at least one byte
        raise _DeferError
    return count, pos


def _read_texts(data: bytes, pos: int, end: int) -> tuple[list[str], int]:
    items: list[str] = []
    count, pos = _read_count(data, pos, end)
    while count:
        for _ in range(count):
            text, pos = _read_text(data, pos, end)
            items.append(text)
        count, pos = _read_count(data, pos, end)
    return items, pos


def _read_time(data: bytes, pos: int) -> tuple[datetime, int]:
    micros, pos = read_long(data, pos)
    return _EPOCH + timedelta(0, 0, micros), pos  # fastavro: epoch + timedelta(microseconds=n)


# --- the rules of schemas.models, re-stated ---------------------------------------------------

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*").fullmatch
_AREA = re.compile(r"[A-Z][A-Z0-9_]{0,31}").fullmatch


def _identifier(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_CHARS and _ID(value) is not None


def _areas(values: list[str], least: int) -> bool:
    return (
        least <= len(values) <= MAX_AREAS
        and len(set(values)) == len(values)
        and all(_AREA(v) is not None for v in values)
    )


def _point(lat: float, lon: float, alt: float) -> GeoPoint | None:
    if -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0 and -12_000.0 <= alt <= 50_000_000.0:
        return _make(GeoPoint, {"lat_deg": lat, "lon_deg": lon, "alt_m": alt})  # type: ignore[no-any-return]
    return None


_POINT = struct.Struct("<3d")
_D = struct.Struct("<d")
_D4 = struct.Struct("<4d")
_D7 = struct.Struct("<7d")
_D8 = struct.Struct("<8d")

# Enum symbol tables, in schema order (a test compares them with the released schema).
_NATIONS = tuple(Nation)
_MISSILE_CLASSES = tuple(MissileClass)
_PHASES = tuple(FlightPhase)
_LEVELS = tuple(AlertLevel)
_MSG_TYPES = tuple(AlertMsgType)
_STATUSES = tuple(AlertStatus)
_END_REASONS = tuple(TrackEndReason)
_HEALTHS = tuple(SensorHealth)


def _enum_index(symbols: tuple[Any, ...]) -> dict[Any, bytes]:
    return {symbol.value: _SMALL[i] for i, symbol in enumerate(symbols)}


_NATION_OUT = _enum_index(_NATIONS)
_MISSILE_CLASS_OUT = _enum_index(_MISSILE_CLASSES)
_PHASE_OUT = _enum_index(_PHASES)
_LEVEL_OUT = _enum_index(_LEVELS)
_MSG_TYPE_OUT = _enum_index(_MSG_TYPES)
_STATUS_OUT = _enum_index(_STATUSES)
_END_REASON_OUT = _enum_index(_END_REASONS)
_HEALTH_OUT = _enum_index(_HEALTHS)


def _symbol(symbols: tuple[Any, ...], data: bytes, pos: int) -> tuple[Any, int]:
    index = data[pos]
    if index & 1 or index >= 2 * len(symbols):  # one-byte, non-negative, in range
        raise _DeferError
    return symbols[index >> 1], pos + 1


# --- encode --------------------------------------------------------------------------------
# Only plainly typed models are encoded here: exact float, int, bool, str, UUID, aware datetime,
# enum members and model classes, as validation leaves them. Anything else (an event built with
# ``model_construct``) raises _DeferError, and the reference path decides what fastavro and pydantic's
# serializer make of it.


def _floats(*values: Any) -> None:
    for value in values:
        if type(value) is not float:
            raise _DeferError


def _texts(values: Any) -> None:
    if type(values) is not list or not all(type(v) is str for v in values):
        raise _DeferError


def _time(value: Any) -> bytes:
    if type(value) is not datetime:
        raise _DeferError
    return _long(_micros(value))  # a naive datetime raises TypeError in _micros


def _encode_header(h: Any) -> bytes:
    nations = h.releasable_to
    if not (
        type(h) is EventHeader
        and type(h.event_id) is UUID
        and type(h.correlation_key) is str
        and type(h.sensor_id) is str
        and type(h.sensor_nation) is Nation
        and type(nations) is list
        and all(type(n) is Nation for n in nations)
        and type(h.sequence) is int
        and type(h.simulated) is bool
        and type(h.exercise) is bool
    ):
        raise _DeferError
    return b"".join(
        [
            _string(str(h.event_id)),
            _string(h.correlation_key),
            _string(h.sensor_id),
            _NATION_OUT[h.sensor_nation],
            (_long(len(nations)) + b"".join([_NATION_OUT[n] for n in nations]) + b"\x00")
            if nations
            else b"\x00",
            _long(h.sequence),
            _time(h.measured_at),
            _time(h.emitted_at),
            b"\x01" if h.simulated else b"\x00",
            b"\x01" if h.exercise else b"\x00",
        ]
    )


def _point_values(p: Any) -> tuple[float, float, float]:
    if type(p) is not GeoPoint:
        raise _DeferError
    values = p.lat_deg, p.lon_deg, p.alt_m
    _floats(*values)
    return values


def _encode_launch(p: LaunchDetection) -> bytes:
    if type(p.missile_class) is not MissileClass:
        raise _DeferError
    _floats(p.launch_point_sigma_m, p.confidence)
    return (
        b"\x00"
        + _D4.pack(*_point_values(p.launch_point), p.launch_point_sigma_m)
        + _time(p.launch_time)
        + _D.pack(p.confidence)
        + _MISSILE_CLASS_OUT[p.missile_class]
    )


def _encode_track(p: TrackUpdate) -> bytes:
    vel = p.velocity
    if (
        type(vel) is not EnuVelocity
        or type(p.phase) is not FlightPhase
        or type(p.missile_class) is not MissileClass
    ):
        raise _DeferError
    doubles = (
        *_point_values(p.position),
        vel.east_m_s,
        vel.north_m_s,
        vel.up_m_s,
        p.position_sigma_m,
        p.velocity_sigma_m_s,
        p.track_quality,
    )
    _floats(*doubles)
    return (
        b"\x02"
        + _D8.pack(*doubles[:8])
        + _PHASE_OUT[p.phase]
        + _D.pack(doubles[8])
        + _MISSILE_CLASS_OUT[p.missile_class]
    )


def _encode_impact(p: ImpactPrediction) -> bytes:
    e = p.ellipse
    launch = p.launch_time
    if type(e) is not UncertaintyEllipse or type(p.missile_class) is not MissileClass:
        raise _DeferError
    _floats(e.semi_major_m, e.semi_minor_m, e.orientation_deg)
    _texts(p.impact_areas)
    _texts(p.overflown_areas)
    return b"".join(
        [
            b"\x04",
            _POINT.pack(*_point_values(p.impact_point)),
            _time(p.impact_time),
            b"\x00" if launch is None else b"\x02" + _time(launch),
            _POINT.pack(e.semi_major_m, e.semi_minor_m, e.orientation_deg),
            _strings(p.impact_areas),
            _strings(p.overflown_areas),
            _MISSILE_CLASS_OUT[p.missile_class],
        ]
    )


def _encode_alert(p: Alert) -> bytes:
    refs = p.references
    if not (
        type(p.level) is AlertLevel
        and type(p.msg_type) is AlertMsgType
        and type(p.status) is AlertStatus
        and type(p.text) is str
        and type(refs) is list
        and all(type(r) is UUID for r in refs)
        and type(p.missile_class) is MissileClass
    ):
        raise _DeferError
    _texts(p.affected_areas)
    return b"".join(
        [
            b"\x06",
            _LEVEL_OUT[p.level],
            _MSG_TYPE_OUT[p.msg_type],
            _STATUS_OUT[p.status],
            _strings(p.affected_areas),
            _string(p.text),
            _strings([str(r) for r in refs]),
            _MISSILE_CLASS_OUT[p.missile_class],
        ]
    )


def _encode_end(p: TrackEnd) -> bytes:
    target = p.merged_into
    if type(p.reason) is not TrackEndReason or not (target is None or type(target) is str):
        raise _DeferError
    tail = b"\x00" if target is None else b"\x02" + _string(target)
    return b"\x08" + _END_REASON_OUT[p.reason] + tail


def _encode_status(p: SensorStatus) -> bytes:
    if type(p.health) is not SensorHealth:
        raise _DeferError
    doubles = (p.max_range_m, p.sector_center_deg, p.sector_width_deg, p.heartbeat_interval_s)
    _floats(*doubles)
    return b"\x0a" + _HEALTH_OUT[p.health] + _POINT.pack(*_point_values(p.site)) + _D4.pack(*doubles)


_ENCODERS: dict[type[Any], Any] = {
    LaunchDetection: _encode_launch,
    TrackUpdate: _encode_track,
    ImpactPrediction: _encode_impact,
    Alert: _encode_alert,
    TrackEnd: _encode_end,
    SensorStatus: _encode_status,
}


def encode_body(event: WarningEvent) -> bytes:
    """The v2 Avro body of ``event``, equal to fastavro's; raises on anything unexpected."""
    payload = event.payload
    body: bytes = _encode_header(event.header) + _ENCODERS[type(payload)](payload)
    return body


# --- decode --------------------------------------------------------------------------------


def _decode_header(data: bytes, end: int, known_id: tuple[str, UUID] | None) -> tuple[EventHeader, int]:
    # One-byte varints (lengths < 64, one block of nations) are read inline: it is the usual
    # shape, and function calls dominate at this size. Anything longer takes the helpers.
    pos = _PREFIX_BYTES
    texts = []
    for _ in range(3):  # event_id, correlation_key, sensor_id
        size = data[pos]
        if size < 0x80 and not size & 1:
            stop = pos + 1 + (size >> 1)
            if stop > end:
                raise _DeferError
            texts.append(data[pos + 1 : stop].decode())
            pos = stop
        else:
            text, pos = _read_text(data, pos, end)
            texts.append(text)
    event_id, key, sensor = texts
    nation, pos = _symbol(_NATIONS, data, pos)
    count = data[pos]
    if 0 < count <= 6 and not count & 1 and data[pos + 1 + (count >> 1)] == 0:
        # One block of at most three nations, then the end-of-array zero.
        stop = pos + 1 + (count >> 1)
        indexes = data[pos + 1 : stop]
        if max(indexes) >= 2 * len(_NATIONS) or any(i & 1 for i in indexes):
            raise _DeferError
        releasable = [_NATIONS[i >> 1] for i in indexes]
        pos = stop + 1
    else:
        releasable = []
        count, pos = _read_count(data, pos, end)
        while count:
            for _ in range(count):
                member, pos = _symbol(_NATIONS, data, pos)
                releasable.append(member)
            count, pos = _read_count(data, pos, end)
    sequence, pos = read_long(data, pos)
    measured, pos = _read_time(data, pos)
    emitted, pos = _read_time(data, pos)
    simulated, exercise = data[pos], data[pos + 1]
    if not (
        simulated <= 1
        and exercise <= 1
        and _identifier(key)
        and _identifier(sensor)
        and releasable
        and len(set(releasable)) == len(releasable)
        and nation in releasable  # WarningEvent's cross-check
        and sequence >= 0
        and measured <= emitted
    ):
        raise _DeferError
    header = _make(
        EventHeader,
        {
            # fastavro's conversion, same errors and forms accepted; a text already converted
            # (the ce_id header's canonical form) gives an equal UUID, so that one is reused
            "event_id": known_id[1] if known_id is not None and known_id[0] == event_id else UUID(event_id),
            "correlation_key": key,
            "sensor_id": sensor,
            "sensor_nation": nation,
            "releasable_to": releasable,
            "sequence": sequence,
            "measured_at": measured,
            "emitted_at": emitted,
            "simulated": simulated == 1,
            "exercise": exercise == 1,
        },
    )
    return header, pos + 2


def _launch(data: bytes, pos: int, end: int, header: EventHeader) -> tuple[Any, int]:
    lat, lon, alt, sigma = _D4.unpack_from(data, pos)
    launch_time, pos = _read_time(data, pos + 32)
    (confidence,) = _D.unpack_from(data, pos)
    missile_class, pos = _symbol(_MISSILE_CLASSES, data, pos + 8)
    point = _point(lat, lon, alt)
    if not (
        point is not None
        and 0.0 <= sigma < _INF
        and 0.0 <= confidence <= 1.0
        and launch_time <= header.measured_at  # WarningEvent's cross-check
    ):
        raise _DeferError
    values = {
        "launch_point": point,
        "launch_point_sigma_m": sigma,
        "launch_time": launch_time,
        "confidence": confidence,
        "missile_class": missile_class,
    }
    return _make(LaunchDetection, values), pos


def _track(data: bytes, pos: int, end: int, header: EventHeader) -> tuple[Any, int]:
    lat, lon, alt, east, north, up, pos_sigma, vel_sigma = _D8.unpack_from(data, pos)
    phase, pos = _symbol(_PHASES, data, pos + 64)
    (quality,) = _D.unpack_from(data, pos)
    missile_class, pos = _symbol(_MISSILE_CLASSES, data, pos + 8)
    point = _point(lat, lon, alt)
    if not (
        point is not None
        and -20_000.0 <= east <= 20_000.0
        and -20_000.0 <= north <= 20_000.0
        and -20_000.0 <= up <= 20_000.0
        and 0.0 <= pos_sigma < _INF
        and 0.0 <= vel_sigma < _INF
        and 0.0 <= quality <= 1.0
    ):
        raise _DeferError
    values = {
        "position": point,
        "velocity": _make(EnuVelocity, {"east_m_s": east, "north_m_s": north, "up_m_s": up}),
        "position_sigma_m": pos_sigma,
        "velocity_sigma_m_s": vel_sigma,
        "phase": phase,
        "track_quality": quality,
        "missile_class": missile_class,
    }
    return _make(TrackUpdate, values), pos


def _impact(data: bytes, pos: int, end: int, header: EventHeader) -> tuple[Any, int]:
    lat, lon, alt = _POINT.unpack_from(data, pos)
    impact_time, pos = _read_time(data, pos + 24)
    branch = data[pos]
    launch_time: datetime | None = None
    if branch == 2:
        launch_time, pos = _read_time(data, pos + 1)
    elif branch == 0:
        pos += 1
    else:
        raise _DeferError
    major, minor, orientation = _POINT.unpack_from(data, pos)
    impact_areas, pos = _read_texts(data, pos + 24, end)
    overflown, pos = _read_texts(data, pos, end)
    missile_class, pos = _symbol(_MISSILE_CLASSES, data, pos)
    point = _point(lat, lon, alt)
    if not (
        point is not None
        and 0.0 <= minor <= major < _INF
        and 0.0 <= orientation < 180.0
        and _areas(impact_areas, 0)
        and _areas(overflown, 0)
        and (launch_time is None or launch_time < impact_time)
    ):
        raise _DeferError
    ellipse = {"semi_major_m": major, "semi_minor_m": minor, "orientation_deg": orientation}
    values = {
        "impact_point": point,
        "impact_time": impact_time,
        "launch_time": launch_time,
        "ellipse": _make(UncertaintyEllipse, ellipse),
        "impact_areas": impact_areas,
        "overflown_areas": overflown,
        "missile_class": missile_class,
    }
    return _make(ImpactPrediction, values), pos


def _alert(data: bytes, pos: int, end: int, header: EventHeader) -> tuple[Any, int]:
    level, pos = _symbol(_LEVELS, data, pos)
    msg_type, pos = _symbol(_MSG_TYPES, data, pos)
    status, pos = _symbol(_STATUSES, data, pos)
    areas, pos = _read_texts(data, pos, end)
    text, pos = _read_text(data, pos, end)
    texts, pos = _read_texts(data, pos, end)
    missile_class, pos = _symbol(_MISSILE_CLASSES, data, pos)
    references = [UUID(t) for t in texts]
    if not (
        _areas(areas, 1)
        and 0 < len(text) <= MAX_TEXT_CHARS
        and len(references) <= MAX_AREAS
        and len(set(references)) == len(references)
        and (msg_type is AlertMsgType.ALERT) != bool(references)
        and (status is AlertStatus.EXERCISE) == header.exercise  # WarningEvent's cross-check
    ):
        raise _DeferError
    values = {
        "level": level,
        "msg_type": msg_type,
        "status": status,
        "affected_areas": areas,
        "text": text,
        "references": references,
        "missile_class": missile_class,
    }
    return _make(Alert, values), pos


def _end(data: bytes, pos: int, end: int, header: EventHeader) -> tuple[Any, int]:
    reason, pos = _symbol(_END_REASONS, data, pos)
    branch = data[pos]
    target: str | None = None
    if branch == 2:
        target, pos = _read_text(data, pos + 1, end)
    elif branch == 0:
        pos += 1
    else:
        raise _DeferError
    if not (
        (reason is TrackEndReason.MERGED) == (target is not None)
        and (target is None or (_identifier(target) and target != header.correlation_key))
    ):
        raise _DeferError
    return _make(TrackEnd, {"reason": reason, "merged_into": target}), pos


def _status(data: bytes, pos: int, end: int, header: EventHeader) -> tuple[Any, int]:
    health, pos = _symbol(_HEALTHS, data, pos)
    lat, lon, alt, max_range, center, width, interval = _D7.unpack_from(data, pos)
    point = _point(lat, lon, alt)
    if not (
        point is not None
        and 0.0 <= max_range < _INF
        and 0.0 <= center < 360.0
        and 0.0 < width <= 360.0
        and 0.0 < interval <= 3600.0
    ):
        raise _DeferError
    values = {
        "health": health,
        "site": point,
        "max_range_m": max_range,
        "sector_center_deg": center,
        "sector_width_deg": width,
        "heartbeat_interval_s": interval,
    }
    return _make(SensorStatus, values), pos + 56


#: Payload decoders in union branch order.
_DECODERS = (_launch, _track, _impact, _alert, _end, _status)


def decode(data: bytes, known_id: tuple[str, UUID] | None = None) -> WarningEvent | None:
    """The event in ``data`` (which starts with :data:`PREFIX`), or ``None`` to defer.

    Returns an event only if the structure is exactly one v2 body and every model rule holds;
    the work is bounded by the message size (lengths and counts are checked before use).
    """
    end = len(data)
    try:
        header, pos = _decode_header(data, end, known_id)
        branch = data[pos]
        if branch & 1 or branch >= 2 * len(_DECODERS):
            return None
        payload, pos = _DECODERS[branch >> 1](data, pos + 1, end, header)
    except (
        _DeferError,
        TruncatedError,
        MalformedBodyError,
        IndexError,
        ValueError,
        OverflowError,
        struct.error,
    ):
        # IndexError/struct.error/TruncatedError: the body ends early; MalformedBodyError: a varint
        # over 10 bytes or 64 bits; ValueError: bad UTF-8 or UUID text; OverflowError: a
        # timestamp outside datetime's range.
        return None
    if pos != end:
        return None
    return _make(WarningEvent, {"header": header, "payload": payload})  # type: ignore[no-any-return]


#: On only while the schema and the models are the ones this module was checked against.
ENABLED: Final = _plain_models() and models_digest() == REVIEWED_MODELS_DIGEST
