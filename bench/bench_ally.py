"""Ally-service benchmark: sustainable rate, CPU share, RSS and pipeline latency of one service.

For each offered rate (events/s) a fresh service process (this script with ``--worker``: one
in-process :class:`consumers.service.AllyService` with all three channels on, one SSE viewer
reading in the driver) gets a fresh consumer group; the driver produces contract events to the
warnings topic on an **open-loop** schedule: event i is due at ``t0 + i/rate`` and carries that
*intended* time in ``trilink_sent_ns``, so a producer or service that falls behind shows up as
latency instead of silently lowering the load (no coordinated omission). One warm-up second
per step is sent without the header and is not counted. The step's figures come from the
service's own report (HdrHistogram of ``end_to_end`` per channel) and from ``/proc`` of the
service process (CPU time / wall time, resident set size).

The sustainable rate is the highest offered rate whose worst-channel p99 ``end_to_end`` stays
within the 50 ms pipeline objective and whose backlog drains. Uses ``TRILINK_BOOTSTRAP`` or starts
the local cluster (``ensure_cluster``). Prints the command and a table; asserts nothing.

Run: ``.venv/bin/python bench/bench_ally.py [--rates 1000,2000,...] [--duration 5]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from schemas import encode_event, kafka_headers, message_key  # noqa: E402
from schemas.headers import CE_ID_HEADER, SENT_NS_HEADER  # noqa: E402
from schemas.models import EventKind  # noqa: E402
from schemas.samples import sample_event  # noqa: E402
from trilink.latency import PIPELINE_P99_OBJECTIVE_S, encode_sent_ns  # noqa: E402
from trilink.platform.groups import delete_groups_at  # noqa: E402
from trilink.processes import read_stat  # noqa: E402

_PAGE_KINDS = (EventKind.TRACK_UPDATE,) * 8 + (EventKind.IMPACT_PREDICTION, EventKind.ALERT)


# ------------------------------------------------------------------ worker (the service process)


def run_worker(args: argparse.Namespace) -> int:
    import logging

    from consumers.service import AllyService

    logging.basicConfig(level=logging.WARNING)
    service = AllyService(
        args.ally,
        args.bootstrap,
        group_id=args.group,
        instance_id=f"bench-{os.getpid()}",
        audit_dir=Path(args.audit_dir),
        rebuild_per_partition=200,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    if not service.wait_ready(60):
        print("NOT-READY", flush=True)
        service.stop()
        return 1
    print(f"READY {service.http_port}", flush=True)
    stop.wait()
    service.stop()
    print(service.report().model_dump_json(), flush=True)
    return 0


# ------------------------------------------------------------------ driver


class Templates:
    """Pre-encoded events whose 36-character event id is patched per send (cheap, still valid)."""

    def __init__(self, count: int = 64) -> None:
        self.items: list[tuple[bytes, bytes, list[tuple[str, bytes]], int, int]] = []
        run = uuid.uuid4().hex[:6]
        for i in range(count):
            kind = _PAGE_KINDS[i % len(_PAGE_KINDS)]
            ev = sample_event(kind, event_id=uuid.uuid4(), correlation_key=f"BENCH-{run}-{i:03d}")
            value = encode_event(ev)
            text = str(ev.header.event_id).encode()
            at = value.index(text)
            headers = kafka_headers(ev, "/trilink/bench")
            id_index = next(n for n, (name, _v) in enumerate(headers) if name == CE_ID_HEADER)
            self.items.append((value, message_key(ev), headers, at, id_index))

    def make(self, n: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        value, key, headers, at, id_index = self.items[n % len(self.items)]
        new_id = str(uuid.uuid4()).encode()
        patched = value[:at] + new_id + value[at + 36 :]
        hdrs = list(headers)
        hdrs[id_index] = (CE_ID_HEADER, new_id)
        return patched, key, hdrs


def proc_cpu_s(pid: int) -> float:
    return read_stat(f"/proc/{pid}/stat").cpu_s


def proc_rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def http_json(port: int, path: str) -> Any:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return json.loads(body)


class SseViewer(threading.Thread):
    """One live viewer that reads everything (counts events)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.events = 0
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                self.events += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
        except OSError:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def produce_open_loop(
    producer: Any, topic: str, templates: Templates, *, rate: float, duration_s: float, stamp: bool
) -> tuple[int, float]:
    """Send ``rate * duration_s`` events on schedule; returns (sent, worst lateness of a send in s)."""
    total = int(rate * duration_s)
    t0 = time.time_ns()
    interval_ns = 1e9 / rate
    worst_late_ns = 0
    for i in range(total):
        due_ns = t0 + int(i * interval_ns)
        now = time.time_ns()
        if due_ns > now:
            time.sleep((due_ns - now) / 1e9)
        else:
            worst_late_ns = max(worst_late_ns, now - due_ns)
        value, key, headers = templates.make(i)
        if stamp:
            headers.append((SENT_NS_HEADER, encode_sent_ns(due_ns)))
        producer.send(topic, value=value, key=key, headers=headers)
    producer.flush()
    return total, worst_late_ns / 1e9


