"""Replay planning and the wire form of each send: order, filters, topic map, rebase, bad values."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import decode_event
from schemas.headers import PACING_HEADER, SENT_NS_HEADER
from trilink.cli import main
from trilink.replay.errors import ReplayError
from trilink.replay.format import RecordedMessage, Recording, epoch_us
from trilink.replay.recorder import MessageFilter
from trilink.replay.replayer import PlannedSend, plan_replay, prepare_sends

from .support import STATUS, WARNINGS, rows

pytestmark = pytest.mark.unit


def _recording(messages: list[RecordedMessage], name: str = "r.avro") -> Recording:
    return Recording(Path(name), {}, list(messages), 1, 0)


def _by_partition(sends: list[PlannedSend]) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    for item in sends:
        out[(item.message.topic, item.message.partition)].append(item.message.offset)
    return out


def test_plan_keeps_partition_order_and_original_offsets() -> None:
    messages = rows(300)
    # files given in reverse, rows shuffled between partitions: the plan restores both orders
    plan = plan_replay([_recording(messages[150:]), _recording(messages[:150])])
    assert len(plan.sends) == 300
    for offsets in _by_partition(plan.sends).values():
        assert offsets == sorted(offsets)
    intended = [s.intended_offset_ns for s in plan.sends]
    assert intended[0] == 0
    assert intended == sorted(intended)
    first = min(m.send_time_ns for m in messages)
    for item in plan.sends:
        assert item.intended_offset_ns == item.message.send_time_ns - first


def test_time_going_backwards_inside_a_partition_keeps_the_partition_order() -> None:
    a, b, c = rows(3)
    a, b, c = (dataclasses.replace(m, topic=WARNINGS, partition=0, offset=i) for i, m in enumerate((a, b, c)))
    b = dataclasses.replace(b, sent_ns=a.send_time_ns - 5_000_000)  # b says it was sent 5 ms before a
    plan = plan_replay([_recording([c, b, a])])
    assert [s.message.offset for s in plan.sends] == [0, 1, 2]
    assert plan.sends[1].intended_offset_ns == 0  # held at a's time


def test_duplicates_filters_topic_map_and_timeline() -> None:
    messages = rows(200)
    both = [_recording(messages), _recording(messages[:50])]
    plan = plan_replay(both, MessageFilter.build(kinds=["track_update"], nations=["JP"]), {WARNINGS: "copy"})
    assert plan.duplicates_skipped == 50
    assert plan.records_read == 250
    kept = [m for m in messages if m.kind == "track_update" and m.sensor_nation == "JP"]
    assert [s.message for s in plan.sends] == sorted(kept, key=lambda m: m.send_time_ns)
    assert plan.filtered_out == 200 - len(kept)
    assert {s.topic for s in plan.sends} == {"copy"}
    broker = plan_replay([_recording(messages)], timeline="broker")
    assert broker.sends[-1].intended_offset_ns % 1_000_000 == 0  # millisecond broker timestamps
    event = plan_replay([_recording(messages)], timeline="event")
    assert (
        event.sends[-1].intended_offset_ns
        == (max(m.emitted_at_us or 0 for m in messages) - min(m.emitted_at_us or 0 for m in messages)) * 1000
    )
    assert {s.topic for s in event.sends} == {WARNINGS, STATUS}


def test_sends_keep_bytes_and_headers_but_drop_send_time_and_pacing() -> None:
    messages = rows(50)
    sends = prepare_sends(plan_replay([_recording(messages)]))
    by_offset = {(m.topic, m.partition, m.offset): m for m in messages}
    for item in sends:
        names = [k for k, _ in item.headers]
        assert SENT_NS_HEADER not in names and PACING_HEADER not in names
    planned = plan_replay([_recording(messages)]).sends
    for item, plan_item in zip(sends, planned, strict=True):
        original = by_offset[(plan_item.message.topic, plan_item.message.partition, plan_item.message.offset)]
        assert item.value == original.value and item.key == original.key
        assert list(item.headers) == [
            h for h in original.headers if h[0] not in (SENT_NS_HEADER, PACING_HEADER)
        ]


def test_rebase_shifts_every_time_by_one_constant_and_nothing_else() -> None:
    messages = rows(400, scenario="irbm_over_japan", legacy_ce_time=True)
    now = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    plan = plan_replay([_recording(messages)])
    sends = prepare_sends(plan, rebase=True, now=now)
    earliest_us = min(m.emitted_at_us or 0 for m in messages)
    shift = timedelta(microseconds=epoch_us(now) - earliest_us)
    saw_impact = False
    for item, planned in zip(sends, plan.sends, strict=True):
        before = decode_event(planned.message.value or b"")
        after = decode_event(item.value or b"")
        assert after.header.emitted_at == before.header.emitted_at + shift
        assert after.header.measured_at == before.header.measured_at + shift
        assert (
            after.header.model_copy(
                update={"emitted_at": before.header.emitted_at, "measured_at": before.header.measured_at}
            )
            == before.header
        )
        for name in ("launch_time", "impact_time"):
            if getattr(before.payload, name, None) is not None:
                saw_impact = saw_impact or name == "impact_time"
                assert getattr(after.payload, name) == getattr(before.payload, name) + shift
        ce_time = dict(item.headers)["ce_time"]
        assert ce_time == after.header.emitted_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        assert item.key == planned.message.key
        assert [k for k, _ in item.headers] == [
            k for k, _ in planned.message.headers if k not in (SENT_NS_HEADER, PACING_HEADER)
        ]
    assert saw_impact
    assert min(decode_event(s.value or b"").header.emitted_at for s in sends) == now


def test_unknown_fingerprint_is_named_with_rebase_and_sent_as_is_without() -> None:
    messages = rows(20)
    alien = messages[5].value or b""
    alien = alien[:2] + (0xDEADBEEF12345678).to_bytes(8, "little") + alien[10:]
    messages[5] = dataclasses.replace(messages[5], value=alien, decode_error="unknown_fingerprint")
    plan = plan_replay([_recording(messages)])
    with pytest.raises(ReplayError) as caught:
        prepare_sends(plan, rebase=True)
    assert caught.value.reason == "unknown_fingerprint"
    assert "0xdeadbeef12345678" in str(caught.value)
    sends = prepare_sends(plan)
    [sent] = [s for s in sends if s.value == alien]
    assert sent.decode_error == "unknown_fingerprint"


def test_cli_says_what_is_wrong_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["replay", str(text), "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trilink: error [not_a_recording]") and "Traceback" not in err
    assert main(["replay", "no_such_recording"]) == 2
    assert "[missing_recording]" in capsys.readouterr().err
    assert main(["replay", "single_srbm", "--topic-map", "nonsense"]) == 2
    assert "[bad_option]" in capsys.readouterr().err
    assert main(["replay", "single_srbm", "--kind", "launch"]) == 2
    assert "[bad_option]" in capsys.readouterr().err
    assert main(["replay", "single_srbm", "--speed", "0"]) == 2
    assert "[bad_option]" in capsys.readouterr().err
