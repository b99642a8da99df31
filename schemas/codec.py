"""Bytes on the wire <-> typed :class:`~schemas.models.WarningEvent`.

Wire format: Avro single-object encoding — ``C3 01``, the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form, then the schemaless Avro body.
The fingerprint picks the writer schema among *all* released versions, and fastavro resolves
it to the current reader schema, so old recordings keep decoding. Every decode failure is one
:class:`~trilink.errors.DeserializationError` subclass with a stable ``reason``.

Two paths, one behaviour: messages written with the current release go through the
hand-specialised codec in :mod:`schemas._fast` when it is enabled; it only ever *accepts*
(an event equal to what the reference path would return) or defers, and the reference path
(structural guard, fastavro, pydantic) makes every other decision, errors included.
"""

from __future__ import annotations

from functools import cache
from io import BytesIO
from typing import Any
from uuid import UUID

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from schemas import _fast, avro
from schemas._guard import make_checker
from schemas.errors import (
    BadMagicError,
    EncodeError,
    InvalidValueError,
    MalformedBodyError,
    TooLargeError,
    TrailingBytesError,
    TruncatedError,
    UnknownFingerprintError,
)
from schemas.headers import ParsedHeaders, kafka_headers, message_key, parse_headers
from schemas.models import (
    Alert,
    EventHeader,
    ImpactPrediction,
    LaunchDetection,
    SensorStatus,
    TrackEnd,
    TrackUpdate,
    WarningEvent,
)

__all__ = [
    "MAGIC",
    "MAX_MESSAGE_BYTES",
    "PREFIX_BYTES",
    "ParsedHeaders",
    "decode_event",
    "encode_event",
    "kafka_headers",
    "message_key",
    "parse_headers",
    "writer_fingerprint",
]

#: Single-object encoding marker (Avro spec).
MAGIC = b"\xc3\x01"
#: Marker plus fingerprint: the bytes before the Avro body.
PREFIX_BYTES = len(MAGIC) + 8
#: Largest message accepted or produced. Real events are a few hundred bytes; the cap bounds
#: what an attacker can make a consumer read.
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest validation message kept in an error (it ends up in logs and dead-letter headers).
_MAX_DETAIL_CHARS = 300

_PAYLOAD_TYPES: dict[str, type[Any]] = {
    f"{avro.NAMESPACE}.{cls.__name__}": cls
    for cls in (LaunchDetection, TrackUpdate, ImpactPrediction, Alert, TrackEnd, SensorStatus)
}


def writer_fingerprint() -> int:
    """Fingerprint of the schema this code writes (the newest release)."""
    return avro.current().fingerprint


@cache
def _prefix() -> bytes:
    return MAGIC + writer_fingerprint().to_bytes(8, "little")


@cache
def _readers() -> dict[int, tuple[Any, Any, Any]]:
    # fingerprint -> (writer schema, reader schema or None when they are the same, checker)
    current = avro.current()
    return {
        fp: (
            release.parsed,
            None if release is current else current.parsed,
            make_checker(release.parsed),
        )
        for fp, release in avro.released_by_fingerprint().items()
    }


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:_MAX_DETAIL_CHARS]


def _to_record(event: WarningEvent) -> dict[str, Any]:
    payload = event.payload
    return {
        "header": event.header.model_dump(warnings="error"),
        "payload": (
            f"{avro.NAMESPACE}.{type(payload).__name__}",
            payload.model_dump(warnings="error"),
        ),
    }


def _fast_prefix() -> bytes | None:
    """The prefix the fast codec handles, when it handles the current release; else None."""
    if _fast.ENABLED and _prefix() == _fast.PREFIX:
        return _fast.PREFIX
    return None


def encode_event(event: WarningEvent, *, revalidate: bool = False) -> bytes:
    """Encode one event as a single-object Avro message with the current schema.

    Models are immutable and validated when built, so re-validation is off by default; turn it
    on for events built with ``model_construct`` or other unchecked paths.
    """
    if not isinstance(event, WarningEvent):
        raise EncodeError("invalid_value", f"expected a WarningEvent, got {type(event).__name__}")
    if revalidate:
        try:
            event = WarningEvent.model_validate(event.model_dump(warnings=False))
        except ValidationError as exc:
            raise EncodeError("invalid_value", _describe(exc)) from None
    prefix = _fast_prefix()
    if prefix is not None:
        try:
            data = prefix + _fast.encode_body(event)
        except Exception:  # fastavro below decides what is wrong with the event
            pass
        else:
            if len(data) <= MAX_MESSAGE_BYTES:
                return data
    return _encode_reference(event)


