"""Prometheus metrics of one ally service, in its own registry (several services can share a process).

Every family is declared once, in the metric contract (:mod:`trilink.monitoring.names`), and
built from it here. The per-event families (events received, delivered, withheld, duplicates, dead letters and
the hop latency histogram) are exposed by the service's :class:`consumers.ledger.Ledger`,
registered in the same registry; this module declares the rest.

Label values are bounded sets: ``ally`` (3 nations), ``kind`` (:class:`schemas.models.EventKind`),
``hop`` (:data:`trilink.latency.HOPS`), ``channel`` (:data:`CHANNELS` or ``none`` for hops
before fan-out), ``reason`` (:data:`consumers.errors.DLQ_REASONS` and friends), ``topic`` (the
two input topics), ``sensor`` (the sensor catalog's ids; any other id on the wire is not
given a series; :mod:`trilink.roster`). Never an event, track or correlation id.

Every bounded label combination an event can touch is created up front and its child kept
in a plain dict, so the hot path costs one dict lookup per series (no ``labels()`` call, no
lock) and ``rate()`` sees an event's first increment. ``_created`` series are not exported:
they double the counter and histogram series and no rule or dashboard reads them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics

from trilink.monitoring import names as n
from trilink.monitoring.names import CHANNELS, NO_CHANNEL
from trilink.roster import sensor_ids

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
        """``sensors``: ids allowed as ``sensor`` label (default: the shipped catalogue's, :func:`trilink.roster.sensor_ids`);
        ``input_topics``: topics whose lag gauge starts at 0 before the first assignment."""
        self.ally = ally
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.subscriber_drops = n.counter(n.ALLY_SUBSCRIBER_DROPS, r)
        self.subscriber_disconnects = n.counter(n.ALLY_SUBSCRIBER_DISCONNECTS, r)
        self.delivery_failures = n.counter(n.ALLY_DELIVERY_FAILURES, r)
        self.rebalances = n.counter(n.ALLY_REBALANCES, r)
        self.sse_subscribers = n.gauge(n.ALLY_SSE_SUBSCRIBERS, r)
        self.lag_records = n.gauge(n.ALLY_CONSUMER_LAG_RECORDS, r)
        self.lag_seconds = n.gauge(n.ALLY_CONSUMER_LAG_SECONDS, r)
        self.dedup_window_ids = n.gauge(n.ALLY_DEDUP_WINDOW_IDS, r)
        self.sensor_last_seen = n.gauge(n.ALLY_SENSOR_LAST_SEEN, r)
        if sensors is None:
            sensors = sensor_ids()
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
