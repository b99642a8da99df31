"""In-process stand-ins for the ``/metrics`` endpoints of trilink's services.

Built only from :mod:`trilink.monitoring.names`, so the rules, dashboards and
``promtool check metrics`` can be exercised against a real exposition without Kafka and
before (or without) the real services. Values are plausible, not measured: hop latencies
drawn from log-normal distributions around a few milliseconds, lag near zero, heartbeats
every few seconds. Every simulated event carries a fresh missile and event id, which must
never reach a label: the series count stays a function of allies x kinds x hops x channels
only (``bench/bench_scrape.py`` shows it).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from producers.catalog import default_catalog
from schemas.errors import DECODE_REASONS
from trilink.monitoring import names as n
from trilink.platform.topics import topic_name

#: Median of each hop in the simulation (seconds); end_to_end is their sum.
_HOP_MEDIAN_S = {
    "send_to_append": 0.0015,
    "append_to_hub": 0.002,
    "hub_to_ack": 0.0015,
    "append_to_receive": 0.002,
    "receive_to_deliver": 0.0003,
}
#: Topics an ally service reads (label ``topic`` of the lag gauge).
INPUT_TOPICS = ("trilink.warnings.v1", "trilink.sensor-status.v1")
#: Topics the hub reads (label ``topic`` of its lag gauge).
INGEST_TOPICS = tuple(topic_name(f"ingest.{nation}") for nation in n.ALLIES)


@dataclass(frozen=True)
class SimulatedEvent:
    """One event of the simulation; the ids exist to prove they never become labels."""

    missile_id: str
    event_id: str
    kind: str
    nation: str


class SimulatedAlly:
    """The metric families of one ally service (``exposed_by == "ally"``) in a private registry."""

    def __init__(self, ally: str, sensors: Sequence[str] | None = None, seed: int = 0) -> None:
        if ally not in n.ALLIES:
            raise ValueError(f"unknown ally {ally!r}")
        self.ally = ally
        self.rng = random.Random(f"{seed}-{ally}")
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hop_latency = n.histogram(n.ALLY_HOP_LATENCY, r)
        self.received = n.counter(n.ALLY_EVENTS_RECEIVED, r)
        self.delivered = n.counter(n.ALLY_EVENTS_DELIVERED, r)
        self.withheld = n.counter(n.ALLY_EVENTS_WITHHELD, r)
        self.duplicates = n.counter(n.ALLY_DUPLICATES_SUPPRESSED, r)
        self.dead_letters = n.counter(n.DEAD_LETTERS, r)
        self.unacknowledged = n.counter(n.ALLY_WARNINGS_UNACKNOWLEDGED, r)
        self.subscriber_drops = n.counter(n.ALLY_SUBSCRIBER_DROPS, r)
        self.sse_subscribers = n.gauge(n.ALLY_SSE_SUBSCRIBERS, r)
        self.lag_records = n.gauge(n.ALLY_CONSUMER_LAG_RECORDS, r)
        self.lag_seconds = n.gauge(n.ALLY_CONSUMER_LAG_SECONDS, r)
        self.sensor_last_seen = n.gauge(n.ALLY_SENSOR_LAST_SEEN, r)
        self.sensors = (
            tuple(sensors) if sensors is not None else tuple(s.id for s in default_catalog().sensors)
        )
        # Pre-create every bounded label combination, as a real service should: a counter
        # that first appears at 1 is invisible to rate()/increase().
        for kind in n.KINDS:
            self.received.labels(ally, kind)
            self.withheld.labels(ally, kind)
            for channel in n.CHANNELS:
                self.delivered.labels(ally, kind, channel)
        for reason in sorted(DECODE_REASONS):
            self.dead_letters.labels(ally, reason)
        for channel in n.CHANNELS:
            self.subscriber_drops.labels(ally, channel)
        self.duplicates.labels(ally)
        for missing in n.ALLIES:
            self.unacknowledged.labels(ally, missing)
        self.sse_subscribers.labels(ally).set(2)
        for topic in INPUT_TOPICS:
            self.lag_records.labels(ally, topic).set(0)
        self.lag_seconds.labels(ally).set(0)
        now = time.time()
        for sensor in self.sensors:
            self.sensor_last_seen.labels(ally, sensor).set(now)

    def handle(self, event: SimulatedEvent, now_s: float | None = None) -> None:
        """Account for one event the way the ally service does: receive, filter, fan out, time."""
        now = time.time() if now_s is None else now_s
        ally, kind = self.ally, event.kind
        self.received.labels(ally, kind).inc()
        if kind == "sensor_status":
            self.sensor_last_seen.labels(ally, self.rng.choice(self.sensors)).set(now)
        if self.rng.random() < 0.02:
            self.withheld.labels(ally, kind).inc()
            return
        if self.rng.random() < 0.005:
            self.duplicates.labels(ally).inc()
            return
        upstream = 0.0
        for hop in ("send_to_append", "append_to_receive"):
            seconds = self.rng.lognormvariate(0.0, 0.5) * _HOP_MEDIAN_S[hop]
            self.hop_latency.labels(ally, hop, kind, n.NO_CHANNEL).observe(seconds)
            upstream += seconds
        for channel in n.CHANNELS:
            deliver = self.rng.lognormvariate(0.0, 0.7) * _HOP_MEDIAN_S["receive_to_deliver"]
            self.hop_latency.labels(ally, "receive_to_deliver", kind, channel).observe(deliver)
            self.hop_latency.labels(ally, n.END_TO_END_HOP, kind, channel).observe(upstream + deliver)
            self.delivered.labels(ally, kind, channel).inc()
        if kind in ("launch_detection", "alert"):  # the three-way acknowledgement's round trip
            seconds = upstream + self.rng.lognormvariate(0.0, 0.5) * 3 * _HOP_MEDIAN_S["receive_to_deliver"]
            self.hop_latency.labels(ally, n.ALLY_ACK_HOPS[0], kind, n.NO_CHANNEL).observe(seconds)

    def tick(self) -> None:
        """Move the gauges a little (lag, subscribers) and now and then dead-letter a record."""
        for topic in INPUT_TOPICS:
            self.lag_records.labels(self.ally, topic).set(self.rng.randint(0, 5))
        self.lag_seconds.labels(self.ally).set(self.rng.uniform(0.0, 0.004))
        if self.rng.random() < 0.01:
            self.dead_letters.labels(self.ally, self.rng.choice(sorted(DECODE_REASONS))).inc()


class SimulatedSensors:
    """The metric families of the sensor producers (``exposed_by == "producer"``)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(f"{seed}-sensors")
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = n.counter(n.PRODUCER_EVENTS, self.registry)
        self.send_errors = n.counter(n.PRODUCER_SEND_ERRORS, self.registry)
        self.send_latency = n.histogram(n.PRODUCER_SEND_LATENCY, self.registry)
        for nation in n.ALLIES:
            for kind in n.KINDS:
                self.events.labels(nation, kind)
        for kind in n.KINDS:
            self.send_errors.labels(kind, "timeout")

    def publish(self, event: SimulatedEvent) -> None:
        self.events.labels(event.nation, event.kind).inc()
        self.send_latency.labels(event.kind).observe(self.rng.lognormvariate(0.0, 0.5) * 0.0015)


