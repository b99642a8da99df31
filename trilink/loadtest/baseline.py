"""Kafka's own end-to-end latency tool on the same broker, as the yardstick for trilink's figures.

``org.apache.kafka.tools.EndToEndLatency`` produces one record, waits until its own consumer
reads it back, and repeats (one record in flight, ``acks`` as asked): the best latency a
single Kafka hop can show on this broker. trilink's path is two such hops plus an ally
service, so its ratio to this figure is the cost of the pipeline. The tool runs on a
dedicated topic that this module creates and deletes.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from trilink.loadtest.errors import LoadtestError
from trilink.settings import Settings, get_settings

BASELINE_TOPIC_PREFIX = "trilink.loadtest-baseline"
TOOL_CLASS = "org.apache.kafka.tools.EndToEndLatency"

_AVG_RE = re.compile(r"^Avg latency:\s*([0-9.]+)\s*ms\s*$", re.MULTILINE)
_PCT_RE = re.compile(
    r"^Percentiles:\s*50th\s*=\s*([0-9.]+),\s*99th\s*=\s*([0-9.]+),\s*99\.9th\s*=\s*([0-9.]+)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class BaselineResult:
    """The tool's summary (it prints whole milliseconds for the percentiles)."""

    avg_ms: float
    p50_ms: float
    p99_ms: float
    p99_9_ms: float
    num_records: int
    record_size_bytes: int
    acks: str
    kafka_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_output(text: str, num_records: int, record_size_bytes: int, acks: str = "all") -> BaselineResult:
    """Read ``Avg latency: X ms`` and ``Percentiles: 50th = A, 99th = B, 99.9th = C`` from the tool's stdout."""
    avg = _AVG_RE.search(text)
    pct = _PCT_RE.search(text)
    if avg is None or pct is None:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise LoadtestError("baseline_failed", f"EndToEndLatency printed no summary; last lines: {tail!r}")
    return BaselineResult(
        avg_ms=float(avg.group(1)),
        p50_ms=float(pct.group(1)),
        p99_ms=float(pct.group(2)),
        p99_9_ms=float(pct.group(3)),
        num_records=num_records,
        record_size_bytes=record_size_bytes,
        acks=acks,
    )


def tool_command(
    classpath: str, bootstrap: str, topic: str, *, num_records: int, record_size_bytes: int, acks: str
) -> list[str]:
    return [
        "java",
        "-cp",
        classpath,
        TOOL_CLASS,
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--num-records",
        str(num_records),
        "--producer-acks",
        acks,
        "--record-size",
        str(record_size_bytes),
    ]


def run_baseline(
    bootstrap: str,
    run_id: str,
    *,
    num_records: int,
    record_size_bytes: int,
    acks: str = "all",
    timeout_s: float = 300.0,
    settings: Settings | None = None,
) -> BaselineResult:
    """Create the dedicated topic, run the tool, parse its summary, delete the topic."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from trilink.platform.clients import admin_config
    from trilink.platform.distribution import locate
    from trilink.platform.security import client_security, java_client_properties

    settings = settings or get_settings()
    distribution = locate(settings.kafka_cache_dir, settings.kafka_home)
    topic = f"{BASELINE_TOPIC_PREFIX}-{run_id}"
    admin: Any = KafkaAdminClient(**admin_config(bootstrap, "trilink-loadtest-baseline"))
    try:
        brokers = max(len(admin.describe_cluster().get("brokers", [])), 1)
        admin.create_topics(
            [NewTopic(topic, 1, min(brokers, 3), topic_configs={"min.insync.replicas": str(min(brokers, 2))})]
        )
        command = tool_command(
            distribution.classpath,
            bootstrap,
            topic,
            num_records=num_records,
            record_size_bytes=record_size_bytes,
            acks=acks,
        )
        # On a secured cluster the Java tool logs in as admin too (an owner-only properties file).
        command += java_client_properties(
            client_security(bootstrap, "trilink-loadtest-baseline"), settings.state_dir
        )
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LoadtestError(
                "baseline_failed", f"EndToEndLatency did not finish in {timeout_s:.0f} s"
            ) from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise LoadtestError("baseline_failed", f"EndToEndLatency exited {done.returncode}: {tail}")
        result = parse_output(done.stdout, num_records, record_size_bytes, acks)
        return BaselineResult(**{**result.as_dict(), "kafka_version": distribution.version})
    finally:
        with contextlib.suppress(Exception):  # the topic may not exist if creation failed
            admin.delete_topics([topic])
        admin.close()
