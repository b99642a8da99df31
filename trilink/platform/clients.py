"""Kafka client settings shared by every producer and consumer: one place to read them.

Each config carries the client's security (:class:`~trilink.platform.security.ClientSecurity`):
given explicitly, or resolved from the cluster (``TRILINK_CREDENTIALS_FILE``, or the local
cluster's state dir when it runs secured) and the principal the client id names (an ally's
service connects as that ally, tools as admin). Plaintext clusters get today's settings.
"""

from __future__ import annotations

from typing import Any

from trilink.platform.security import ClientSecurity, client_security

BOOTSTRAP_TIMEOUT_MS = 10_000
"""How long a client's constructor waits for its first broker (kafka-python's default: 30 s).

A refused login or a bootstrap where nothing listens is retried until then and only then
reported (as a timeout, or by :func:`~trilink.platform.security.login_check` with its reason):
a user with a wrong password or a wrong address waited 30 s for every command. On a reachable
cluster the bootstrap takes milliseconds; 10 s leaves a loaded machine a wide margin."""


def _security(bootstrap: str, client_id: str, security: ClientSecurity | None) -> dict[str, Any]:
    return (security or client_security(bootstrap, client_id)).kafka_options()


def _common(bootstrap: str, client_id: str) -> dict[str, Any]:
    """What every client gets: where to connect, its name, how long to wait for a first broker."""
    return {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    }


def admin_config(
    bootstrap: str, client_id: str, security: ClientSecurity | None = None, **overrides: Any
) -> dict[str, Any]:
    """A KafkaAdminClient's settings (on a secured cluster, tools connect as admin)."""
    config = _common(bootstrap, client_id)
    config.update(_security(bootstrap, client_id, security))
    config.update(overrides)
    return config


def producer_config(
    bootstrap: str, client_id: str, security: ClientSecurity | None = None, **overrides: Any
) -> dict[str, Any]:
    """Durable, ordered producing: every write acknowledged by all in-sync replicas, no
    duplicates on retry (idempotence), and no linger: a warning is sent as soon as it exists.

    Latency budget: ``linger_ms=0`` took the ally's receive->delivered p50 from 2.4 to 1.2 ms at
    50 events/s and the demo's end-to-end p99 from 44-47 to 41-43 ms. Batching still happens
    whenever the sender thread is busy (records wait for the request in flight), so under load
    the batches grow by themselves; a linger of 5 ms bought nothing at 3,000/s, where the
    allies are CPU-bound (``trilink loadtest --rate 3000``, 2026-12-03).

    The library's own client metrics are off (``metrics_enabled``; consumers too): nothing in
    trilink reads them, and recording them cost 5-7 % of a plain forwarding client's CPU at the
    demo's pace (``bench/bench_floor_pipeline.py``, alternated A/B, 2026-12-04)."""
    config: dict[str, Any] = {
        **_common(bootstrap, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        "retries": 2_147_483_647,
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": 30_000,
        "delivery_timeout_ms": 120_000,
        "metrics_enabled": False,
    }
    config.update(_security(bootstrap, client_id, security))
    config.update(overrides)
    return config


def consumer_config(
    bootstrap: str,
    group_id: str | None,
    client_id: str,
    security: ClientSecurity | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """At-least-once consuming: offsets are committed by the service after it has delivered."""
    config: dict[str, Any] = {
        **_common(bootstrap, client_id),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # A subscription that found its topic unauthorized (an ACL granted a moment later, the
        # authorizer lagging fresh ACLs) got no partitions until the next metadata refresh:
        # kafka-python's default age is 5 min, silent all along (none in 145 s after the grant).
        # With a 15 s age the same consumer had them 10 s after the grant (secured local cluster,
        # 2026-12-05); 30 s bounds that wait to half a minute.
        "metadata_max_age_ms": 30_000,
        "fetch_max_wait_ms": 100,  # the broker answers as soon as data arrives
        "max_poll_records": 500,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "metrics_enabled": False,
    }
    config.update(_security(bootstrap, client_id, security))
    config.update(overrides)
    return config