class SimulatedHub:
    """The metric families of the US hub (``exposed_by == "hub"``): each event read from its
    nation's ingest topic and written to every ally's feed (now and then one withheld)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(f"{seed}-hub")
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hop_latency = n.histogram(n.HUB_HOP_LATENCY, r)
        self.received = n.counter(n.HUB_RECORDS_RECEIVED, r)
        self.released = n.counter(n.HUB_RECORDS_RELEASED, r)
        self.withheld = n.counter(n.HUB_RECORDS_WITHHELD, r)
        self.dead_letters = n.counter(n.HUB_DEAD_LETTERS, r)
        self.failures = n.counter(n.HUB_DELIVERY_FAILURES, r)  # no failure in the simulation
        self.lag_records = n.gauge(n.HUB_CONSUMER_LAG_RECORDS, r)
        for kind in n.KINDS:
            for nation in n.ALLIES:
                self.received.labels(nation, kind)
                self.released.labels(nation, kind)
                self.withheld.labels(nation, kind)
        for reason in sorted(DECODE_REASONS):
            self.dead_letters.labels(reason)
        for topic in INGEST_TOPICS:
            self.lag_records.labels(topic).set(0)

    def handle(self, event: SimulatedEvent) -> None:
        self.received.labels(event.nation, event.kind).inc()
        for hop in ("send_to_append", "append_to_hub"):
            seconds = self.rng.lognormvariate(0.0, 0.5) * _HOP_MEDIAN_S[hop]
            self.hop_latency.labels(hop, n.NO_CHANNEL).observe(seconds)
        for feed in n.ALLIES:
            if self.rng.random() < 0.02:
                self.withheld.labels(feed, event.kind).inc()
                continue
            self.released.labels(feed, event.kind).inc()
            seconds = self.rng.lognormvariate(0.0, 0.5) * _HOP_MEDIAN_S["hub_to_ack"]
            self.hop_latency.labels("hub_to_ack", feed).observe(seconds)

    def tick(self) -> None:
        for topic in INGEST_TOPICS:
            self.lag_records.labels(topic).set(self.rng.randint(0, 5))
        if self.rng.random() < 0.01:
            self.dead_letters.labels(self.rng.choice(sorted(DECODE_REASONS))).inc()


class SimulatedRun:
    """Sensors publishing through the US hub to all three allies; :meth:`run_events` drives them."""

    #: Rough mix of a raid: mostly track updates, a heartbeat now and then.
    KIND_WEIGHTS: tuple[tuple[str, float], ...] = (
        ("launch_detection", 0.01),
        ("track_update", 0.80),
        ("impact_prediction", 0.08),
        ("alert", 0.03),
        ("track_end", 0.01),
        ("sensor_status", 0.07),
    )

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.sensors = SimulatedSensors(seed)
        self.hub = SimulatedHub(seed)
        self.allies = {ally: SimulatedAlly(ally, seed=seed) for ally in n.ALLIES}
        self._kinds = [k for k, _ in self.KIND_WEIGHTS]
        self._weights = [w for _, w in self.KIND_WEIGHTS]
        self._serial = 0

    def run_events(self, count: int, missiles: int) -> None:
        """Simulate ``count`` events spread over ``missiles`` concurrent missile ids."""
        now = time.time()
        kinds = self.rng.choices(self._kinds, self._weights, k=count)
        for kind in kinds:
            self._serial += 1
            event = SimulatedEvent(
                missile_id=f"m-{self.rng.randrange(max(missiles, 1))}",
                event_id=f"e-{self._serial}",
                kind=kind,
                nation=self.rng.choice(n.ALLIES),
            )
            self.sensors.publish(event)
            self.hub.handle(event)
            for ally in self.allies.values():
                ally.handle(event, now)
        self.hub.tick()
        for ally in self.allies.values():
            ally.tick()


class Endpoint:
    """A running ``/metrics`` HTTP endpoint serving one registry on loopback."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.host = host
        self.port = int(server.server_port)
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop answering; the port refuses connections afterwards (Prometheus sees ``up == 0``)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
