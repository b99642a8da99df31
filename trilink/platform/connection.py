"""Which Kafka cluster a command talks to: ``TRILINK_BOOTSTRAP`` (a user's own cluster,
nothing started; with ``TRILINK_CREDENTIALS_FILE`` when it is secured) or the project's local
cluster from ``trilink up`` (secured or ``--insecure``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from trilink.errors import PlatformError
from trilink.platform import security
from trilink.platform.clients import admin_config
from trilink.platform.cluster import ALREADY_RUNNING, LocalCluster, describe_brokers
from trilink.platform.security import ClientSecurity
from trilink.platform.state import ClusterState
from trilink.platform.topics import ApplyReport, apply_topics, load_topic_file
from trilink.platform.warmup import warm_up
from trilink.settings import Settings, get_settings

log = logging.getLogger(__name__)


def ensure_cluster(
    settings: Settings | None = None,
    brokers: int = 1,
    secure: bool | None = None,
    announce: Callable[[str], None] | None = None,
) -> tuple[str, ApplyReport, ClusterState | None]:
    """Make a usable cluster with trilink's topics (and, when secured, its ACLs): reuse
    ``TRILINK_BOOTSTRAP`` or start the local one. ``secure`` None keeps a local cluster's
    current mode; a new one starts secured (``trilink up --insecure`` starts a plaintext one).

    A local cluster this call started is warmed up (``Settings.broker_warmup_s``,
    :mod:`trilink.platform.warmup`) after its topics are applied; ``announce`` (a command's
    output) is told when that starts and how it went."""
    settings = settings or get_settings()
    state: ClusterState | None = None
    cluster: LocalCluster | None = None
    started = False
    if settings.bootstrap:
        bootstrap = settings.bootstrap
        probe = security.client_security(bootstrap, "trilink-probe", settings=settings)
        security.login_check(bootstrap, probe)  # a refused login fails fast, with its reason
        try:
            count = len(describe_brokers(bootstrap, timeout_ms=10_000, security=probe))
        except Exception as exc:  # any client failure means "unreachable"
            raise PlatformError(
                "bootstrap_unreachable",
                f"TRILINK_BOOTSTRAP={bootstrap} does not answer a metadata request: {exc!r}",
            ) from exc
    else:
        cluster = LocalCluster(settings)
        if secure is None:
            existing = cluster.load_state()
            secure = existing is None or existing.secure
        state, what = cluster.up(brokers=brokers, secure=secure)
        started = what != ALREADY_RUNNING
        bootstrap = state.bootstrap
        count = len(state.nodes)
    report = apply_declared_topics(bootstrap, count, settings)
    if started and cluster is not None and state is not None and settings.broker_warmup_s > 0:
        _warm_up(cluster, state, settings.broker_warmup_s, announce or log.info)
    return bootstrap, report, state


def _warm_up(
    cluster: LocalCluster, state: ClusterState, seconds: float, announce: Callable[[str], None]
) -> None:
    """Warm the cluster just started; a failure is reported and the command goes on (a cold
    broker is slower, not wrong)."""
    announce(
        f"warming up the broker just started: {seconds:.0f} s of scratch records, not measured "
        "(TRILINK_BROKER_WARMUP_S=0 skips)"
    )
    try:
        result = warm_up(
            state.bootstrap,
            seconds,
            cluster.admin_security(state),
            replication=min(3, len(state.nodes)),
        )
    except Exception as exc:
        log.warning("warming up the broker failed, going on with a cold one: %r", exc)
        return
    announce(result.line())


def apply_declared_topics(
    bootstrap: str,
    broker_count: int | None = None,
    settings: Settings | None = None,
    client: ClientSecurity | None = None,
) -> ApplyReport:
    """Apply ``deploy/topics.toml``; ``broker_count=None`` asks the cluster how many brokers it has
    (replication factor and ``min.insync.replicas`` are capped to that). On a secured cluster
    this connects as admin (only admin may create or reconfigure topics) and also makes the
    broker's ACLs equal the plan derived from the topic file."""
    from kafka import KafkaAdminClient

    settings = settings or get_settings()
    sec = client or security.client_security(bootstrap, "trilink-topics", settings=settings)
    if broker_count is None:
        broker_count = len(describe_brokers(bootstrap, timeout_ms=10_000, security=sec))
    topic_file = load_topic_file(settings.topics_file)
    admin: Any = KafkaAdminClient(**admin_config(bootstrap, "trilink-topics", sec))
    try:
        try:
            report = apply_topics(admin, topic_file, broker_count)
        except Exception as exc:
            denied = security.access_denied(exc, sec.principal, "applying the topic file")
            if denied is not None:
                raise denied from exc
            raise
        if sec.secure and sec.principal == security.ADMIN_PRINCIPAL:
            roles = {t.role: t.name for t in topic_file.topics}
            security.apply_acls(admin, security.acl_plan(roles, settings.topology))
        return report
    finally:
        admin.close()
