"""Typed errors of the event contract.

Consumers treat every byte and header from Kafka as untrusted: whatever is wrong with it
surfaces as exactly one of the :class:`~trilink.errors.DeserializationError` subclasses
below, each with a fixed ``reason`` code from :data:`DECODE_REASONS` (a metric label and a
dead-letter header value, so the set stays small and stable).
"""

from __future__ import annotations

from typing import ClassVar

from trilink.errors import ContractError, DeserializationError, SerializationError

__all__ = [
    "DECODE_REASONS",
    "BadHeaderError",
    "BadMagicError",
    "EncodeError",
    "IncompatibleSchemaError",
    "InvalidValueError",
    "MalformedBodyError",
    "SchemaDefinitionError",
    "TooLargeError",
    "TrailingBytesError",
    "TruncatedError",
    "UnknownFingerprintError",
    "WireDecodeError",
]


class WireDecodeError(DeserializationError):
    """Base of the consuming-side errors; each subclass fixes its ``reason`` code."""

    REASON: ClassVar[str] = "malformed_body"

    def __init__(self, message: str) -> None:
        super().__init__(self.REASON, message)


class TooLargeError(WireDecodeError):
    """The message is larger than :data:`schemas.codec.MAX_MESSAGE_BYTES`."""

    REASON = "too_large"


class BadMagicError(WireDecodeError):
    """The message does not start with the single-object encoding marker ``C3 01``."""

    REASON = "bad_magic"


class UnknownFingerprintError(WireDecodeError):
    """The schema fingerprint names no released schema version."""

    REASON = "unknown_fingerprint"

    def __init__(self, fingerprint: int) -> None:
        super().__init__(f"no released schema has fingerprint 0x{fingerprint:016x}")
        self.fingerprint = fingerprint


class TruncatedError(WireDecodeError):
    """The message ends before the body it declares (or before the frame header)."""

    REASON = "truncated"


class TrailingBytesError(WireDecodeError):
    """Bytes remain after a complete body: the writer and the frame disagree."""

    REASON = "trailing_bytes"


class MalformedBodyError(WireDecodeError):
    """The body is not valid Avro for its writer schema (bad length, index, UTF-8...)."""

    REASON = "malformed_body"


class InvalidValueError(WireDecodeError):
    """The body is valid Avro but a value breaks the model's rules (range, order, NaN...)."""

    REASON = "invalid_value"


class BadHeaderError(WireDecodeError):
    """A Kafka record header is missing, duplicated or malformed."""

    REASON = "bad_header"


#: Every ``reason`` a decode or header parse can report.
DECODE_REASONS: frozenset[str] = frozenset(
    cls.REASON
    for cls in (
        TooLargeError,
        BadMagicError,
        UnknownFingerprintError,
        TruncatedError,
        TrailingBytesError,
        MalformedBodyError,
        InvalidValueError,
        BadHeaderError,
    )
)


class EncodeError(SerializationError):
    """Producing side: an event could not be encoded (``invalid_value`` or ``too_large``)."""


class SchemaDefinitionError(ContractError):
    """A schema file or the models are unusable as a contract (``bad_schema``, ``drift``)."""


class IncompatibleSchemaError(ContractError):
    """A candidate schema breaks full compatibility with a released version."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("incompatible_schema", "; ".join(problems))
        self.problems = problems
