"""Prometheus metrics of one ally service, in its own registry (several services can share a process).

The per-event families (events received, delivered, withheld, duplicates, dead letters and
the hop latency histogram) are exposed by the service's :class:`consumers.ledger.Ledger`,
registered in the same registry; this module declares the rest.

Label values are bounded sets: ``ally`` (3 nations), ``kind`` (:class:`schemas.models.EventKind`),
``hop`` (:data:`trilink.latency.HOPS`), ``channel`` (:data:`CHANNELS` or ``none`` for hops
before fan-out), ``reason`` (:data:`consumers.errors.DLQ_REASONS` and friends), ``topic`` (the
two input topics), ``sensor`` (the sensor catalog's ids; any other id on the wire is not
given a series). Never an event, track or correlation id.

Every bounded label combination an event can touch is created up front and its child kept
in a plain dict, so the hot path costs one dict lookup per series (no ``labels()`` call, no
lock) and ``rate()`` sees an event's first increment. ``_created`` series are not exported:
they double the counter and histogram series and no rule or dashboard reads them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from consumers.ledger import CHANNELS, NO_CHANNEL

# A process-wide switch in prometheus_client (read at collect time); every registry of an
# ally service process is served without _created samples.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

__all__ = ["CHANNELS", "NO_CHANNEL", "AllyMetrics"]


class AllyMetrics:
    """Every metric of one service; ``registry`` is what ``/metrics`` serves."""

    def __init__(
        self,
        ally: str,
        registry: CollectorRegistry | None = None,
        sensors: Iterable[str] | None = None,
        input_topics: Iterable[str] = (),
    ) -> None:
        """``sensors``: ids allowed as ``sensor`` label (default: the shipped sensor catalog);
        ``input_topics``: topics whose lag gauge starts at 0 before the first assignment."""
        self.ally = ally
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
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
        self.sensor_last_seen = Gauge(
            "trilink_ally_sensor_last_seen_timestamp_seconds",
            "Unix time the ally last received a sensor_status event from that sensor (releasable to it).",
            ["ally", "sensor"],
            registry=r,
        )
        if sensors is None:
            from producers.catalog import default_catalog

            sensors = default_catalog().ids
        self._sensor_ids = frozenset(sensors)
        # Created on a sensor's first sighting, not up front: a 0 timestamp would read as
        # "silent since 1970" and fire TrilinkSensorSilent for sensors this ally never hears.
        self._sensor_seen: dict[str, Gauge] = {}

        self.sse_drops_child = self.subscriber_drops.labels(ally, "sse")
        self.sse_subscribers.labels(ally).set(0)
        self.lag_seconds.labels(ally).set(0)
        for topic in input_topics:
            self.lag_records.labels(ally, topic).set(0)

    def sensor_seen(self, sensor_id: str, when_s: float) -> None:
        """Note a sensor_status event of ``sensor_id`` at unix time ``when_s``; ids outside the
        catalog are ignored (a label value must come from a bounded set, not from the wire)."""
        child = self._sensor_seen.get(sensor_id)
        if child is None:
            if sensor_id not in self._sensor_ids:
                return
            child = self._sensor_seen[sensor_id] = self.sensor_last_seen.labels(self.ally, sensor_id)
        child.set(when_s)
