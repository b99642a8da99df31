"""Record a published scenario, replay it into a fresh cluster, and compare what the allies got.

The proof of issue #6's promise: on the session broker, three ally services (one per nation,
one process each, their own consumer groups) receive a published ``single_srbm`` run while ``Recorder`` records
it; a private second cluster is started, three fresh ally services are started on it, and the
recording is replayed there as fast as possible. For every ally, the sequence of event ids it
delivered on its ally topic for every correlation key must be the same on both clusters; the
raw warning and sensor-status topics are compared the same way.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.fleet import AllyFleet
from producers.publisher import Run, SensorPublisher, for_run
from producers.scenario import load_scenario, simulate
from schemas import decode_event
from schemas.models import Nation
from tests.conftest import local_settings
from trilink.cli import main
from trilink.platform.clients import consumer_config
from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import apply_declared_topics
from trilink.platform.topics import topic_name
from trilink.replay.format import RecordingWriter, read_recording, resolve_recordings
from trilink.replay.recorder import Recorder
from trilink.replay.replayer import Replayer, plan_replay, prepare_sends

pytestmark = pytest.mark.integration

ALLIES = (Nation.US, Nation.JP, Nation.KR)
Offsets = dict[tuple[str, int], int]


@pytest.fixture(scope="module")
def fresh_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second, private single-node cluster with trilink's topics and nothing on them."""
    settings = local_settings(tmp_path_factory.mktemp("fresh-kafka"))
    cluster = LocalCluster(settings)
    state, _ = cluster.up(brokers=1)
    try:
        apply_declared_topics(state.bootstrap, 1, settings)
        _warm_group_coordinator(state.bootstrap)
        yield state.bootstrap
    finally:
        cluster.down(purge=True)


def _warm_group_coordinator(bootstrap: str) -> None:
    """Join one throw-away group so the new cluster creates its offsets topic now, not while
    three ally services race to join their groups."""
    from kafka import KafkaConsumer

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, "replay-test-warmup", "replay-test-warmup"))
    try:
        consumer.subscribe([topic_name("smoke")])
        deadline = time.monotonic() + 60
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
    finally:
        consumer.close()


def _end_offsets(bootstrap: str, topics: list[str]) -> Offsets:
    from kafka import KafkaConsumer, TopicPartition

    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "replay-test-ends"))
    try:
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): int(o) for tp, o in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def _read(bootstrap: str, topics: list[str], since: Offsets) -> dict[str, list[tuple[str, int, str]]]:
    """Every record of ``topics`` from ``since`` (default 0) up to the current end, per key:
    (topic, partition, event id)."""
    from kafka import KafkaConsumer, TopicPartition

    ends = _end_offsets(bootstrap, topics)
    consumer: Any = KafkaConsumer(**consumer_config(bootstrap, None, "replay-test-read"))
    per_key: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    try:
        parts = [TopicPartition(t, p) for (t, p) in ends if ends[(t, p)] > since.get((t, p), 0)]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, since.get((tp.topic, tp.partition), 0))
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[(tp.topic, tp.partition)] for tp in parts):
            assert time.monotonic() < deadline, "topics did not read to their end in 30 s"
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    if r.offset < ends[(r.topic, r.partition)]:
                        event_id = str(decode_event(r.value).header.event_id)
                        per_key[r.key.decode()].append((r.topic, r.partition, event_id))
    finally:
        consumer.close()
    return per_key