def run_step(
    bootstrap: str,
    *,
    rate: int,
    duration_s: float,
    templates: Templates,
    producer: Any,
    topic: str,
    audit_dir: Path,
) -> dict[str, Any]:
    group = f"bench-ally-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--worker",
            "--ally",
            "US",
            "--group",
            group,
            "--bootstrap",
            bootstrap,
            "--audit-dir",
            str(audit_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"worker did not start: {line}")
        port = int(line[1])
        viewer = SseViewer(port)
        viewer.start()
        produce_open_loop(
            producer, topic, templates, rate=rate, duration_s=1.0, stamp=False
        )  # warm-up, not measured
        cpu0, wall0 = proc_cpu_s(worker.pid), time.monotonic()
        sent, worst_late_s = produce_open_loop(
            producer, topic, templates, rate=rate, duration_s=duration_s, stamp=True
        )
        produced_s = time.monotonic() - wall0
        drained = False
        drain_deadline = time.monotonic() + 20
        while time.monotonic() < drain_deadline:
            health = http_json(port, "/healthz")
            if sum(health.get("lag_records", {}).values()) == 0:
                drained = True
                break
            time.sleep(0.05)
        cpu1, wall1 = proc_cpu_s(worker.pid), time.monotonic()
        rss_mb, peak_mb = proc_rss_mb(worker.pid)
        viewer.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
        delete_groups_at(bootstrap, [group], client_id="bench-ally-admin")
    report = json.loads(out.strip().splitlines()[-1])
    rows = {(r["hop"], r["channel"]): r for r in report["latency"] if r["kind"] == "*"}
    e2e = {ch: rows.get(("end_to_end", ch), {}) for ch in ("kafka", "audit", "sse")}
    return {
        "rate": rate,
        "sent": sent,
        "achieved_rate": sent / produced_s,
        "producer_worst_late_ms": worst_late_s * 1000,
        "drained": drained,
        "drain_s": wall1 - wall0 - produced_s,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "rss_mb": rss_mb,
        "peak_rss_mb": peak_mb,
        "e2e": e2e,
        "hops": {
            name: rows.get(key, {})
            for name, key in (
                ("send_to_append", ("send_to_append", "none")),
                ("append_to_receive", ("append_to_receive", "none")),
                ("receive_to_deliver_kafka", ("receive_to_deliver", "kafka")),
            )
        },
        "worst_p99_ms": max((r.get("p99_ms", 0.0) for r in e2e.values()), default=0.0),
        "delivered_kafka": sum(report["counts"]["delivered"]["kafka"].values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="250,500,1000,2000,5000,10000", help="offered events/s, ascending")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per rate")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ally", default="US", help=argparse.SUPPRESS)
    parser.add_argument("--group", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default="", help=argparse.SUPPRESS)
    parser.add_argument("--audit-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)

    import tempfile

    from kafka import KafkaProducer

    from trilink.platform.clients import producer_config
    from trilink.platform.connection import ensure_cluster
    from trilink.platform.topics import topic_name

    print(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    bootstrap, _report, _state = ensure_cluster()
    print(
        f"# python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, broker {bootstrap}; "
        f"{args.duration:g} s measured per rate after a 1 s warm-up; service = 1 process, "
        f"channels kafka+sse(1 viewer)+audit(fsync per durable point)"
    )
    rates = [int(r) for r in args.rates.split(",")]
    topic = topic_name("warnings")
    producer: Any = KafkaProducer(**producer_config(bootstrap, "trilink-bench-ally", linger_ms=1))
    templates = Templates()
    results = []
    with tempfile.TemporaryDirectory(prefix="trilink-bench-ally-") as audit_dir:
        for rate in rates:
            result = run_step(
                bootstrap,
                rate=rate,
                duration_s=args.duration,
                templates=templates,
                producer=producer,
                topic=topic,
                audit_dir=Path(audit_dir),
            )
            results.append(result)
            e2e = result["e2e"]
            print(
                f"rate {rate:>6}/s  achieved {result['achieved_rate']:>8.0f}/s  drained {result['drained']!s:>5} "
                f"(+{result['drain_s']:.2f} s)  cpu {result['cpu_share']:>5.0%}  rss {result['rss_mb']:>5.0f} MiB "
                f"(peak {result['peak_rss_mb']:.0f})  e2e p50/p99 ms: "
                + "  ".join(
                    f"{ch} {e2e[ch].get('p50_ms', 0):.1f}/{e2e[ch].get('p99_ms', 0):.1f}"
                    for ch in ("kafka", "audit", "sse")
                ),
                flush=True,
            )
            print(
                "             hops p50/p99 ms: "
                + "  ".join(
                    f"{name} {row.get('p50_ms', 0):.1f}/{row.get('p99_ms', 0):.1f}"
                    for name, row in result["hops"].items()
                )
                + f"  producer worst lateness {result['producer_worst_late_ms']:.0f} ms",
                flush=True,
            )
            for path in Path(audit_dir).glob("*.jsonl"):
                path.unlink()
    producer.close()
    objective_ms = PIPELINE_P99_OBJECTIVE_S * 1000
    ok = [r["rate"] for r in results if r["drained"] and r["worst_p99_ms"] <= objective_ms]
    first_bad = next(
        (r["rate"] for r in results if not (r["drained"] and r["worst_p99_ms"] <= objective_ms)), None
    )
    print(
        f"# sustained: {max(ok) if ok else 'none'} events/s with worst-channel p99 end_to_end <= {objective_ms:.0f} ms"
        + (f" (first rate over: {first_bad}/s)" if first_bad else " (no tested rate went over)")
    )
    for r in results:
        if r["rate"] in (1000, 10000):
            print(
                f"# at {r['rate']}/s: cpu share {r['cpu_share']:.0%} of one core, rss {r['rss_mb']:.0f} MiB"
            )
        if r["rate"] == 1000:
            k = r["e2e"]["kafka"]
            print(
                f"# at 1000/s: end_to_end kafka p50 {k.get('p50_ms', 0):.2f} ms, p99 {k.get('p99_ms', 0):.2f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
