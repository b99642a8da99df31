"""Prometheus metrics of one ally service, in its own registry (several services can share a process).

Label values are bounded sets: ``ally`` (3 nations), ``kind`` (:class:`schemas.models.EventKind`),
``hop`` (:data:`trilink.latency.HOPS`), ``channel`` (:data:`CHANNELS` or ``none`` for hops
before fan-out), ``reason`` (:data:`consumers.errors.DLQ_REASONS` and friends), ``topic`` (the
two input topics). Never an event, track or correlation id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from trilink.latency import LATENCY_BUCKETS_S

#: Downstream channels of an ally service.
CHANNELS = ("kafka", "sse", "audit")
#: ``channel`` label of hops measured before fan-out.
NO_CHANNEL = "none"


class AllyMetrics:
    """Every metric of one service; ``registry`` is what ``/metrics`` serves."""

    def __init__(self, ally: str, registry: CollectorRegistry | None = None) -> None:
        self.ally = ally
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hop_latency = Histogram(
            "trilink_ally_hop_latency_seconds",
            "Latency of one hop of an event on its way to an ally's downstream channel.",
            ["ally", "hop", "kind", "channel"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.received = Counter(
            "trilink_ally_events_received_total",
            "Valid events read from the warning topics.",
            ["ally", "kind"],
            registry=r,
        )
        self.delivered = Counter(
            "trilink_ally_events_delivered_total",
            "Events handed to a downstream channel (kafka: acknowledged; sse: queued for the "
            "live subscribers; audit: written).",
            ["ally", "kind", "channel"],
            registry=r,
        )
        self.withheld = Counter(
            "trilink_ally_events_withheld_total",
            "Valid events not delivered because they are not releasable to this ally.",
            ["ally", "kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "trilink_ally_duplicates_suppressed_total",
            "Events not delivered again because their id is in the de-duplication window.",
            ["ally"],
            registry=r,
        )
        self.dead_letters = Counter(
            "trilink_dead_letters_total",
            "Records sent to the dead-letter topic, by reason.",
            ["ally", "reason"],
            registry=r,
        )
        self.subscriber_drops = Counter(
            "trilink_ally_subscriber_drops_total",
            "Events dropped for a slow live subscriber (its bounded queue was full; oldest dropped).",
            ["ally", "channel"],
            registry=r,
        )
        self.subscriber_disconnects = Counter(
            "trilink_ally_subscriber_disconnects_total",
            "Live subscribers removed, by reason (closed by the client, write timeout, shutdown).",
            ["ally", "channel", "reason"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "trilink_ally_delivery_failures_total",
            "Batches whose fan-out failed and was retried, by channel and reason.",
            ["ally", "channel", "reason"],
            registry=r,
        )
        self.rebalances = Counter(
            "trilink_ally_rebalances_total",
            "Partition assignment changes seen by this instance.",
            ["ally", "event"],
            registry=r,
        )
        self.sse_subscribers = Gauge(
            "trilink_ally_sse_subscribers",
            "Connected Server-Sent-Events subscribers.",
            ["ally"],
            registry=r,
        )
        self.lag_records = Gauge(
            "trilink_ally_consumer_lag_records",
            "Records not yet read, summed over this instance's partitions of a topic (end offset - position).",
            ["ally", "topic"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "trilink_ally_consumer_lag_seconds",
            "When records are waiting: now minus the broker append time of the last record processed; else 0.",
            ["ally"],
            registry=r,
        )
        self.dedup_window_ids = Gauge(
            "trilink_ally_dedup_window_ids",
            "Event ids currently held by the de-duplication window.",
            ["ally"],
            registry=r,
        )
        self.sse_subscribers.labels(ally).set(0)
        self.lag_seconds.labels(ally).set(0)
        self.duplicates.labels(ally)