def _wait_until(condition: Callable[[], bool], timeout_s: float, failure: str) -> None:
    """Poll ``condition`` until it holds; fail with ``failure`` when ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def _start_allies(bootstrap: str, offset_reset: str) -> AllyFleet:
    """The three services, one process each (as ``trilink run`` runs them)."""
    tag = uuid.uuid4().hex[:8]
    fleet = AllyFleet(
        bootstrap,
        {ally.value: f"replay-test-{ally.value}-{tag}" for ally in ALLIES},
        f"replay-test-{tag}",
        offset_reset=offset_reset,
    )
    fleet.start()
    return fleet


def _finish(fleet: AllyFleet, expected: int) -> None:
    try:
        assert fleet.wait_settled({ally.value: expected for ally in ALLIES}, timeout_s=60), fleet.settled()
    finally:
        reports = fleet.stop()
    for ally in ALLIES:
        assert reports[ally.value].error is None, reports[ally.value].error


def _ally_sequences(
    per_key: dict[str, list[tuple[str, int, str]]], ally: Nation, ours: set[str]
) -> dict[str, list[str]]:
    topic = topic_name(f"ally.{ally.value}")
    out = {}
    for key, items in per_key.items():
        ids = [event_id for t, _, event_id in items if t == topic and event_id in ours]
        if ids:
            out[key] = ids
    return out


def test_replay_into_a_fresh_cluster_gives_every_ally_the_same_sequences(
    kafka_bootstrap: str, fresh_bootstrap: str, tmp_path: Path
) -> None:
    scenario = load_scenario("single_srbm")
    run = Run.new()
    events = list(for_run(simulate(scenario), run, scenario.start_time))
    ours = {str(e.event.header.event_id) for e in events}
    topics = [topic_name(r) for r in ("warnings", "sensor_status", "ally.US", "ally.JP", "ally.KR")]

    # --- the original run, recorded, with three allies watching ---------------------------
    before = _end_offsets(kafka_bootstrap, topics)
    originals = _start_allies(kafka_bootstrap, "latest")
    writer = RecordingWriter(tmp_path, "original", flush_records=50)
    recorder = Recorder(kafka_bootstrap, writer)
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(recorder.run(max_records=len(events), timeout_s=60))
    )
    thread.start()
    publisher = SensorPublisher(kafka_bootstrap, client_id="replay-test-sensors")
    try:
        published = publisher.publish(events, speed=None)
    finally:
        publisher.close()
        thread.join()
        recorder.close()
    assert published.acknowledged == len(events)
    assert outcome[0].written == len(events), outcome[0].line()
    _finish(originals, len(events))
    original = _read(kafka_bootstrap, topics, before)

    # --- the replay into an empty cluster, three fresh allies ---------------------------------
    replayed_allies = _start_allies(fresh_bootstrap, "earliest")
    recordings = [read_recording(p) for p in writer.files]
    assert all(r.damage is None for r in recordings)
    plan = plan_replay(recordings)
    replayer = Replayer(fresh_bootstrap, client_id="replay-test-replay")
    try:
        report = replayer.replay(prepare_sends(plan), speed=None, plan=plan)
    finally:
        replayer.close()
    assert report.sent == report.acknowledged == len(events)
    # fresh allies read from the beginning: whatever other tests of this module put on the
    # input topics of this cluster first is received too
    inputs = [topic_name("warnings"), topic_name("sensor_status")]
    _finish(replayed_allies, sum(_end_offsets(fresh_bootstrap, inputs).values()))
    replayed = _read(fresh_bootstrap, topics, {})

    # --- the comparison -----------------------------------------------------------------------
    for ally in ALLIES:
        want = _ally_sequences(original, ally, ours)
        got = _ally_sequences(replayed, ally, ours)
        assert want, f"{ally} delivered nothing in the original run"
        assert got == want, f"{ally}: per-missile sequences differ after the replay"
    for role in ("warnings", "sensor_status"):
        topic = topic_name(role)
        want_raw = {k: [i for t, _, i in v if t == topic and i in ours] for k, v in original.items()}
        got_raw = {k: [i for t, _, i in v if t == topic and i in ours] for k, v in replayed.items()}
        assert {k: v for k, v in got_raw.items() if v} == {k: v for k, v in want_raw.items() if v}
    missiles = [k for k in original if k.endswith(f":{run.run_id}")]
    assert missiles  # the per-missile keys are there, not only sensor heartbeats


def test_cli_replays_the_readable_prefix_of_a_truncated_recording(
    fresh_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [shipped] = resolve_recordings(["single_srbm"])
    whole = read_recording(shipped)
    cut = tmp_path / "cut.avro"
    cut.write_bytes(shipped.read_bytes()[: shipped.stat().st_size * 2 // 3])
    readable = read_recording(cut)
    assert readable.damage is not None and 0 < len(readable.messages) < len(whole.messages)
    smoke = topic_name("smoke")
    args = [
        "replay",
        str(cut),
        "--fast",
        "--bootstrap",
        fresh_bootstrap,
        "--json",
        "--topic-map",
        f"warnings={smoke}",
        "--topic-map",
        f"sensor_status={smoke}",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["sent"] == report["acknowledged"] == len(readable.messages)
    assert "Traceback" not in captured.err
    [warning] = [line for line in captured.err.splitlines() if line.startswith("trilink: warning")]
    assert "[truncated_recording]" in warning and str(cut) in warning
    assert f"at byte {readable.damage_at_byte}" in warning
    assert f"read {len(readable.messages)} record(s)" in warning


def test_cli_paced_filtered_rebased_replay(fresh_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    smoke = topic_name("smoke")
    args = [
        "replay",
        "single_srbm",
        "--speed",
        "40",
        "--rebase",
        "--kind",
        "launch_detection",
        "--bootstrap",
        fresh_bootstrap,
        "--json",
        "--topic-map",
        f"warnings={smoke}",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    launches = sum(
        1
        for m in read_recording(resolve_recordings(["single_srbm"])[0]).messages
        if m.kind == "launch_detection"
    )
    assert report["sent"] == report["acknowledged"] == launches > 0
    assert report["by_kind"] == {"launch_detection": launches}
    assert report["filtered_out"] == 520 - launches
    assert report["timing_error_us"]["max"] >= report["timing_error_us"]["p50"]  # measured, not asserted


def _new_topic(bootstrap: str, prefix: str, *, partitions: int) -> str:
    """Create a private topic (replication 1) and return its name."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin: Any = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="replay-test-admin")
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    return topic


