"""The metric contract between trilink's services and its rules and dashboards.

Every metric family a trilink service exposes is declared here once, with its type and
label names. The Prometheus rules (``deploy/prometheus/rules``), their unit tests, the
Grafana dashboards and the in-process test exporter are all checked against this module, so
a renamed metric fails a unit test instead of silently emptying a dashboard panel.

The services build their ``prometheus_client`` objects from these declarations
(:func:`counter`, :func:`gauge`, :func:`histogram`; the ally's ledger, which collects its own
samples, takes name, help and labels from here too), so a family's name, type, help and labels
exist once; the integration tests scrape the services and compare with this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.models import EventKind, Nation
from trilink.latency import LATENCY_BUCKETS_S, PIPELINE_P99_OBJECTIVE_S

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricFamily:
    """One exposed metric family: ``name`` is the family name (a counter's includes ``_total``)."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    #: Which side exposes it (``ally`` service, sensor ``producer`` or the US ``hub``).
    exposed_by: Literal["ally", "producer", "hub"]

    def series_names(self) -> tuple[str, ...]:
        """The names of the samples Prometheus stores for this family."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)

    @property
    def base_name(self) -> str:
        """The name ``prometheus_client`` takes for it (a counter's without ``_total``, which the
        client appends itself)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


def counter(family: MetricFamily, registry: CollectorRegistry | None) -> Counter:
    """The ``prometheus_client`` counter of a counter family, registered in ``registry``."""
    assert family.type == "counter", family.name
    return Counter(family.base_name, family.help, family.labels, registry=registry)


def gauge(family: MetricFamily, registry: CollectorRegistry | None) -> Gauge:
    """The ``prometheus_client`` gauge of a gauge family, registered in ``registry``."""
    assert family.type == "gauge", family.name
    return Gauge(family.name, family.help, family.labels, registry=registry)


def histogram(family: MetricFamily, registry: CollectorRegistry | None) -> Histogram:
    """The ``prometheus_client`` histogram of a latency family (the project's buckets)."""
    assert family.type == "histogram", family.name
    return Histogram(family.name, family.help, family.labels, buckets=BUCKETS_S, registry=registry)


# --- label value sets (all bounded; never an event, track or correlation id) -------------

#: The allies, one service each: every nation of the contract (the one list; ``ALLIES`` as label values).
ALLY_NATIONS: tuple[Nation, ...] = tuple(Nation)
ALLIES: tuple[str, ...] = tuple(n.value for n in ALLY_NATIONS)
KINDS: tuple[str, ...] = tuple(k.value for k in EventKind)
#: Hops an ally service measures (``sensor_to_send`` is the producer's and not exported).
ALLY_HOPS: tuple[str, ...] = ("send_to_append", "append_to_receive", "receive_to_deliver", "end_to_end")
#: Hops an ally measures only in the hub topology, from the hub's headers: ingest append -> hub
#: received (``append_to_hub``) and hub received -> feed append (``hub_to_append``).
ALLY_HUB_HOPS: tuple[str, ...] = ("append_to_hub", "hub_to_append")
#: The three-way acknowledgement, as each ally service sees it: sensor send -> the last
#: acknowledgement among the allies a launch detection or alert was released to.
ALLY_ACK_HOPS: tuple[str, ...] = ("acknowledged_by_all",)
#: Hops the hub measures itself: sensor send -> ingest append, ingest append -> hub received
#: (feed ``none``), and per feed hub received -> the feed write acknowledged (``hub_to_ack``).
HUB_HOPS: tuple[str, ...] = ("send_to_append", "append_to_hub", "hub_to_ack")
#: Downstream channels of an ally service, plus ``none`` for hops measured before fan-out.
CHANNELS: tuple[str, ...] = ("kafka", "sse", "audit")
NO_CHANNEL = "none"
END_TO_END_HOP = "end_to_end"

#: Latency histogram buckets: the project's one definition, repeated here for the checks.
BUCKETS_S: tuple[float, ...] = LATENCY_BUCKETS_S
#: The objective the latency alert and dashboard threshold use (p99 of end_to_end, seconds).
P99_OBJECTIVE_S: float = PIPELINE_P99_OBJECTIVE_S

# --- ally service ----------------------------------------------------------------------

ALLY_HOP_LATENCY = MetricFamily(
    "trilink_ally_hop_latency_seconds",
    "histogram",
    ("ally", "hop", "kind", "channel"),
    "Latency of one hop of an event on its way to an ally's downstream channel.",
    "ally",
)
ALLY_EVENTS_RECEIVED = MetricFamily(
    "trilink_ally_events_received_total",
    "counter",
    ("ally", "kind"),
    "Valid events read from the warning topics.",
    "ally",
)
ALLY_EVENTS_DELIVERED = MetricFamily(
    "trilink_ally_events_delivered_total",
    "counter",
    ("ally", "kind", "channel"),
    "Events handed to a downstream channel (kafka: acknowledged; sse: queued for the "
    "live subscribers; audit: written).",
    "ally",
)
ALLY_EVENTS_WITHHELD = MetricFamily(
    "trilink_ally_events_withheld_total",
    "counter",
    ("ally", "kind"),
    "Valid events not delivered because they are not releasable to this ally.",
    "ally",
)
ALLY_DUPLICATES_SUPPRESSED = MetricFamily(
    "trilink_ally_duplicates_suppressed_total",
    "counter",
    ("ally",),
    "Events not delivered again because their id is in the de-duplication window.",
    "ally",
)
ALLY_WARNINGS_UNACKNOWLEDGED = MetricFamily(
    "trilink_ally_warnings_unacknowledged_total",
    "counter",
    ("ally", "missing"),
    "Warnings this ally delivered that an ally they were released to did not acknowledge in time.",
    "ally",
)
DEAD_LETTERS = MetricFamily(
    "trilink_dead_letters_total",
    "counter",
    ("ally", "reason"),
    "Records sent to the dead-letter topic, by reason.",
    "ally",
)
ALLY_SUBSCRIBER_DROPS = MetricFamily(
    "trilink_ally_subscriber_drops_total",
    "counter",
    ("ally", "channel"),
    "Events dropped for a slow live subscriber (its bounded queue was full; oldest dropped).",
    "ally",
)
ALLY_SSE_SUBSCRIBERS = MetricFamily(
    "trilink_ally_sse_subscribers",
    "gauge",
    ("ally",),
    "Connected Server-Sent-Events subscribers.",
    "ally",
)
ALLY_CONSUMER_LAG_RECORDS = MetricFamily(
    "trilink_ally_consumer_lag_records",
    "gauge",
    ("ally", "topic"),
    "Records not yet read, summed over this instance's partitions of a topic (end offset - position).",
    "ally",
)
ALLY_CONSUMER_LAG_SECONDS = MetricFamily(
    "trilink_ally_consumer_lag_seconds",
    "gauge",
    ("ally",),
    "When records are waiting: now minus the broker append time of the last record processed; else 0.",
    "ally",
)
ALLY_SENSOR_LAST_SEEN = MetricFamily(
    "trilink_ally_sensor_last_seen_timestamp_seconds",
    "gauge",
    ("ally", "sensor"),
    "Unix time the ally last received a sensor_status event from that sensor (releasable to it).",
    "ally",
)

# Diagnostics of an ally service: exposed too, but only once their event happens (a
# subscriber leaving, a failed fan-out, a rebalance), so a run need not show them and no rule
# or dashboard depends on them; they are not in FAMILIES (what every run exposes).
ALLY_SUBSCRIBER_DISCONNECTS = MetricFamily(
    "trilink_ally_subscriber_disconnects_total",
    "counter",
    ("ally", "channel", "reason"),
    "Live subscribers removed, by reason (closed by the client, write timeout, shutdown).",
    "ally",
)
ALLY_DELIVERY_FAILURES = MetricFamily(
    "trilink_ally_delivery_failures_total",
    "counter",
    ("ally", "channel", "reason"),
    "Batches whose fan-out failed and was retried, by channel and reason.",
    "ally",
)
ALLY_REBALANCES = MetricFamily(
    "trilink_ally_rebalances_total",
    "counter",
    ("ally", "event"),
    "Partition assignment changes seen by this instance.",
    "ally",
)
ALLY_DEDUP_WINDOW_IDS = MetricFamily(
    "trilink_ally_dedup_window_ids",
    "gauge",
    ("ally",),
    "Event ids currently held by the de-duplication window.",
    "ally",
)

# --- sensor producers ------------------------------------------------------------------

PRODUCER_EVENTS = MetricFamily(
    "trilink_producer_events_total",
    "counter",
    ("nation", "kind"),
    "Events handed to Kafka and acknowledged by all in-sync replicas.",
    "producer",
)
PRODUCER_SEND_ERRORS = MetricFamily(
    "trilink_producer_send_errors_total",
    "counter",
    ("kind", "reason"),
    "Events Kafka did not acknowledge, by error reason.",
    "producer",
)
PRODUCER_SEND_LATENCY = MetricFamily(
    "trilink_producer_send_latency_seconds",
    "histogram",
    ("kind",),
    "Producer send to broker acknowledgement (acks=all).",
    "producer",
)

# --- the US hub (hub topology) ----------------------------------------------------------

HUB_HOP_LATENCY = MetricFamily(
    "trilink_hub_hop_latency_seconds",
    "histogram",
    ("hop", "feed"),
    "Latency of one hop of a record through the US hub (feed none: before fan-out).",
    "hub",
)
HUB_RECORDS_RECEIVED = MetricFamily(
    "trilink_hub_records_received_total",
    "counter",
    ("nation", "kind"),
    "Valid records the hub read from a nation's ingest topic.",
    "hub",
)
HUB_RECORDS_RELEASED = MetricFamily(
    "trilink_hub_records_released_total",
    "counter",
    ("feed", "kind"),
    "Records the hub wrote to an ally's feed, acknowledged by the broker.",
    "hub",
)
HUB_RECORDS_WITHHELD = MetricFamily(
    "trilink_hub_records_withheld_total",
    "counter",
    ("feed", "kind"),
    "Valid records the hub did not release to an ally's feed (sharing policy or producer marking).",
    "hub",
)
HUB_DEAD_LETTERS = MetricFamily(
    "trilink_hub_dead_letters_total",
    "counter",
    ("reason",),
    "Records the hub could not route, sent to the dead-letter topic.",
    "hub",
)
HUB_DELIVERY_FAILURES = MetricFamily(
    "trilink_hub_delivery_failures_total",
    "counter",
    ("reason",),
    "Feed or dead-letter writes that failed (the hub reads again from the last durable point).",
    "hub",
)
HUB_CONSUMER_LAG_RECORDS = MetricFamily(
    "trilink_hub_consumer_lag_records",
    "gauge",
    ("topic",),
    "Records not yet read by the hub, per ingest topic.",
    "hub",
)
#: The hub's families (kept out of :data:`FAMILIES`, which the direct topology's checks enumerate).
HUB_FAMILIES: tuple[MetricFamily, ...] = (
    HUB_HOP_LATENCY,
    HUB_RECORDS_RECEIVED,
    HUB_RECORDS_RELEASED,
    HUB_RECORDS_WITHHELD,
    HUB_DEAD_LETTERS,
    HUB_DELIVERY_FAILURES,
    HUB_CONSUMER_LAG_RECORDS,
)

#: Every family, in exposition order.
FAMILIES: tuple[MetricFamily, ...] = (
    ALLY_HOP_LATENCY,
    ALLY_EVENTS_RECEIVED,
    ALLY_EVENTS_DELIVERED,
    ALLY_EVENTS_WITHHELD,
    ALLY_DUPLICATES_SUPPRESSED,
    ALLY_WARNINGS_UNACKNOWLEDGED,
    DEAD_LETTERS,
    ALLY_SUBSCRIBER_DROPS,
    ALLY_SSE_SUBSCRIBERS,
    ALLY_CONSUMER_LAG_RECORDS,
    ALLY_CONSUMER_LAG_SECONDS,
    ALLY_SENSOR_LAST_SEEN,
    PRODUCER_EVENTS,
    PRODUCER_SEND_ERRORS,
    PRODUCER_SEND_LATENCY,
)

#: Families exposed only once their event happens (see above).
DIAGNOSTIC_FAMILIES: tuple[MetricFamily, ...] = (
    ALLY_SUBSCRIBER_DISCONNECTS,
    ALLY_DELIVERY_FAILURES,
    ALLY_REBALANCES,
    ALLY_DEDUP_WINDOW_IDS,
)

FAMILIES_BY_NAME: dict[str, MetricFamily] = {f.name: f for f in FAMILIES + DIAGNOSTIC_FAMILIES}

#: Series Prometheus adds itself to every target; rules and dashboards may use them too.
SYNTHETIC_SERIES: tuple[str, ...] = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
)

