"""Subcommands ``trilink record`` and ``trilink replay`` (issue #6)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from trilink.errors import ConfigError
from trilink.replay.errors import ReplayError
from trilink.replay.format import SHIPPED_DIR

if TYPE_CHECKING:
    from trilink.progress import NullProgress, Progress
    from trilink.replay.recorder import Recorder
    from trilink.replay.replayer import Replayer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``record`` and ``replay`` to ``trilink``."""
    r = subparsers.add_parser(
        "record",
        help="record the warning topics into Avro container files",
        description="Consume the warning and sensor-status topics (no consumer group: allies are not "
        "disturbed) into deflate-compressed Avro object container files, rolled by size or time. "
        "Original key, value and header bytes are kept; undecodable records are kept and flagged.",
    )
    r.add_argument("--out", type=Path, default=Path("recordings-local"), help="output directory")
    r.add_argument("--name", help="file name prefix (default rec-<UTC time>); files are NAME.NNNN.avro")
    r.add_argument("--topic", action="append", default=[], metavar="ROLE_OR_NAME", help="topic (repeatable)")
    _add_filters(r, missile=False)
    r.add_argument("--from-beginning", action="store_true", help="start at the beginning (default: the end)")
    r.add_argument("--until-idle", type=float, metavar="SECONDS", help="stop after this long without records")
    r.add_argument(
        "--until-end", action="store_true", help="stop once caught up with the end offsets of the start"
    )
    r.add_argument("--max-records", type=int, metavar="N", help="stop after N records written")
    r.add_argument("--max-bytes", type=int, metavar="BYTES", help="start a new file at this size")
    r.add_argument("--max-seconds", type=float, metavar="SECONDS", help="start a new file after this long")
    r.add_argument("--flush-records", type=int, default=100, metavar="N", help="end a block every N records")
    r.add_argument(
        "--flush-seconds", type=float, default=1.0, metavar="S", help="end a block after S seconds"
    )
    r.add_argument(
        "--sync-interval", type=int, default=64 * 1024, metavar="BYTES", help="largest block, bytes"
    )
    r.add_argument(
        "--bootstrap", help="host:port of the cluster (default: TRILINK_BOOTSTRAP or `trilink up`)"
    )
    _add_progress_option(r)
    r.set_defaults(handler=record_handler)

    p = subparsers.add_parser(
        "replay",
        help="re-emit recordings with their original timing",
        description="Send recorded records again with their original inter-event timing (or as fast as "
        "possible), same key and headers, a fresh send-time header. With no FILE, every shipped "
        f"recording in {SHIPPED_DIR}; a bare name (single_srbm) means a shipped recording.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="recording files or shipped names")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="speed factor (default 1 = original timing)")
    pace.add_argument("--fast", action="store_true", help="as fast as possible, no pacing")
    p.add_argument("--rebase", action="store_true", help="shift event times so the replay happens now")
    _add_filters(p, missile=True)
    p.add_argument(
        "--topic-map", action="append", default=[], metavar="FROM=TO", help="send FROM's records to TO"
    )
    p.add_argument(
        "--timeline",
        choices=("send", "broker", "event"),
        default="send",
        help="original timing from the send-time header (default; broker timestamp when absent), "
        "the broker timestamp, or the events' emitted_at",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--bootstrap", help="host:port of the cluster (default: TRILINK_BOOTSTRAP or `trilink up`)"
    )
    _add_progress_option(p)
    p.set_defaults(handler=replay_handler)


def _add_filters(parser: argparse.ArgumentParser, *, missile: bool) -> None:
    group = parser.add_argument_group("filters (repeatable; values of one option are OR-ed)")
    group.add_argument("--kind", action="append", default=[], help="event kind, e.g. alert")
    group.add_argument("--nation", action="append", default=[], help="sensor nation: US, JP or KR")
    group.add_argument("--sensor", action="append", default=[], help="sensor id")
    if missile:
        group.add_argument(
            "--missile",
            action="append",
            default=[],
            metavar="CORRELATION_KEY",
            help="correlation key (any run)",
        )


def _add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no live status line (terminal) or periodic progress lines (stderr otherwise)",
    )


def _replay_progress(
    replayer: Replayer, planned: int, span_s: float, speed: float | None, enabled: bool
) -> Progress | NullProgress:
    """Sent of planned, rate, ETA (the schedule's on a paced replay) and, when ally services
    are announced on this machine, what each delivered since the replay began."""
    from trilink.progress import AllyMetricsProbe, DeliveredSince, NullProgress, Progress, Status

    if not enabled:
        return NullProgress()
    allies = DeliveredSince(AllyMetricsProbe.announced())
    started: list[float] = []

    def status() -> Status:
        live = replayer.live_report
        if live is None:
            return Status(phase="connecting", sent=0, total=planned)
        if not started:
            started.append(time.monotonic())
        delivered, lag_s = allies.read()
        finished = live.wall_s > 0
        eta_s = (
            None if speed is None or finished else max(span_s / speed - (time.monotonic() - started[0]), 0.0)
        )
        return Status(
            phase="replaying",
            sent=live.sent,
            total=planned,
            delivered=delivered,
            lag_s=lag_s,
            eta_s=eta_s,
            detail=f"acknowledged {live.acknowledged}, failed {live.failed}",
        )

    return Progress(status, label="replay")


def _record_progress(recorder: Recorder, max_records: int | None, enabled: bool) -> Progress | NullProgress:
    """Records written (of ``--max-records``), rate, received and filtered out."""
    from trilink.progress import NullProgress, Progress, Status

    if not enabled:
        return NullProgress()

    def status() -> Status:
        live = recorder.live_report
        if live is None:
            return Status(phase="positioning", unit="written")
        return Status(
            phase="recording",
            sent=live.written,
            total=max_records,
            unit="written",
            detail=f"received {live.received}, filtered out {live.filtered_out}",
        )

    return Progress(status, label="record")


