"""A local Apache Kafka cluster in KRaft mode: 1 or 3 combined broker+controller processes
on loopback, started with ``java`` from the jars in :mod:`trilink.platform.distribution`.

State lives in ``settings.state_dir``: ``cluster.json`` (what runs where), and per node a
``node-<id>/`` folder with its ``server.properties``, data and ``broker.log``. A secured cluster
(``security == "SASL_SSL"``) also has ``security/`` (CA, broker keystores, client credentials,
all owner-only; see :mod:`trilink.platform.security`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trilink.errors import BrokerNotReadyError, PlatformError
from trilink.platform import security
from trilink.platform.clients import admin_config
from trilink.platform.distribution import LOG4J_CONFIG, KafkaDistribution, locate
from trilink.platform.security import ClientSecurity, SecurityMaterial, login_check
from trilink.platform.state import STATE_FILE, ClusterState, NodeState, load_cluster_state, pid_runs_broker
from trilink.platform.topics import load_topic_file
from trilink.processes import terminate
from trilink.runtime import cpu_for, pin_process
from trilink.settings import Settings
from trilink.waiting import wait_until

#: Handles of brokers this process started. They outlive any one LocalCluster object on
#: purpose (the brokers are detached); keeping the handles stops Python from warning that a
#: still-running child was garbage-collected.
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}
_LOG_TAIL_LINES = 25
#: What :meth:`LocalCluster.up` says when every node was running already (nothing started).
ALREADY_RUNNING = "already running"


@dataclass(frozen=True)
class NodeStatus:
    node: NodeState
    running: bool


def is_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class LocalCluster:
    """Start, inspect and stop the project's own local Kafka cluster."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.state_path = self.state_dir / STATE_FILE
        self._spawned: dict[int, subprocess.Popen[bytes]] = {}

    # -- state -----------------------------------------------------------------------------
    def load_state(self) -> ClusterState | None:
        return load_cluster_state(self.state_dir)

    def _save_state(self, state: ClusterState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.state_path)

    def status(self) -> list[NodeStatus]:
        state = self.load_state()
        if state is None:
            return []
        return [NodeStatus(n, pid_runs_broker(n.pid, n.properties_file)) for n in state.nodes]

    # -- up ------------------------------------------------------------------------------------
    def up(
        self, brokers: int = 1, refresh_jars: bool = False, secure: bool = False
    ) -> tuple[ClusterState, str]:
        """Start (or find running) a cluster of ``brokers`` nodes; returns the state and what happened.

        ``secure``: TLS listeners, SCRAM-SHA-512 principals and ACLs (see :mod:`.security`);
        otherwise plaintext with no authentication or authorisation."""
        if brokers not in (1, 3):
            raise PlatformError("bad_broker_count", f"--brokers must be 1 or 3, got {brokers}")
        state = self.load_state()
        wanted = "SASL_SSL" if secure else "PLAINTEXT"
        if state is not None and state.security != wanted:
            raise PlatformError(
                "cluster_security_mismatch",
                f"the cluster in {self.state_dir} was set up {_mode(state.security)}, not "
                f"{_mode(wanted)}; run `trilink down --purge` first to start it afresh the other way",
            )
        if state is not None and len(state.nodes) != brokers:
            running = any(pid_runs_broker(n.pid, n.properties_file) for n in state.nodes)
            raise PlatformError(
                "cluster_size_mismatch",
                f"a {len(state.nodes)}-broker cluster is {'running' if running else 'set up'} in "
                f"{self.state_dir}; run `trilink down --purge` before starting {brokers} broker(s)",
            )
        if state is not None and all(pid_runs_broker(n.pid, n.properties_file) for n in state.nodes):
            self.wait_ready(state)
            return state, ALREADY_RUNNING

        dist = locate(self.settings.kafka_cache_dir, self.settings.kafka_home, refresh=refresh_jars)
        fresh = state is None or not all((n.data_dir / "meta.properties").is_file() for n in state.nodes)
        if fresh:
            state = self._new_state(brokers, dist)
            state.security = wanted
        assert state is not None
        material: SecurityMaterial | None = None
        if state.secure and fresh:
            nations = [r.split(".", 1)[1] for r in self._roles() if r.startswith("ally.")]
            material = security.create_material(
                self.state_dir, state.cluster_id, [n.node_id for n in state.nodes], state.host, nations
            )
        elif state.secure:
            material = security.load_material(self.state_dir)
        state.classpath = dist.classpath
        state.kafka_version = dist.version
        for node in state.nodes:
            if pid_runs_broker(node.pid, node.properties_file):
                continue
            for port in (node.client_port, node.controller_port):
                if not is_port_free(state.host, port):
                    raise PlatformError(
                        "port_in_use",
                        f"port {port} on {state.host} is already in use, so Kafka node {node.node_id} "
                        "cannot listen on it; stop whatever holds it or choose other ports with "
                        "TRILINK_KAFKA_PORT_BASE",
                    )
        for node in state.nodes:
            self._write_properties(state, node, material)
            if fresh:
                self._format(state, node, dist, material)
        spawned = []
        for index, node in enumerate(state.nodes):
            if not pid_runs_broker(node.pid, node.properties_file):
                node.pid = self._spawn(state, node)
                cpu = cpu_for("broker", self.settings.cpu_pinning, index=index)
                pin_process(node.pid, cpu)  # the JVM's first thread: the threads it starts inherit
                spawned.append((node.pid, cpu))
        self._save_state(state)
        self.wait_ready(state)
        for pid, cpu in spawned:  # and the threads it started before it was pinned
            pin_process(pid, cpu)
        return state, "started fresh" if fresh else "restarted on existing data"

    def _new_state(self, brokers: int, dist: KafkaDistribution) -> ClusterState:
        if self.state_dir.exists():
            for node_dir in self.state_dir.glob("node-*"):
                shutil.rmtree(node_dir)
        base = self.settings.kafka_port_base
        nodes = [
            NodeState(
                node_id=i + 1,
                client_port=base + 2 * i,
                controller_port=base + 2 * i + 1,
                node_dir=str(self.state_dir / f"node-{i + 1}"),
            )
            for i in range(brokers)
        ]
        return ClusterState(
            cluster_id=_kafka_cluster_id(),
            host=self.settings.host,
            kafka_version=dist.version,
            classpath=dist.classpath,
            nodes=nodes,
        )

    def _roles(self) -> list[str]:
        return [t.role for t in load_topic_file(self.settings.topics_file).topics]

    def admin_security(self, state: ClusterState) -> ClientSecurity:
        """How trilink's own tools reach this cluster: as ``admin`` when it is secured."""
        if not state.secure:
            return security.PLAINTEXT
        creds = security.load_credentials(self.state_dir / security.SECURITY_DIR / security.CREDENTIALS_FILE)
        return creds.for_principal(security.ADMIN_PRINCIPAL)

    def _write_properties(
        self, state: ClusterState, node: NodeState, material: SecurityMaterial | None = None
    ) -> None:
        n = len(state.nodes)
        voters = ",".join(f"{m.node_id}@{state.host}:{m.controller_port}" for m in state.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{state.host}:{node.client_port},CONTROLLER://{state.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{state.host}:{node.client_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.data_dir),
            "num.partitions": "3",
            "default.replication.factor": str(min(3, n)),
            "min.insync.replicas": str(min(2, n)),
            "offsets.topic.replication.factor": str(min(3, n)),
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": str(min(3, n)),
            "transaction.state.log.min.isr": str(min(2, n)),
            "share.coordinator.state.topic.replication.factor": str(min(3, n)),
            "share.coordinator.state.topic.min.isr": str(min(2, n)),
            "auto.create.topics.enable": "false",
            # A consumer group of a fresh service should not wait 3 s before its first rebalance.
            "group.initial.rebalance.delay.ms": "0",
        }
        if material is not None:
            props.update(
                security.broker_properties(
                    material, node.node_id, state.host, node.client_port, node.controller_port
                )
            )
        node.data_dir.mkdir(parents=True, exist_ok=True)
        # Owner-only: a secured broker's properties hold its own SCRAM password.
        security.write_private(node.properties_file, "".join(f"{k}={v}\n" for k, v in props.items()).encode())

    def _java_base(self, state: ClusterState) -> list[str]:
        heap = self.settings.broker_heap_mb
        return [
            "java",
            f"-Xms{heap // 2}m",
            f"-Xmx{heap}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            state.classpath,
        ]

    def _format(
        self,
        state: ClusterState,
        node: NodeState,
        dist: KafkaDistribution,
        material: SecurityMaterial | None = None,
    ) -> None:
        cmd = [
            *self._java_base(state)[:1],
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            dist.classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={state.cluster_id}",
            "--config",
            str(node.properties_file),
            "--ignore-formatted",
        ]
        if material is not None:  # KIP-900: SCRAM credentials bootstrapped into the metadata log
            for argument in material.scram_arguments():
                cmd += ["--add-scram", argument]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise PlatformError(
                "storage_format_failed",
                f"formatting KRaft storage for node {node.node_id} failed:\n"
                + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:]),
            )

    def _spawn(self, state: ClusterState, node: NodeState) -> int:
        node.log_file.parent.mkdir(parents=True, exist_ok=True)
        with node.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [*self._java_base(state), "kafka.Kafka", str(node.properties_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
            )
        self._spawned[node.node_id] = proc
        _DETACHED[proc.pid] = proc
        return proc.pid

    def _alive(self, node: NodeState) -> bool:
        proc = self._spawned.get(node.node_id)
        if proc is not None:  # started by us: the child handle is exact, /proc may lag an exec
            return proc.poll() is None
        return pid_runs_broker(node.pid, node.properties_file)

    def wait_ready(self, state: ClusterState) -> None:
        """Block until every node is registered and answers metadata requests, or fail with its log tail."""
        from kafka.errors import KafkaError

        last_error = "no answer yet"

        def ready() -> bool:
            nonlocal last_error
            for node in state.nodes:
                if not self._alive(node):
                    raise BrokerNotReadyError(
                        "broker_exited",
                        f"Kafka node {node.node_id} exited during start-up (log: {node.log_file})",
                        log_tail(node.log_file),
                    )
            if not all(_accepts(state.host, n.client_port) for n in state.nodes):
                last_error = "client ports not listening yet"
                return False
            try:
                brokers = describe_brokers(state.bootstrap, security=self.admin_security(state))
            except (KafkaError, OSError) as exc:
                last_error = repr(exc)
                return False
            if len(brokers) == len(state.nodes):
                return True
            last_error = f"{len(brokers)} of {len(state.nodes)} brokers registered"
            return False

        if wait_until(ready, self.settings.broker_ready_timeout_s, interval_s=0.25):
            return
        worst = state.nodes[0]
        raise BrokerNotReadyError(
            "broker_not_ready",
            f"the cluster did not become ready within {self.settings.broker_ready_timeout_s:.0f} s "
            f"({last_error}); log: {worst.log_file}",
            log_tail(worst.log_file),
        )

    # -- down ----------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        """Stop every node (SIGTERM, then SIGKILL after the stop timeout); optionally delete data."""
        said: list[str] = []
        state = self.load_state()
        if state is not None:
            running = {
                n.pid: n
                for n in state.nodes
                if n.pid is not None and pid_runs_broker(n.pid, n.properties_file)
            }
            killed = terminate(
                running,
                lambda pid: pid_runs_broker(pid, running[pid].properties_file),
                self.settings.broker_stop_timeout_s,
            )
            for pid, node in running.items():
                if pid in killed:
                    said.append(f"node {node.node_id} (pid {pid}) did not stop in time: killed")
                else:
                    said.append(f"node {node.node_id} (pid {pid}) stopped")
            for node in state.nodes:
                handle = _DETACHED.pop(node.pid or -1, None)
                if handle is not None:  # our own child: reap it (no zombie, no ResourceWarning)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        handle.wait(timeout=10)
            for node in state.nodes:
                node.pid = None
            if not running:
                said.append("no broker was running")
            if not purge:
                self._save_state(state)
        else:
            said.append("no local cluster here")
        if purge and self.state_dir.exists():
            for child in ("cluster.json", "cluster.tmp"):
                (self.state_dir / child).unlink(missing_ok=True)
            shutil.rmtree(self.state_dir / security.SECURITY_DIR, ignore_errors=True)
            for node_dir in self.state_dir.glob("node-*"):
                shutil.rmtree(node_dir, ignore_errors=True)
            said.append(f"purged broker data in {self.state_dir}")
        return said


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    import base64

    while True:  # like Kafka's own, never start with '-' (command lines would read an option)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _mode(protocol: str) -> str:
    return "secured (TLS + SCRAM + ACLs)" if protocol == "SASL_SSL" else "insecure (plaintext, no ACLs)"


def describe_brokers(
    bootstrap: str, timeout_ms: int = 3000, security: ClientSecurity | None = None
) -> list[dict[str, Any]]:
    """The brokers a metadata request to ``bootstrap`` reports (``security`` None: resolved
    through :func:`trilink.platform.security.client_security`)."""
    from kafka import KafkaAdminClient

    sec = security if security is not None else _resolve(bootstrap)
    try:
        # the probe's timeout bounds its bootstrap too: a refused login is then said within it
        admin = KafkaAdminClient(
            **admin_config(
                bootstrap,
                "trilink-probe",
                sec,
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        )
    except Exception:
        login_check(bootstrap, sec)  # a refused login says so, typed
        raise
    try:
        brokers: list[dict[str, Any]] = admin.describe_cluster()["brokers"]
        return brokers
    finally:
        admin.close()


def _resolve(bootstrap: str) -> ClientSecurity:
    return security.client_security(bootstrap, "trilink-probe")