def _encode_reference(event: WarningEvent) -> bytes:
    """The fastavro path of :func:`encode_event` (after its checks): the reference output."""
    buffer = BytesIO()
    buffer.write(_prefix())
    try:
        schemaless_writer(buffer, avro.current().parsed, _to_record(event))
    except (
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        OverflowError,
        PydanticSerializationError,
    ) as exc:
        raise EncodeError("invalid_value", f"not encodable: {exc}"[:_MAX_DETAIL_CHARS]) from None
    data = buffer.getvalue()
    if len(data) > MAX_MESSAGE_BYTES:
        raise EncodeError("too_large", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    return data


def _frame(data: bytes) -> tuple[Any, Any, Any]:
    size = len(data)
    if size > MAX_MESSAGE_BYTES:
        raise TooLargeError(f"{size} bytes > {MAX_MESSAGE_BYTES}")
    if data[:2] != MAGIC[:size]:
        raise BadMagicError(f"expected C3 01, got {data[:2].hex(' ').upper() or 'nothing'}")
    if size < PREFIX_BYTES:
        raise TruncatedError(f"{size} bytes is shorter than the {PREFIX_BYTES}-byte prefix")
    fingerprint = int.from_bytes(data[2:PREFIX_BYTES], "little")
    found = _readers().get(fingerprint)
    if found is None:
        raise UnknownFingerprintError(fingerprint)
    return found


def decode_record(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Check and decode the frame and body into fastavro's plain record, resolved to the
    current schema, without model validation (the union payload is a ``(name, dict)`` pair)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    writer, reader, check = _frame(data)
    check(data, PREFIX_BYTES)
    stream = BytesIO(data)
    stream.seek(PREFIX_BYTES)
    try:
        record = schemaless_reader(stream, writer, reader, return_record_name=True)
    except EOFError as exc:  # the checker makes this unreachable; keep the contract anyway
        raise TruncatedError(str(exc)[:_MAX_DETAIL_CHARS]) from None
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"invalid UTF-8: {exc.reason}") from None
    except (ValueError, OverflowError, TypeError, KeyError, IndexError) as exc:
        # Structurally sound Avro whose value fastavro cannot convert (bad UUID text,
        # timestamp beyond year 9999, a symbol the reader lacks).
        raise InvalidValueError(f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL_CHARS]) from None
    if stream.tell() != len(data):
        raise TrailingBytesError(f"{len(data) - stream.tell()} bytes follow the body")
    if not isinstance(record, dict):
        raise MalformedBodyError("body is not a record")
    return record


def decode_event(
    data: bytes | bytearray | memoryview, known_id: tuple[str, UUID] | None = None
) -> WarningEvent:
    """Decode and validate one message; raises only ``DeserializationError`` subclasses.

    ``known_id``: an event id already parsed elsewhere (the record's ``ce_id`` header) as its
    canonical text and UUID; when the body carries that same text, the body's id is that UUID
    (equal to what parsing the text again would give) instead of a second parse.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    prefix = _fast_prefix()
    if prefix is not None and data[:PREFIX_BYTES] == prefix and len(data) <= MAX_MESSAGE_BYTES:
        try:
            event = _fast.decode(data, known_id)
        except Exception:  # a fast-path bug must not escape; the reference decides
            event = None
        if event is not None:
            return event
    return _decode_reference(data)


def _decode_reference(data: bytes | bytearray | memoryview) -> WarningEvent:
    """The reference path of :func:`decode_event`: guard, fastavro, pydantic."""
    record = decode_record(data)
    try:
        name, payload = record["payload"]
        payload_type = _PAYLOAD_TYPES[name]
        return WarningEvent(
            header=EventHeader.model_validate(record["header"]),
            payload=payload_type.model_validate(payload),
        )
    except ValidationError as exc:
        raise InvalidValueError(_describe(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedBodyError(f"unexpected record shape: {exc}"[:_MAX_DETAIL_CHARS]) from None
