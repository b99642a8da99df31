"""Which Kafka cluster a command talks to: ``TRILINK_BOOTSTRAP`` (a user's own cluster,
nothing started) or the project's local cluster from ``trilink up``."""

from __future__ import annotations

from typing import Any

from trilink.errors import PlatformError
from trilink.platform.cluster import ClusterState, LocalCluster, describe_brokers, pid_runs_broker
from trilink.platform.topics import ApplyReport, apply_topics, load_topic_file
from trilink.settings import Settings, get_settings


def bootstrap_servers(settings: Settings | None = None) -> str:
    """The bootstrap list of the configured cluster, or a typed error saying how to get one."""
    settings = settings or get_settings()
    if settings.bootstrap:
        return settings.bootstrap
    state = LocalCluster(settings).load_state()
    if state is None or not any(pid_runs_broker(n.pid, n.properties_file) for n in state.nodes):
        raise PlatformError(
            "no_broker",
            "no Kafka broker is configured or running; run `trilink up` or set TRILINK_BOOTSTRAP=host:port",
        )
    return state.bootstrap


def ensure_cluster(
    settings: Settings | None = None, brokers: int = 1
) -> tuple[str, ApplyReport, ClusterState | None]:
    """Make a usable cluster with trilink's topics: reuse ``TRILINK_BOOTSTRAP`` or start the local one."""
    settings = settings or get_settings()
    state: ClusterState | None = None
    if settings.bootstrap:
        bootstrap = settings.bootstrap
        try:
            count = len(describe_brokers(bootstrap, timeout_ms=10_000))
        except Exception as exc:  # any client failure means "unreachable"
            raise PlatformError(
                "bootstrap_unreachable",
                f"TRILINK_BOOTSTRAP={bootstrap} does not answer a metadata request: {exc!r}",
            ) from exc
    else:
        state, _ = LocalCluster(settings).up(brokers=brokers)
        bootstrap = state.bootstrap
        count = len(state.nodes)
    report = apply_declared_topics(bootstrap, count, settings)
    return bootstrap, report, state


def apply_declared_topics(
    bootstrap: str, broker_count: int | None = None, settings: Settings | None = None
) -> ApplyReport:
    """Apply ``deploy/topics.toml``; ``broker_count=None`` asks the cluster how many brokers it has
    (replication factor and ``min.insync.replicas`` are capped to that)."""
    from kafka import KafkaAdminClient

    settings = settings or get_settings()
    if broker_count is None:
        broker_count = len(describe_brokers(bootstrap, timeout_ms=10_000))
    admin: Any = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="trilink-topics")
    try:
        return apply_topics(admin, load_topic_file(settings.topics_file), broker_count)
    finally:
        admin.close()
