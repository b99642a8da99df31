"""Typed errors of the ally services, each with a bounded ``reason`` code.

The decode-side reasons extend :data:`schemas.errors.DECODE_REASONS` with the two checks only
a consumer makes (an empty record, headers that describe a different event than the body);
together they are :data:`DLQ_REASONS`, the values of the ``trilink_dlq_reason`` header and of
the ``reason`` label of ``trilink_dead_letters_total``.
"""

from __future__ import annotations

from schemas.errors import DECODE_REASONS, WireDecodeError
from trilink.errors import DeliveryError, TrilinkError


class EmptyRecordError(WireDecodeError):
    """The record has no value (a tombstone or a producer bug): there is nothing to decode."""

    REASON = "no_value"


class HeaderMismatchError(WireDecodeError):
    """Headers and body are each valid but describe different events (id, kind or key)."""

    REASON = "header_mismatch"


class ImplausibleEventError(WireDecodeError):
    """A valid event whose times cannot be real: measured or sent too far in the future or
    past of the receiving clock (bounds: :class:`consumers.service.Plausibility`)."""

    REASON = "implausible_time"


class UndeliverableError(WireDecodeError):
    """A valid event the Kafka client refused to send on as it is (too large with the relay's
    headers, a header it cannot encode): dead-lettered instead of stopping the partition."""

    REASON = "undeliverable"


class UnparseableRecordError(WireDecodeError):
    """The Kafka client library could not parse a record batch (a header name that is not
    UTF-8, a corrupt batch): the batch is skipped and named in a dead-letter entry."""

    REASON = "unparseable_batch"


class NationMismatchError(WireDecodeError):
    """The hub read a record on one nation's ingest topic whose body names another sensor
    nation: the topic is what the broker authenticated, so the record is not routed."""

    REASON = "nation_mismatch"


#: Reason for a failure no contract error describes (a bug, not bad input).
UNEXPECTED_REASON = "unexpected"

#: Every reason a record can be dead-lettered for.
DLQ_REASONS: frozenset[str] = (
    DECODE_REASONS
    | {
        cls.REASON
        for cls in (
            EmptyRecordError,
            HeaderMismatchError,
            ImplausibleEventError,
            UndeliverableError,
            UnparseableRecordError,
        )
    }
    | {UNEXPECTED_REASON}
)


#: Every reason the hub dead-letters a record for (the allies' plus the ingest topic's nation check).
HUB_DLQ_REASONS: frozenset[str] = DLQ_REASONS | {NationMismatchError.REASON}


class ChannelDeliveryError(DeliveryError):
    """A downstream channel did not take a batch; the batch is retried, its offsets not committed.

    Reasons: ``kafka_send_failed`` (the broker refused a record), ``kafka_flush_timeout`` (acks
    did not arrive in time), ``dead_letter_failed`` (the DLQ topic refused a record),
    ``audit_write_failed`` (the audit file could not be written or synced), ``poll_failed``
    (the consumer's ``poll`` raised).
    """


DELIVERY_REASONS: frozenset[str] = frozenset(
    {"kafka_send_failed", "kafka_flush_timeout", "dead_letter_failed", "audit_write_failed", "poll_failed"}
)


class FencedMemberError(TrilinkError):
    """Another process joined this service's consumer group under the same static identity
    (``group_instance_id``): the broker fenced this one, which stops rather than fight it for
    the partitions (reason ``fenced``)."""

    def __init__(self, group_instance_id: str, group_id: str) -> None:
        super().__init__(
            "fenced",
            f"another process joined group {group_id} as {group_instance_id}: this one stops",
        )


class AllyServiceError(TrilinkError):
    """The service's consumer loop stopped on an unexpected error (reason ``consumer_loop_failed``)."""