def _bootstrap(args: argparse.Namespace) -> str:
    if args.bootstrap:
        return str(args.bootstrap)
    from trilink.platform.state import bootstrap_servers

    return bootstrap_servers()


def _on_signals(stop: Callable[[], None]) -> None:
    def _handler(signum: int, frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def _topic(name: str) -> str:
    """A role (``warnings``) or a topic name, as a topic name."""
    from trilink.platform.topics import topic_name

    try:
        return topic_name(name)
    except ConfigError:
        return name


def _positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise ReplayError("bad_option", f"{option} must be positive, got {value:g}")


def record_handler(args: argparse.Namespace) -> int:
    """Run ``trilink record``."""
    from trilink.replay.format import RecordingWriter
    from trilink.replay.recorder import MessageFilter, Recorder

    for value, option in (
        (args.until_idle, "--until-idle"),
        (args.max_records, "--max-records"),
        (args.max_bytes, "--max-bytes"),
        (args.max_seconds, "--max-seconds"),
        (args.flush_records, "--flush-records"),
        (args.flush_seconds, "--flush-seconds"),
        (args.sync_interval, "--sync-interval"),
    ):
        _positive(value, option)
    message_filter = MessageFilter.build(args.kind, args.nation, args.sensor)
    name = args.name or datetime.now(UTC).strftime("rec-%Y%m%dT%H%M%SZ")
    writer = RecordingWriter(
        args.out,
        name,
        metadata={"trilink.recorded_by": "trilink record"},
        max_bytes=args.max_bytes,
        max_seconds=args.max_seconds,
        flush_records=args.flush_records,
        flush_interval_s=args.flush_seconds,
        sync_interval_bytes=args.sync_interval,
    )
    bootstrap = _bootstrap(args)
    topics = [_topic(t) for t in args.topic] or None
    recorder = Recorder(
        bootstrap, writer, topics=topics, message_filter=message_filter, from_beginning=args.from_beginning
    )
    _on_signals(recorder.stop)
    print(
        f"recording {', '.join(recorder.topics)} from {bootstrap} "
        f"({'from the beginning' if args.from_beginning else 'from now'}) into {args.out}/{name}.NNNN.avro",
        flush=True,
    )
    try:
        with _record_progress(recorder, args.max_records, not args.no_progress):
            report = recorder.run(
                until_idle_s=args.until_idle, max_records=args.max_records, until_end=args.until_end
            )
    finally:
        recorder.close()
    print(report.line())
    for path in writer.files:
        print(f"  {path} ({path.stat().st_size} bytes)")
    return 0


def _topic_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise ReplayError("bad_option", f"--topic-map {pair!r}: expected FROM=TO")
        mapping[_topic(source)] = _topic(target)
    return mapping


def replay_handler(args: argparse.Namespace) -> int:
    """Run ``trilink replay``: read, plan, (rebase), send, report; damaged files give exit 1."""
    from trilink.replay.format import read_recording, resolve_recordings
    from trilink.replay.recorder import MessageFilter
    from trilink.replay.replayer import Replayer, plan_replay, prepare_sends

    speed = None if args.fast else args.speed
    _positive(speed, "--speed")
    message_filter = MessageFilter.build(args.kind, args.nation, args.sensor, args.missile)
    topic_map = _topic_map(args.topic_map)
    paths = resolve_recordings(args.files)
    recordings = [read_recording(path) for path in paths]
    plan = plan_replay(recordings, message_filter, topic_map, args.timeline)
    sends = prepare_sends(plan, rebase=args.rebase)
    bootstrap = _bootstrap(args)
    if not args.json:
        pace = "as fast as possible" if speed is None else f"x{speed:g}"
        print(
            f"replaying {len(sends)} of {plan.records_read} record(s) from {len(paths)} file(s) "
            f"({plan.span_s:.1f} s of original time, {pace}{', rebased to now' if args.rebase else ''}) "
            f"-> {bootstrap}"
            + (f"; {len(plan.damages)} damaged file(s), see the end" if plan.damages else ""),
            flush=True,
        )
    replayer = Replayer(bootstrap)
    _on_signals(replayer.stop)
    try:
        with _replay_progress(replayer, len(sends), plan.span_s, speed, not args.no_progress):
            report = replayer.replay(sends, speed, plan=plan)
    finally:
        replayer.close()
    if args.json:
        document = {
            "files": [str(p) for p in paths],
            "sent": report.sent,
            "acknowledged": report.acknowledged,
            "failed": report.failed,
            "filtered_out": report.filtered_out,
            "duplicates_skipped": report.duplicates_skipped,
            "by_kind": report.by_kind,
            "undecodable_sent": report.undecodable_sent,
            "wall_s": round(report.wall_s, 3),
            "rate_per_s": round(report.rate_per_s, 1),
            "timing_error_us": None
            if report.fidelity is None
            else {
                "p50": report.fidelity.p50_us,
                "p99": report.fidelity.p99_us,
                "max": report.fidelity.max_us,
            },
            "interrupted": report.interrupted,
            "damaged": [{"reason": d.reason, "message": d.message} for d in plan.damages],
        }
        print(json.dumps(document, sort_keys=True))
    else:
        for line in report.lines():
            print(line)
    for damage in plan.damages:
        print(f"trilink: warning {damage}", file=sys.stderr)
    if plan.damages or report.failed or report.interrupted:
        return 1
    return 0
