"""The recording file format: round trip, rolling, crash and truncation recovery, bad input."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastavro import writer as avro_writer

from trilink.replay.errors import RecordingError, ReplayError
from trilink.replay.format import (
    RecordedMessage,
    RecordingWriter,
    capture,
    read_recording,
    resolve_recordings,
)
from trilink.replay.recorder import MessageFilter

from .support import WARNINGS, rows, write_recording

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_keeps_bytes_and_conveniences(tmp_path: Path) -> None:
    messages = rows(120)
    [path] = write_recording(tmp_path, messages)
    recording = read_recording(path)
    assert recording.damage is None
    assert recording.messages == messages
    assert recording.blocks_read == 5  # 120 rows, a block every 25
    assert recording.metadata["avro.codec"] == "deflate"
    assert recording.metadata["trilink.recording.format"] == "1"
    first = recording.messages[0]
    assert first.kind == "sensor_status" and first.sensor_id and first.event_id
    assert first.decode_error is None
    assert first.timestamp_type == "LOG_APPEND_TIME"


def test_shipped_recordings_are_small_and_whole() -> None:
    for name in ("single_srbm", "irbm_over_japan"):
        paths = resolve_recordings([name])
        assert paths, name
        total = 0
        for path in paths:
            assert path.stat().st_size < 1_000_000
            recording = read_recording(path)
            assert recording.damage is None
            assert all(m.decode_error is None for m in recording.messages)
            total += len(recording.messages)
        assert total > 100


def _cut_points(data: bytes) -> list[int]:
    """Cuts through the header, and around each block end and in the middle of each block."""
    sync = data[-16:]
    ends = [i + 16 for i in range(len(data) - 15) if data[i : i + 16] == sync]
    header_end = ends[0]
    points = {*range(0, header_end, 61), *range(header_end - 20, header_end + 2)}
    for start, end in itertools.pairwise(ends):
        points.update({start + 1, start + 2, (start + end) // 2, end - 17, end - 16, end - 1, end})
    return sorted(p for p in points if p < len(data))


def _header_complete(path: Path, data: bytes) -> bool:
    """False (checked) when the cut leaves no complete header: the typed error says so."""
    try:
        read_recording(path)
    except RecordingError as caught:
        reason = caught.reason
    else:
        return True
    expected = "not_a_recording" if not data else "truncated_recording"
    assert reason == expected, (len(data), reason)
    return False


def test_truncation_recovers_the_complete_blocks(tmp_path: Path) -> None:
    messages = rows(60)
    [path] = write_recording(tmp_path, messages, flush_records=10)
    data = path.read_bytes()
    assert read_recording(path).blocks_read == 6
    readable_from = None
    cut = tmp_path / "cut.avro"
    for size in _cut_points(data):
        cut.write_bytes(data[:size])
        if readable_from is None and size < len(data) and not _header_complete(cut, data[:size]):
            continue
        recording = read_recording(cut)
        readable_from = readable_from or size
        got = recording.messages
        assert got == messages[: len(got)], size
        assert len(got) % 10 == 0
        if recording.damage is None:
            continue  # a cut exactly at a block end looks like a shorter, clean file
        assert recording.damage.reason == "truncated_recording"
        text = str(recording.damage)
        assert str(cut) in text
        assert f"at byte {recording.damage_at_byte}" in text
        assert f"read {len(got)} record(s)" in text
        assert f"lost the last {size - (recording.damage_at_byte or 0)} byte(s)" in text
    assert readable_from is not None


def test_header_cut_is_a_typed_error(tmp_path: Path) -> None:
    [path] = write_recording(tmp_path, rows(5))
    cut = tmp_path / "cut.avro"
    cut.write_bytes(path.read_bytes()[:40])
    with pytest.raises(RecordingError) as caught:
        read_recording(cut)
    assert caught.value.reason == "truncated_recording"
    assert "no record is readable" in str(caught.value)


@pytest.mark.parametrize("where", ["payload", "sync"])
def test_corrupt_block_keeps_the_blocks_before_it(tmp_path: Path, where: str) -> None:
    messages = rows(50)
    [path] = write_recording(tmp_path, messages, flush_records=10)
    data = bytearray(path.read_bytes())
    recording = read_recording(path)
    sync = data[-16:]
    # the third block ends with the third sync marker after the header's one
    positions = [i for i in range(len(data) - 15) if data[i : i + 16] == sync]
    third_end = positions[3]
    offset = third_end - 20 if where == "payload" else third_end + 3
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    recording = read_recording(path)
    assert recording.damage is not None
    assert recording.damage.reason in ("corrupt_recording", "truncated_recording")
    assert recording.messages == messages[: len(recording.messages)]
    assert len(recording.messages) == 20


def test_not_a_recording(tmp_path: Path) -> None:
    text = tmp_path / "notes.json"
    text.write_text(json.dumps({"hello": 1}))
    empty = tmp_path / "empty.avro"
    empty.write_bytes(b"")
    other = tmp_path / "other.avro"
    with other.open("wb") as fo:
        avro_writer(
            fo, {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}, [{"x": 1}]
        )
    for path, phrase in (
        (text, "not an Avro object container"),
        (empty, "empty"),
        (other, "'Other' records"),
    ):
        with pytest.raises(RecordingError) as caught:
            read_recording(path)
        assert caught.value.reason == "not_a_recording"
        assert phrase in str(caught.value)
    with pytest.raises(RecordingError) as missing:
        read_recording(tmp_path / "nope.avro")
    assert missing.value.reason == "missing_recording"


def test_undecodable_record_is_kept_and_flagged(tmp_path: Path) -> None:
    good = rows(1)[0]
    broken = capture(
        topic=WARNINGS,
        partition=3,
        offset=7,
        timestamp_ms=1,
        timestamp_type=1,
        key=b"k",
        value=b"\xc3\x01" + (0x1234).to_bytes(8, "little") + b"body",
        headers=good.headers,
        received_ns=5,
        origin_ns=0,
    )
    assert broken.decode_error == "unknown_fingerprint"
    assert broken.fingerprint == 0x1234
    assert broken.kind == good.kind and broken.event_id == good.event_id  # from the ce_* headers
    garbage = capture(
        topic=WARNINGS,
        partition=0,
        offset=0,
        timestamp_ms=1,
        timestamp_type=0,
        key=None,
        value=b"garbage",
        headers=None,
        received_ns=5,
        origin_ns=0,
    )
    assert garbage.decode_error == "bad_magic" and garbage.kind is None
    assert garbage.emit_offset_us == 1000  # no send-time header: broker timestamp, 1 ms
    [path] = write_recording(tmp_path, [broken, garbage])
    assert read_recording(path).messages == [broken, garbage]


def test_rolls_by_size_without_exceeding_it(tmp_path: Path) -> None:
    messages = rows(200)
    files = write_recording(tmp_path, messages, max_bytes=20_000)
    assert len(files) > 2
    assert [p.name for p in files] == [f"test.{i:04d}.avro" for i in range(len(files))]
    back: list[RecordedMessage] = []
    for index, path in enumerate(files):
        assert path.stat().st_size <= 20_000
        recording = read_recording(path)
        assert recording.metadata["trilink.recording.file_index"] == str(index)
        back += recording.messages
    assert back == messages


def test_rolls_by_time_and_flushes_on_tick(tmp_path: Path) -> None:
    now = [0.0]
    writer = RecordingWriter(
        tmp_path,
        "t",
        max_seconds=10.0,
        flush_interval_s=1.0,
        flush_records=1000,
        fsync=False,
        clock=lambda: now[0],
    )
    messages = rows(6)
    writer.write(messages[0])
    writer.write(messages[1])
    assert read_recording(writer.files[0]).messages == []  # still in the open block
    now[0] = 1.5
    writer.tick()
    assert read_recording(writer.files[0]).messages == messages[:2]
    now[0] = 11.0
    writer.write(messages[2])  # the first file is 11 s old: a new file starts
    for message in messages[3:]:
        writer.write(message)
    writer.close()
    assert len(writer.files) == 2
    assert read_recording(writer.files[1]).messages == messages[2:]


def test_killed_writer_leaves_its_flushed_blocks(tmp_path: Path) -> None:
    """A recorder killed with SIGKILL: every block it flushed is readable, nothing else breaks."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tests.replay.support import rows
        from trilink.replay.format import RecordingWriter
        writer = RecordingWriter(__import__("pathlib").Path({str(tmp_path)!r}), "crash", flush_records=7)
        for message in rows(40):
            writer.write(message)
        print("written", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    recording = read_recording(tmp_path / "crash.0000.avro")
    assert recording.damage is None
    assert recording.messages == rows(35)  # five blocks of 7; the open block of 5 is lost


def test_resolve_shipped_names(tmp_path: Path) -> None:
    (tmp_path / "a.0000.avro").write_bytes(b"")
    (tmp_path / "a.0001.avro").write_bytes(b"")
    (tmp_path / "b.avro").write_bytes(b"")
    assert [p.name for p in resolve_recordings(["a"], tmp_path)] == ["a.0000.avro", "a.0001.avro"]
    assert [p.name for p in resolve_recordings(["b"], tmp_path)] == ["b.avro"]
    assert len(resolve_recordings([], tmp_path)) == 3
    with pytest.raises(RecordingError) as caught:
        resolve_recordings(["zzz"], tmp_path)
    assert caught.value.reason == "missing_recording" and "shipped: a, b" in str(caught.value)


def test_filter_rejects_unknown_values() -> None:
    with pytest.raises(ReplayError) as caught:
        MessageFilter.build(kinds=["launch"])
    assert caught.value.reason == "bad_option"
    with pytest.raises(ReplayError):
        MessageFilter.build(nations=["FR"])
    key = "TRK-single-srbm-L1:0badcafe"
    message = next(m for m in rows(200) if m.correlation_key == key)
    assert MessageFilter.build(missiles=["TRK-single-srbm-L1"]).accepts(message)
    assert MessageFilter.build(missiles=[key]).accepts(message)
    assert not MessageFilter.build(missiles=["TRK-single-srbm-L"]).accepts(message)
