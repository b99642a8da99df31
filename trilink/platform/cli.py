"""``trilink up|down|status|topics|smoke``: the local platform."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trilink.errors import TrilinkError
from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import apply_declared_topics, ensure_cluster
from trilink.platform.smoke import round_trip
from trilink.platform.state import bootstrap_servers
from trilink.settings import Settings, get_settings

if TYPE_CHECKING:
    from trilink.progress import NullProgress, Progress


def register(subparsers: Any) -> None:
    up = subparsers.add_parser("up", help="start the local Kafka cluster (KRaft) and apply the topics")
    up.add_argument("--brokers", type=int, choices=(1, 3), default=1, help="cluster size (default 1)")
    up.add_argument(
        "--refresh-jars",
        action="store_true",
        help="resolve the newest Kafka 4.x from Maven Central again",
    )
    up.add_argument(
        "--monitoring",
        action="store_true",
        help="also start a local Prometheus (Debian package) and print its URL",
    )
    mode = up.add_mutually_exclusive_group()
    mode.add_argument(
        "--secure",
        dest="secure",
        action="store_true",
        default=None,
        help="TLS listeners, SCRAM-SHA-512 principals per nation/ally/hub/admin, broker-enforced ACLs "
        "(the default for a new cluster; an existing one keeps its mode)",
    )
    mode.add_argument(
        "--insecure",
        dest="secure",
        action="store_false",
        help="INSECURE: plaintext listener, no authentication, no ACLs (any local client may do anything)",
    )
    up.add_argument(
        "--no-progress", action="store_true", help="no status line while Maven resolves and Kafka starts"
    )
    up.set_defaults(handler=_up)

    down = subparsers.add_parser("down", help="stop the local Kafka cluster")
    down.add_argument("--purge", action="store_true", help="also delete broker data and logs")
    down.add_argument("--monitoring", action="store_true", help="also stop the local Prometheus")
    down.set_defaults(handler=_down)

    status = subparsers.add_parser("status", help="show what runs where")
    status.set_defaults(handler=_status)

    topics = subparsers.add_parser("topics", help="apply deploy/topics.toml to the cluster")
    topics.set_defaults(handler=_topics)

    smoke = subparsers.add_parser("smoke", help="time a few records through the broker and back")
    smoke.add_argument("--count", type=int, default=20)
    smoke.set_defaults(handler=_smoke)


def _up(args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.bootstrap:
        print(f"TRILINK_BOOTSTRAP={settings.bootstrap}: using that cluster, starting nothing")
    with _up_progress(settings, enabled=not settings.bootstrap and not args.no_progress) as display:
        bootstrap, report, state = ensure_cluster(
            settings, brokers=args.brokers, secure=args.secure, announce=display.say
        )
    if state is not None:
        print(f"Kafka {state.kafka_version}: {len(state.nodes)} node(s) ready at {bootstrap}")
        print(f"  security: {security_summary(state, settings.state_dir)}")
    for line in report.lines():
        print(f"  topics: {line}")
    if args.monitoring:
        print(f"Prometheus: {start_monitoring_or_explain()}")
    return 1 if report.drift else 0


#: Maven's local repository, where its downloads land (``mvn`` default; the growth is shown).
MAVEN_REPOSITORY = Path.home() / ".m2" / "repository"


def _tree_bytes(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``; 0, 0 when it does not exist."""
    files = size = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(folder, name)).st_size
                files += 1
    return files, size


def _up_progress(settings: Settings, *, enabled: bool) -> Progress | NullProgress:
    """While ``trilink up`` works: which step (Maven resolving the broker's jars, or Kafka
    starting), how much Maven downloaded so far and how many jars it copied into the cache."""
    from trilink.progress import NullProgress, Progress, Status

    if not enabled:
        return NullProgress()
    _, repo_bytes_before = _tree_bytes(MAVEN_REPOSITORY)

    def status() -> Status:
        staging = sorted(settings.kafka_cache_dir.glob(".resolving-*"))
        if not staging:
            return Status(phase="starting Kafka (jars cached)")
        jars = sum(1 for d in staging for _ in d.glob("lib/*.jar"))
        _, repo_bytes = _tree_bytes(MAVEN_REPOSITORY)
        grown_mb = max(repo_bytes - repo_bytes_before, 0) / 1e6
        return Status(
            phase="Maven resolving Apache Kafka",
            detail=f"{grown_mb:.1f} MB downloaded into {MAVEN_REPOSITORY}, {jars} jar(s) copied",
        )

    return Progress(status, label="up", interval_s=1.0)


def start_monitoring_or_explain() -> str:
    """Start the local Prometheus; when it cannot run, say why and let everything else go on."""
    from trilink.monitoring.prometheus import console_urls, start_prometheus

    try:
        url = start_prometheus()
    except TrilinkError as exc:
        return f"not started: {exc}"
    return f"{url}  (consoles: {console_urls(url)['overview']})"


def _down(args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.bootstrap:
        print(f"TRILINK_BOOTSTRAP={settings.bootstrap} is not trilink's to stop; nothing done")
        return 0
    for line in LocalCluster(settings).down(purge=args.purge):
        print(line)
    if args.monitoring:
        from trilink.monitoring.prometheus import stop_prometheus

        print("Prometheus stopped" if stop_prometheus() else "Prometheus was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.bootstrap:
        print(f"external cluster: TRILINK_BOOTSTRAP={settings.bootstrap} (trilink starts nothing)")
        return 0
    cluster = LocalCluster(settings)
    state = cluster.load_state()
    if state is None:
        print(f"no local cluster in {settings.state_dir}; `trilink up` starts one")
        return 1
    print(f"Kafka {state.kafka_version}, cluster id {state.cluster_id}, state in {settings.state_dir}")
    all_up = True
    for st in cluster.status():
        n = st.node
        word = f"running (pid {n.pid})" if st.running else "stopped"
        all_up = all_up and st.running
        print(
            f"  node {n.node_id}: {word}  client {state.host}:{n.client_port}  "
            f"controller {state.host}:{n.controller_port}  log {n.log_file}"
        )
    print(f"bootstrap: {state.bootstrap}")
    print(f"security: {security_summary(state, settings.state_dir)}")
    return 0 if all_up else 1


def security_summary(state: Any, state_dir: Any) -> str:
    """One line saying how the local cluster is protected (and where its credentials are)."""
    from trilink.platform.security import CREDENTIALS_FILE, SECURITY_DIR

    if not state.secure:
        return "INSECURE (plaintext, no authentication, no ACLs)"
    return (
        "TLS + SASL/SCRAM-SHA-512 + ACLs; client credentials (owner-only) in "
        f"{state_dir / SECURITY_DIR / CREDENTIALS_FILE}"
    )


def _topics(args: argparse.Namespace) -> int:
    settings = get_settings()
    report = apply_declared_topics(bootstrap_servers(settings), settings=settings)
    for line in report.lines():
        print(line)
    return 1 if report.drift else 0


def _smoke(args: argparse.Namespace) -> int:
    bootstrap = bootstrap_servers()
    result = round_trip(bootstrap, count=args.count)
    print(
        f"smoke round trip: {result.count} records via {bootstrap}: "
        f"p50 {result.percentile_us(50) / 1000:.2f} ms, p99 {result.percentile_us(99) / 1000:.2f} ms, "
        f"max {max(result.round_trip_us) / 1000:.2f} ms"
    )
    return 0
