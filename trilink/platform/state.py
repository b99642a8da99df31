"""What the local cluster's state file (``<state_dir>/cluster.json``) says: which nodes run on
which ports with which pids, and whether the cluster is secured.

Reading it needs nothing of the broker launcher (:mod:`trilink.platform.cluster`, which
writes it), so clients that only need the bootstrap address or the cluster's security mode
(the producer and ally CLIs, :mod:`trilink.platform.security`) stay in the base layer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trilink.errors import PlatformError
from trilink.processes import pid_runs
from trilink.settings import Settings, get_settings

__all__ = [
    "STATE_FILE",
    "ClusterState",
    "NodeState",
    "bootstrap_servers",
    "load_cluster_state",
    "pid_runs_broker",
]

STATE_FILE = "cluster.json"


@dataclass
class NodeState:
    node_id: int
    client_port: int
    controller_port: int
    node_dir: str
    pid: int | None = None

    @property
    def log_file(self) -> Path:
        return Path(self.node_dir) / "broker.log"

    @property
    def properties_file(self) -> Path:
        return Path(self.node_dir) / "server.properties"

    @property
    def data_dir(self) -> Path:
        return Path(self.node_dir) / "data"


@dataclass
class ClusterState:
    cluster_id: str
    host: str
    kafka_version: str
    classpath: str
    nodes: list[NodeState]
    #: "PLAINTEXT" (``--insecure``: no authentication, no ACLs) or "SASL_SSL" (TLS + SCRAM + ACLs).
    security: str = "PLAINTEXT"

    @property
    def secure(self) -> bool:
        return self.security == "SASL_SSL"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.client_port}" for n in self.nodes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw = json.loads(text)
        raw["nodes"] = [NodeState(**n) for n in raw["nodes"]]
        return cls(**raw)


def load_cluster_state(state_dir: Path) -> ClusterState | None:
    """The state recorded in ``state_dir``, None when there is none; unreadable is a typed error."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return ClusterState.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise PlatformError(
            "state_corrupt",
            f"{path} is unreadable ({exc}); run `trilink down --purge` to start afresh",
        ) from exc


def pid_runs_broker(pid: int | None, properties_file: Path) -> bool:
    """True when ``pid`` is alive and is the broker started with this properties file
    (guards against a recycled pid belonging to some other process)."""
    return pid_runs(pid, b"kafka.Kafka", str(properties_file).encode())


def bootstrap_servers(settings: Settings | None = None) -> str:
    """The bootstrap list of the configured cluster, or a typed error saying how to get one."""
    settings = settings or get_settings()
    if settings.bootstrap:
        return settings.bootstrap
    state = load_cluster_state(settings.state_dir)
    if state is None or not any(pid_runs_broker(n.pid, n.properties_file) for n in state.nodes):
        raise PlatformError(
            "no_broker",
            "no Kafka broker is configured or running; run `trilink up` or set TRILINK_BOOTSTRAP=host:port",
        )
    return state.bootstrap
