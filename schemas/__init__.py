"""The event contract: typed models, Avro schemas (``released/``), wire codec and headers.

Producers and consumers import from here; see :mod:`schemas.codec` for the wire format.
"""

from schemas.codec import (
    MAX_MESSAGE_BYTES,
    ParsedHeaders,
    decode_event,
    encode_event,
    kafka_headers,
    message_key,
    parse_headers,
)
from schemas.models import EventKind, EventPayload, WarningEvent

__all__ = [
    "MAX_MESSAGE_BYTES",
    "EventKind",
    "EventPayload",
    "ParsedHeaders",
    "WarningEvent",
    "decode_event",
    "encode_event",
    "kafka_headers",
    "message_key",
    "parse_headers",
]
