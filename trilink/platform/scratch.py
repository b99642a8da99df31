"""A throwaway local cluster: free loopback ports, a temporary state directory, trilink's
topics applied, stopped and purged on exit. One helper for the test session's broker, the
recordings maker and the platform benchmarks, instead of a copy in each."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from trilink.errors import PlatformError
from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import apply_declared_topics
from trilink.platform.state import ClusterState
from trilink.settings import Settings

__all__ = ["free_port_base", "scratch_cluster", "scratch_settings"]


def free_port_base(count: int = 1) -> int:
    """A port p such that p .. p+count-1 are free on loopback right now (``count=1``: one free port)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65000:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise PlatformError("no_free_port", f"no block of {count} free loopback port(s) found")


def scratch_settings(state_dir: Path, brokers: int = 1) -> Settings:
    """Settings of a private cluster: its own free ports and state dir, no external bootstrap."""
    return Settings(state_dir=state_dir, kafka_port_base=free_port_base(2 * brokers), bootstrap=None)


@contextmanager
def scratch_cluster(
    state_dir: Path | None = None, brokers: int = 1
) -> Iterator[tuple[LocalCluster, ClusterState]]:
    """Start a private cluster with trilink's topics; stop it and delete its data on exit.

    ``state_dir`` None uses a temporary directory removed afterwards."""
    with ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trilink-scratch-")))
        cluster = LocalCluster(scratch_settings(state_dir, brokers))
        stack.callback(cluster.down, purge=True)
        state, _ = cluster.up(brokers=brokers)
        apply_declared_topics(state.bootstrap, brokers, cluster.settings)
        yield cluster, state
