"""The three-way acknowledgement: the record an ally service writes for each warning it delivered.

The point of the "three-way hotline" is that each side knows the others have the warning. Each
ally service, once a launch detection or an alert is acknowledged on its own ally topic (durably
delivered to its downstream systems), writes an :class:`Acknowledgement` to the acknowledgement
topic, which all three allies may read, keyed by the warning's correlation key. Every ally
service reads that topic back and knows, for each warning it delivered, when the last of the
allies it was released to acknowledged it (:mod:`consumers.acks`).

Wire format: Avro single-object encoding (``C3 01``, the schema's CRC-64-AVRO fingerprint, the
body), as the warnings; the schema is derived from the model below and frozen in
``released/trilink.ack.Acknowledgement/v1.avsc`` (a unit test keeps the two equal). Decoding
raises only the contract's :class:`~trilink.errors.DeserializationError` subclasses.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any
from uuid import UUID

from fastavro import schemaless_reader, schemaless_writer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.avro import RELEASED_DIR, fingerprint, load_schema_file, record_schema
from schemas.codec import MAGIC, PREFIX_BYTES
from schemas.errors import (
    BadMagicError,
    InvalidValueError,
    MalformedBodyError,
    TooLargeError,
    TrailingBytesError,
    TruncatedError,
    UnknownFingerprintError,
)
from schemas.headers import CE_SPECVERSION
from schemas.models import EventKind, Nation

__all__ = [
    "ACKNOWLEDGED_KINDS",
    "ACK_CE_TYPE",
    "ACK_NAMESPACE",
    "ACK_SCHEMA_NAME",
    "MAX_ACK_BYTES",
    "Acknowledgement",
    "ack_headers",
    "decode_ack",
    "derive_ack_schema",
    "encode_ack",
]

ACK_NAMESPACE = "trilink.ack"
ACK_SCHEMA_NAME = f"{ACK_NAMESPACE}.Acknowledgement"
#: The warnings every ally acknowledges (track updates and the rest are not acknowledged).
ACKNOWLEDGED_KINDS = frozenset({EventKind.LAUNCH_DETECTION, EventKind.ALERT})
#: CloudEvents type of an acknowledgement record.
ACK_CE_TYPE = "org.trilink.ack.acknowledgement.v1"
#: An acknowledgement is ~100 bytes; anything far larger is not one.
MAX_ACK_BYTES = 4096


class Acknowledgement(BaseModel):
    """One ally service's acknowledgement of one warning it delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID = Field(description="The acknowledged warning's event id.")
    correlation_key: str = Field(
        min_length=1, max_length=128, description="The warning's correlation key (one missile)."
    )
    kind: EventKind = Field(description="The acknowledged warning's kind.")
    ally: Nation = Field(description="The acknowledging ally.")
    instance_id: str = Field(
        min_length=1, max_length=128, description="The service instance that delivered the warning."
    )
    sent_ns: int | None = Field(
        default=None,
        ge=0,
        description="When the sensor sent the warning (its trilink_sent_ns header), ns since the epoch.",
    )
    delivered_ns: int = Field(
        ge=0, description="When the ally topic acknowledged the warning, ns since the epoch."
    )


def derive_ack_schema() -> dict[str, Any]:
    """The Avro schema the model describes (what ``released/.../v1.avsc`` froze)."""
    return record_schema(Acknowledgement, ACK_NAMESPACE)


@cache
def _released() -> tuple[Any, bytes]:
    release = load_schema_file(RELEASED_DIR / ACK_SCHEMA_NAME / "v1.avsc", 1)
    return release.parsed, MAGIC + fingerprint(release.schema).to_bytes(8, "little")


def encode_ack(ack: Acknowledgement) -> bytes:
    """``ack`` as an Avro single-object message."""
    parsed, prefix = _released()
    out = io.BytesIO()
    out.write(prefix)
    schemaless_writer(out, parsed, ack.model_dump())
    return out.getvalue()


def decode_ack(data: bytes | bytearray | memoryview) -> Acknowledgement:
    """The acknowledgement in ``data``; raises only ``DeserializationError`` subclasses."""
    data = bytes(data)
    if len(data) > MAX_ACK_BYTES:
        raise TooLargeError(f"{len(data)} bytes (at most {MAX_ACK_BYTES})")
    if len(data) < PREFIX_BYTES:
        raise TruncatedError(f"{len(data)} bytes, shorter than the single-object prefix")
    parsed, prefix = _released()
    if data[:2] != MAGIC:
        raise BadMagicError("no single-object encoding marker")
    if data[:PREFIX_BYTES] != prefix:
        raise UnknownFingerprintError(int.from_bytes(data[2:PREFIX_BYTES], "little"))
    stream = io.BytesIO(data)
    stream.seek(PREFIX_BYTES)
    try:
        record = schemaless_reader(stream, parsed, None)
    except EOFError as exc:
        raise TruncatedError(str(exc)[:200]) from None
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"invalid UTF-8: {exc.reason}") from None
    except (ValueError, OverflowError, TypeError, KeyError, IndexError) as exc:
        if stream.tell() >= len(data):  # fastavro read past the end (a varint cut short)
            raise TruncatedError("the body ends early") from None
        raise InvalidValueError(f"{type(exc).__name__}: {exc}"[:200]) from None
    if stream.tell() != len(data):
        raise TrailingBytesError(f"{len(data) - stream.tell()} bytes follow the body")
    try:
        return Acknowledgement.model_validate(record)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "acknowledgement"
        raise InvalidValueError(f"{where}: {first['msg']}"[:200]) from None


def ack_headers(ack: Acknowledgement) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode headers of an acknowledgement record."""
    return [
        ("ce_id", f"{ack.event_id}/{ack.ally.value}".encode()),
        ("ce_source", f"trilink/ally/{ack.ally.value}".encode()),
        ("ce_type", ACK_CE_TYPE.encode()),
        ("ce_specversion", CE_SPECVERSION.encode()),
    ]