def test_cli_record_filters_and_rolls(
    fresh_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = _new_topic(fresh_bootstrap, "replay-test-cli", partitions=3)
    mapping = ["--topic-map", f"warnings={topic}", "--topic-map", f"sensor_status={topic}"]
    assert main(["replay", "single_srbm", "--fast", "--bootstrap", fresh_bootstrap, *mapping]) == 0
    args = [
        "record",
        "--bootstrap",
        fresh_bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--until-end",
        "--kind",
        "track_update",
        "--max-bytes",
        "30000",
        "--out",
        str(tmp_path),
        "--name",
        "cli",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    shipped = read_recording(resolve_recordings(["single_srbm"])[0]).messages
    want = sorted(m.event_id or "" for m in shipped if m.kind == "track_update")
    files = sorted(tmp_path.glob("cli.*.avro"))
    assert len(files) > 1 and all(p.stat().st_size <= 30_000 for p in files)
    got = [m for p in files for m in read_recording(p).messages]
    assert sorted(m.event_id or "" for m in got) == want
    assert {m.topic for m in got} == {topic} and {m.kind for m in got} == {"track_update"}
    assert f"recorded {len(want)} of {len(shipped)} record(s)" in out


def test_sigterm_closes_the_recording_cleanly(fresh_bootstrap: str, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    # The records are on a private one-partition topic before the recorder starts, so its first
    # fetch from the beginning holds all of them: the file it opens on its first record says the
    # whole batch is in hand, and SIGTERM stops it only after the batch in hand.
    topic = _new_topic(fresh_bootstrap, "replay-test-term", partitions=1)
    assert (
        main(
            [
                "replay",
                "single_srbm",
                "--fast",
                "--bootstrap",
                fresh_bootstrap,
                "--kind",
                "alert",
                "--kind",
                "launch_detection",
                "--topic-map",
                f"warnings={topic}",
            ]
        )
        == 0
    )
    args = [
        sys.executable,
        "-m",
        "trilink.cli",
        "record",
        "--bootstrap",
        fresh_bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--out",
        str(tmp_path),
        "--name",
        "term",
        "--flush-records",
        "1000",
        "--flush-seconds",
        "600",
    ]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("recording ")  # assigned and positioned at the beginning
        # it has received; its only block is still open (no flush for 600 s)
        _wait_until(lambda: any(tmp_path.glob("term.*.avro")), 30, "trilink record opened no file in 30 s")
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert "stopped: signal" in out
    [path] = tmp_path.glob("term.*.avro")
    recording = read_recording(path)
    assert recording.damage is None
    assert {m.kind for m in recording.messages} == {"launch_detection"}  # single_srbm has no alert
    assert len(recording.messages) == 7
