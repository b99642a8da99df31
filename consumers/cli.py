"""``trilink ally US|JP|KR``: run one instance of an ally's service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from consumers.dedup import DEFAULT_CAPACITY
from consumers.sse import DEFAULT_QUEUE_SIZE
from trilink.errors import ConfigError

_STATIC_HELP = (
    "join the consumer group as a static member named by --instance-id (required): a "
    "supervisor that restarts this process after a crash (systemd, Kubernetes) gets its "
    "partitions back at once, not after the dead process's 10 s session; a clean stop leaves "
    "the group"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ally",
        help="run an ally's service: filter its warnings and fan them out (Kafka, SSE, audit)",
        description=(
            "Consume the shared warning topics (hub topology: its own feed) in the ally's consumer group, deliver what the "
            "sharing policy releases to it on its Kafka topic, a live SSE stream (/stream) and an "
            "audit file, serve /metrics and /healthz. Stops cleanly on SIGTERM or SIGINT."
        ),
    )
    parser.add_argument(
        "ally", choices=["US", "JP", "KR"], type=str.upper, help="the ally this service serves"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=0,
        help="HTTP port for /stream, /metrics, /healthz (0 = any free port)",
    )
    parser.add_argument("--no-http", action="store_true", help="serve no HTTP (no SSE channel, no /metrics)")
    parser.add_argument(
        "--audit-dir", type=Path, default=None, help="write the audit file here (default: no audit channel)"
    )
    parser.add_argument(
        "--instance-id", default=None, help="name of this instance (audit file name, client id)"
    )
    parser.add_argument("--group", default=None, help="consumer group (default trilink-ally-<ally>)")
    parser.add_argument("--static", action="store_true", help=_STATIC_HELP)
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start each newly assigned partition at its first record",
    )
    parser.add_argument(
        "--dedup-window",
        type=int,
        default=DEFAULT_CAPACITY,
        help="event ids remembered to suppress duplicates",
    )
    parser.add_argument(
        "--sse-queue",
        type=int,
        default=DEFAULT_QUEUE_SIZE,
        help="events queued per live subscriber (drop-oldest)",
    )
    parser.set_defaults(handler=handler)

    hub = subparsers.add_parser(
        "hub",
        help="run the US hub (hub topology): release each nation's ingest records to the allies' feeds",
        description=(
            "Consume every nation's ingest topic in the hub's consumer group, apply the sharing "
            "policy per kind and write each releasable record to the feed of every ally it is "
            "released to (same key, partition and headers, plus the hub's hop timestamps); "
            "dead-letter what cannot be routed; serve /metrics and /healthz. At-least-once: "
            "ingest offsets are committed once every feed write under them is acknowledged. "
            "Stops cleanly on SIGTERM or SIGINT."
        ),
    )
    hub.add_argument(
        "--http-port", type=int, default=0, help="HTTP port for /metrics, /healthz (0 = any free port)"
    )
    hub.add_argument("--no-http", action="store_true", help="serve no HTTP")
    hub.add_argument("--group", default=None, help="consumer group (default trilink-hub)")
    hub.add_argument("--instance-id", default=None, help="name of this instance (client id)")
    hub.add_argument("--static", action="store_true", help=_STATIC_HELP)
    hub.add_argument(
        "--route-on-headers",
        action="store_true",
        help="route on the validated CloudEvents headers and the ingest topic's nation without "
        "decoding the Avro body (cheaper; a mislabelled kind is then caught only at the ally)",
    )
    hub.add_argument(
        "--from-earliest", action="store_true", help="a new group starts at the ingest topics' beginning"
    )
    hub.set_defaults(handler=hub_handler)


def _static_member(args: argparse.Namespace) -> bool:
    """``--static``, checked: a static identity must survive a restart, so it is never made up."""
    if args.static and not args.instance_id:
        raise ConfigError("static_needs_instance_id", "--static needs --instance-id (the member's identity)")
    return bool(args.static)


def hub_handler(args: argparse.Namespace) -> int:
    from consumers.hub import HubService
    from trilink.platform.state import bootstrap_servers

    static_member = _static_member(args)
    service = HubService(
        bootstrap_servers(),
        group_id=args.group,
        instance_id=args.instance_id,
        http_port=None if args.no_http else args.http_port,
        verify_body=not args.route_on_headers,
        offset_reset="earliest" if args.from_earliest else "latest",
        static_member=static_member,
    )
    mode = "headers" if args.route_on_headers else "decoded body"
    return _serve_until_signalled(
        service,
        "trilink hub",
        lambda: (
            f"group {service.group_id}, instance {service.instance_id}, routing on the {mode}, "
            f"reading {', '.join(service.input_topics)}"
        ),
    )


def handler(args: argparse.Namespace) -> int:
    from consumers.service import AllyService
    from trilink.platform.state import bootstrap_servers

    static_member = _static_member(args)
    service = AllyService(
        args.ally,
        bootstrap_servers(),
        group_id=args.group,
        instance_id=args.instance_id,
        http_port=None if args.no_http else args.http_port,
        audit_dir=args.audit_dir,
        from_beginning=args.from_beginning,
        dedup_capacity=args.dedup_window,
        sse_queue_size=args.sse_queue,
        static_member=static_member,
    )

    def banner() -> str:
        where = f"http://{service._http_host}:{service.http_port}" if service.http_port else "no HTTP"
        return f"group {service.group_id}, instance {service.instance_id}, {where}, audit {service.audit_path or 'off'}"

    return _serve_until_signalled(service, f"trilink ally {service.ally.value}", banner)


def _serve_until_signalled(service: Any, name: str, banner: Callable[[], str]) -> int:
    """Start ``service``, print ``name: banner()`` and its HTTP port, run until SIGTERM/SIGINT or
    until the service stops, then stop it and restore the signal handlers (ally and hub alike)."""
    from trilink.runtime import tune_service

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        service.request_stop()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        tune_service()
        print(f"{name}: {banner()}", flush=True)
        if service.http_port is not None:
            print(f"http_port={service.http_port}", flush=True)
        while not stop.wait(0.5) and service.running:
            pass
    finally:
        service.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
    service.raise_if_failed()
    print(f"{name}: stopped cleanly", file=sys.stderr)
    return 0
