"""The local platform against real Kafka processes: start, restart, reconcile, stop."""

from __future__ import annotations

import os
import signal
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from tests.conftest import local_settings, thread_cpus
from trilink.errors import BrokerNotReadyError, PlatformError
from trilink.platform.cluster import LocalCluster, describe_brokers
from trilink.platform.connection import apply_declared_topics
from trilink.platform.smoke import round_trip
from trilink.platform.topics import apply_topics, load_topic_file, topic_name
from trilink.processes import pid_runs
from trilink.runtime import cpu_for
from trilink.waiting import wait_until

pytestmark = pytest.mark.integration


def test_smoke_round_trip_measures_every_probe(kafka_bootstrap: str) -> None:
    result = round_trip(kafka_bootstrap, count=5, interval_s=0.0)
    assert result.count == 5
    assert len(result.round_trip_us) == 5
    assert all(us > 0 for us in result.round_trip_us)


def test_single_node_up_is_idempotent_and_restarts_on_its_data(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state")
    cluster = LocalCluster(settings)
    try:
        state, how = cluster.up(brokers=1)
        assert how == "started fresh"
        apply_declared_topics(state.bootstrap, 1, settings)
        again, how_again = cluster.up(brokers=1)
        assert how_again == "already running"
        assert again.nodes[0].pid == state.nodes[0].pid

        cluster.down()
        assert not any(s.running for s in cluster.status())
        restarted, how_restart = cluster.up(brokers=1)
        assert how_restart == "restarted on existing data"
        assert restarted.cluster_id == state.cluster_id
        admin: Any = KafkaAdminClient(bootstrap_servers=restarted.bootstrap)
        try:
            assert topic_name("warnings") in admin.list_topics()  # data survived the restart
        finally:
            admin.close()

        with pytest.raises(PlatformError) as mismatch:
            cluster.up(brokers=3)
        assert mismatch.value.reason == "cluster_size_mismatch"
    finally:
        cluster.down(purge=True)
    assert not (tmp_path / "state" / "node-1").exists()


def test_three_nodes_replicate_and_survive_one_loss(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state", brokers=3).model_copy(update={"cpu_pinning": "on"})
    cluster = LocalCluster(settings)
    try:
        state, _ = cluster.up(brokers=3)
        assert len(describe_brokers(state.bootstrap)) == 3
        for index, node in enumerate(state.nodes):  # each node, every JVM thread, on its CPU
            cpu = cpu_for("broker", settings.cpu_pinning, index=index)
            expected = os.sched_getaffinity(0) if cpu is None else {cpu}
            assert node.pid is not None
            masks = thread_cpus(node.pid)
            assert len(masks) > 20  # the JVM's threads, started after the spawn too
            assert [tid for tid, cpus in masks.items() if cpus != expected] == [], index
        apply_declared_topics(state.bootstrap, 3, settings)
        admin: Any = KafkaAdminClient(bootstrap_servers=state.bootstrap)
        try:
            warnings = topic_name("warnings")
            (described,) = admin.describe_topics([warnings])
            assert all(len(p["replica_nodes"]) == 3 for p in described["partitions"])
            resource = [ConfigResource(ConfigResourceType.TOPIC, warnings)]

            def min_isr() -> Any:
                # The broker answering may not have the new topic's configs yet (a loaded
                # machine showed an empty answer right after creation): ask until it has.
                return admin.describe_configs(resource, config_filter="all")["topic"].get(warnings, {})

            def isr_known() -> Any:
                configs = min_isr()
                return configs if "min.insync.replicas" in configs else None

            configs = wait_until(isr_known, timeout_s=15, interval_s=0.2) or min_isr()
            assert configs["min.insync.replicas"]["value"] == "2"
        finally:
            admin.close()

        # Stop one node: with min.insync.replicas=2 of 3, acks=all writes still succeed.

        victim = state.nodes[2]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGTERM)
        # Lost means gone: a producer that met the node while it shut down sent its first
        # request there and waited out its 30 s request timeout before it asked a survivor;
        # a node that has exited refuses the connection at once.
        survivor = f"127.0.0.1:{state.nodes[0].client_port}"
        assert wait_until(lambda: not pid_runs(victim.pid), timeout_s=60)
        producer: Any = KafkaProducer(
            bootstrap_servers=survivor,
            acks="all",
            enable_idempotence=True,
        )
        try:
            meta = producer.send(topic_name("smoke"), b"still-durable").get(timeout=30)
            assert meta.offset >= 0
        finally:
            producer.close(timeout=5)
    finally:
        cluster.down(purge=True)


def test_port_in_use_is_named(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.kafka_port_base))
        squatter.listen()
        with pytest.raises(PlatformError) as err:
            LocalCluster(settings).up(brokers=1)
    assert err.value.reason == "port_in_use"
    assert str(settings.kafka_port_base) in err.value.message


def test_broker_that_is_not_ready_in_time_shows_its_log(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state").model_copy(update={"broker_ready_timeout_s": 0.5})
    cluster = LocalCluster(settings)
    try:
        with pytest.raises(BrokerNotReadyError) as err:
            cluster.up(brokers=1)
        assert err.value.reason == "broker_not_ready"
        assert "broker.log" in err.value.message
    finally:
        cluster.down(purge=True)


def test_topics_are_reconciled_or_reported(kafka_bootstrap: str, tmp_path: Path) -> None:
    raw = tomllib.loads(Path("deploy/topics.toml").read_text())
    topic = "trilink.test-reconcile"
    file = tmp_path / "topics.toml"

    def write(partitions: int, retention_ms: int) -> None:
        file.write_text(
            f'[[topics]]\nrole = "r"\nname = "{topic}"\npartitions = {partitions}\n'
            f"retention_ms = {retention_ms}\n"
        )

    assert raw["topics"], "the shipped topic file declares topics"
    admin: Any = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        write(2, 60_000)
        assert apply_topics(admin, load_topic_file(file), 1).created == [topic]
        assert apply_topics(admin, load_topic_file(file), 1).unchanged == [topic]
        write(4, 120_000)
        grown = apply_topics(admin, load_topic_file(file), 1)
        assert grown.partitions_increased and grown.configs_updated
        (described,) = admin.describe_topics([topic])
        assert len(described["partitions"]) == 4
        write(3, 120_000)
        shrink = apply_topics(admin, load_topic_file(file), 1)
        assert shrink.drift and "cannot shrink" in shrink.drift[0]
        assert shrink.unchanged == []
    finally:
        admin.delete_topics([topic])
        admin.close()