#: Recording rules over the hub's families: they have data only in the hub topology.
HUB_RECORDED_SERIES: tuple[str, ...] = (
    "hop_feed:trilink_hub_hop_latency_seconds:p50_1m",
    "hop_feed:trilink_hub_hop_latency_seconds:p99_1m",
    "nation:trilink_hub_records_received:rate1m",
    "feed:trilink_hub_records_released:rate1m",
    "feed:trilink_hub_records_withheld:rate1m",
)

#: Names of the recording rules in ``deploy/prometheus/rules`` (checked against the files).
RECORDED_SERIES: tuple[str, ...] = (
    "ally_hop:trilink_ally_hop_latency_seconds:p50_1m",
    "ally_hop:trilink_ally_hop_latency_seconds:p99_1m",
    "ally:trilink_ally_end_to_end_within_objective:ratio_rate1m",
    "kind:trilink_producer_events:rate1m",
    "ally_kind:trilink_ally_events_received:rate1m",
    "ally_kind_channel:trilink_ally_events_delivered:rate1m",
    "ally:trilink_ally_consumer_lag_records:sum",
    "ally:trilink_ally_consumer_lag_seconds:max",
    "ally_sensor:trilink_ally_sensor_last_seen_timestamp_seconds:max",
    "ally:trilink_ally_acknowledged_by_all_seconds:p99_5m",
    "ally_missing:trilink_ally_warnings_unacknowledged:increase5m",
    *HUB_RECORDED_SERIES,
)

#: Alert names in ``deploy/prometheus/rules`` (checked against the files and their tests).
ALERTS: tuple[str, ...] = (
    "TrilinkLatencyObjectiveBreached",
    "TrilinkConsumerLagGrowing",
    "TrilinkConsumerBehind",
    "TrilinkSensorSilent",
    "TrilinkDeadLetters",
    "TrilinkAllyServiceDown",
    "TrilinkAllyServiceAbsent",
    "TrilinkSensorsDown",
    "TrilinkWarningUnacknowledged",
    "TrilinkHubDown",
    "TrilinkHubBehind",
    "TrilinkHubDeadLetters",
)


def known_series_names() -> frozenset[str]:
    """Every series name a rule or dashboard query may reference."""
    names: set[str] = set(SYNTHETIC_SERIES) | set(RECORDED_SERIES)
    for family in FAMILIES + DIAGNOSTIC_FAMILIES + HUB_FAMILIES:
        names.update(family.series_names())
    return frozenset(names)
