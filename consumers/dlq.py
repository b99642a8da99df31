"""Dead-letter records: what an ally service could not decode or validate, kept as evidence.

The record keeps the original value, key and headers byte for byte and adds four headers a
person (or a replay tool) can act on without decoding anything:

- ``trilink_dlq_reason``  the error's reason code (one of :data:`consumers.errors.DLQ_REASONS`)
- ``trilink_dlq_error``   the error message, truncated to :data:`MAX_ERROR_BYTES`
- ``trilink_dlq_source``  ``topic/partition/offset`` of the original record
- ``trilink_dlq_ally``    the ally whose service rejected it
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.headers import DLQ_ALLY_HEADER as ALLY_HEADER
from schemas.headers import DLQ_ERROR_HEADER as ERROR_HEADER
from schemas.headers import DLQ_HEADERS
from schemas.headers import DLQ_REASON_HEADER as REASON_HEADER
from schemas.headers import DLQ_SOURCE_HEADER as SOURCE_HEADER

__all__ = [
    "ALLY_HEADER",
    "DLQ_HEADERS",
    "ERROR_HEADER",
    "MAX_ERROR_BYTES",
    "REASON_HEADER",
    "SOURCE_HEADER",
    "dead_letter_headers",
    "truncate_utf8",
]

#: Longest error message kept in a header (bytes of UTF-8, cut on a character boundary).
MAX_ERROR_BYTES = 512


def truncate_utf8(text: str, max_bytes: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``max_bytes`` without splitting a character."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return raw
    return raw[:max_bytes].decode("utf-8", errors="ignore").encode("utf-8")


def dead_letter_headers(
    original: Iterable[tuple[str, bytes | None]] | None,
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    ally: str,
) -> list[tuple[str, bytes]]:
    """The original headers (any earlier ``trilink_dlq_*`` dropped) followed by the four DLQ headers."""
    kept = [
        (name, value if value is not None else b"")
        for name, value in (original or ())
        if name not in DLQ_HEADERS
    ]
    kept += [
        (REASON_HEADER, reason.encode("ascii")),
        (ERROR_HEADER, truncate_utf8(error, MAX_ERROR_BYTES)),
        (SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode()),
        (ALLY_HEADER, ally.encode("ascii")),
    ]
    return kept
