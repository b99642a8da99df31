"""The warm-up of a broker a command has just started (trilink.platform.warmup), on real brokers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from trilink.platform.clients import admin_config
from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import ensure_cluster
from trilink.platform.scratch import free_port_base
from trilink.platform.security import ADMIN_PRINCIPAL, client_security
from trilink.platform.warmup import WARMUP_TOPIC_PREFIX, warm_up
from trilink.settings import Settings

_DONE = re.compile(r"broker warmed up: ([\d,]+) records sent and ([\d,]+) read back in \d+ s")


def _leftovers(bootstrap: str, security: Any, prefix: str = "") -> tuple[list[str], list[str]]:
    """Warm-up topics and groups on the cluster (``prefix``: only those of one warm-up)."""
    admin: Any = KafkaAdminClient(**admin_config(bootstrap, "test-warmup-admin", security))
    try:
        topics = [t for t in admin.list_topics() if t.startswith(WARMUP_TOPIC_PREFIX + prefix)]
        groups = [
            g["group_id"] for g in admin.list_groups() if g["group_id"].startswith("trilink-warmup-" + prefix)
        ]
    finally:
        admin.close()
    return topics, groups


@pytest.mark.integration
def test_warm_up_sends_reads_back_and_leaves_nothing_behind(kafka_bootstrap: str) -> None:
    security = client_security(kafka_bootstrap, "trilink-warmup", principal=ADMIN_PRINCIPAL)
    result = warm_up(kafka_bootstrap, 1.5, security)
    assert result.sent > 100  # about 1,500 a second, less on a busy machine
    assert result.read == result.sent
    assert result.seconds >= 1.5
    suffix = result.topic.removeprefix(WARMUP_TOPIC_PREFIX)
    assert suffix and result.group.endswith(suffix)
    assert _leftovers(kafka_bootstrap, security, suffix) == ([], [])  # a shared broker: only its own


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_secured_cluster_the_command_starts_is_warmed_once(tmp_path: Path) -> None:
    """`trilink up`/`run` on no running cluster: started, topics applied, then warmed up as
    admin over TLS and SCRAM; the same call on the running cluster warms nothing."""
    settings = Settings(
        state_dir=tmp_path / "state", kafka_port_base=free_port_base(2), bootstrap=None, broker_warmup_s=1.0
    )
    said: list[str] = []
    try:
        bootstrap, _, state = ensure_cluster(settings, secure=True, announce=said.append)
        assert state is not None and state.secure
        assert len(said) == 2, said
        assert said[0].startswith("warming up the broker just started: 1 s of scratch records")
        done = _DONE.fullmatch(said[1])
        assert done is not None, said[1]
        assert done.group(1) == done.group(2) and int(done.group(1).replace(",", "")) > 0
        admin = LocalCluster(settings).admin_security(state)
        assert _leftovers(bootstrap, admin) == ([], [])

        ensure_cluster(settings, secure=True, announce=said.append)
        assert len(said) == 2, said  # already running: no second warm-up
    finally:
        LocalCluster(settings).down(purge=True)
