"""Load-test logic that starts no process: schedule, coordinated omission, objectives, tool output, report."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from kafka.partitioner.default import DefaultPartitioner

from consumers.hub import HubLatencyRow, HubReport
from consumers.ledger import AllyReport
from schemas import decode_event
from schemas.headers import LOADTEST_RUN_HEADER as RUN_HEADER
from schemas.headers import LOADTEST_SLOT_HEADER as SLOT_HEADER
from schemas.headers import SENT_NS_HEADER
from trilink.loadtest.accounting import ACTUAL, ALL_KINDS, INTENDED, Accounting, CurveRecorder
from trilink.loadtest.baseline import BaselineResult, parse_output, tool_command
from trilink.loadtest.errors import LoadtestConfigError, LoadtestError
from trilink.loadtest.report import REPORT_FORMAT, build_report, render_text
from trilink.loadtest.runner import LoadTest, RunResult
from trilink.loadtest.sender import (
    Partitions,
    ProducerSettings,
    SenderResult,
    decode_slot,
    encode_slot,
    prepare,
)
from trilink.loadtest.slo import evaluate, parse_objective, parse_objectives
from trilink.loadtest.workload import (
    NS_PER_S,
    LoadSpec,
    PlannedEvent,
    Workload,
    open_loop_offsets_ns,
    parse_mix,
    worker_partition,
)

pytestmark = pytest.mark.unit

MS = 1_000_000

#: Real stdout of ``org.apache.kafka.tools.EndToEndLatency`` (Kafka 4.4.0) against the local
#: broker: 300 records of 200 bytes, acks=all (captured while writing this module).
CAPTURED_TOOL_OUTPUT = (
    "0\t199.562396\nAvg latency: 7.3391 ms\nPercentiles: 50th = 4, 99th = 64, 99.9th = 199\n"
)


def _spec(**overrides: object) -> LoadSpec:
    fields: dict[str, object] = {"run_id": "unit", "duration_s": 2.0, "warmup_s": 1.0, "rate_per_s": 500.0}
    fields.update(overrides)
    return LoadSpec(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ schedule


def test_open_loop_schedule_is_evenly_spaced_and_fixed_in_advance() -> None:
    offsets = open_loop_offsets_ns(1000.0, 2.0)
    assert len(offsets) == 2000
    assert offsets[0] == 0
    assert {b - a for a, b in itertools.pairwise(offsets)} == {1_000_000}
    assert offsets == open_loop_offsets_ns(1000.0, 2.0)  # a pure function of rate and duration


def test_plan_marks_warmup_slots_as_unmeasured() -> None:
    plan = Workload(_spec()).plan
    assert len(plan) == 1500  # (1 s warm-up + 2 s) at 500/s
    warm = [p for p in plan if not p.measured]
    assert len(warm) == 500
    assert all(p.offset_ns < NS_PER_S for p in warm)
    assert all(p.offset_ns >= NS_PER_S for p in plan if p.measured)


def test_plan_keeps_every_key_on_one_sender_and_status_on_its_own_keys() -> None:
    plan = Workload(_spec(producers=3)).plan
    owners: dict[str, set[int]] = {}
    for p in plan:
        owners.setdefault(p.key, set()).add(p.worker)
    assert all(len(workers) == 1 for workers in owners.values())
    assert {p.worker for p in plan} == {0, 1, 2}
    kinds_by_key: dict[str, set[str]] = {}
    for p in plan:
        kinds_by_key.setdefault(p.key, set()).add(p.kind)
    for key, kinds in kinds_by_key.items():
        assert ("sensor_status" in kinds) == key.startswith("STS-"), key


def test_plan_follows_the_mix_and_the_sharing_policy_per_kind() -> None:
    workload = Workload(_spec(rate_per_s=5000.0, mix=parse_mix("track_update=0.8,alert=0.2")))
    plan = workload.plan
    share = Counter(p.kind for p in plan)
    assert set(share) == {"track_update", "alert"}
    assert 0.75 < share["track_update"] / len(plan) < 0.85
    # trajectory data reaches every ally (JP<->KR through the hub); an alert stays with its
    # nation and the US
    assert all(p.allies == {"US", "JP", "KR"} for p in plan if p.kind == "track_update")
    alert_allies = {
        (workload.sensors[p.slot % len(workload.sensors)].nation.value, p.allies)
        for p in plan
        if p.kind == "alert"
    }
    assert alert_allies == {
        ("US", frozenset({"US", "JP", "KR"})),
        ("JP", frozenset({"US", "JP"})),
        ("KR", frozenset({"US", "KR"})),
    }
    for planned, event in workload.events(0, 1_800_000_000 * NS_PER_S):
        assert {n.value for n in event.header.releasable_to} == planned.allies


def test_events_of_a_worker_are_valid_and_carry_the_plan() -> None:
    workload = Workload(_spec(producers=2))
    start_ns = 1_800_000_000 * NS_PER_S  # after the samples' invented 2024 launch
    pairs = list(workload.events(1, start_ns))
    assert pairs and all(planned.worker == 1 for planned, _ in pairs)
    slots = [planned.slot for planned, _ in pairs]
    assert slots == sorted(slots)
    for planned, event in pairs[:50]:
        assert event.kind.value == planned.kind
        assert event.header.correlation_key == planned.key
        assert event.header.exercise


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("track_update", "KIND=WEIGHT"),
        ("bogus=1", "KIND=WEIGHT"),
        ("alert=x", "not a number"),
        ("alert=0", "zero"),
        ("alert=-1", ">= 0"),
    ],
)
def test_bad_mix_is_refused(text: str, needle: str) -> None:
    with pytest.raises(LoadtestConfigError) as err:
        parse_mix(text)
    assert err.value.reason == "bad_mix"
    assert needle in err.value.message


def test_spec_refuses_rate_and_salvo_together() -> None:
    with pytest.raises(LoadtestConfigError) as err:
        _spec(salvo_launches=3)
    assert err.value.reason == "bad_option"


class _Metadata:
    """What :class:`Partitions` and kafka-python's DefaultPartitioner read of the cluster."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def partitions_for(self, topic: str) -> set[int]:
        return self._partitions

    def topics(self) -> set[str]:
        return {"trilink.warnings.v1", "trilink.sensor-status.v1"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


def test_records_are_prepared_before_the_clock_with_run_slot_and_the_default_partition() -> None:
    workload = Workload(_spec(producers=2))
    metadata = _Metadata(12)
    records = list(prepare(workload, 1, 1_800_000_000 * NS_PER_S, Partitions(metadata, None), b"unit"))
    planned = [p for p in workload.plan if p.worker == 1]
    assert [r.planned for r in records] == planned
    partitioner = DefaultPartitioner()
    for ready in records[:200]:
        headers = dict(ready.headers)
        assert decode_slot(headers[SLOT_HEADER]) == ready.planned.slot
        assert headers[RUN_HEADER] == b"unit"
        assert SENT_NS_HEADER not in headers, "the send times are stamped at send"
        event = decode_event(ready.value)
        assert event.header.correlation_key == ready.planned.key
        assert ready.key == ready.planned.key.encode()
        assert ready.partition == partitioner.partition(
            ready.topic, ready.key, ready.key, None, None, metadata
        )
    confined = prepare(workload, 1, 1_800_000_000 * NS_PER_S, Partitions(metadata, 3), b"unit")
    for ready in itertools.islice(confined, 200):
        assert ready.partition == worker_partition(ready.planned.key, 3)


def test_slot_header_round_trip() -> None:
    assert decode_slot(encode_slot(123_456)) == 123_456
    assert decode_slot(b"\x00") is None


# ------------------------------------------------------------------ coordinated omission


def _plan(
    count: int, interval_ns: int, warmup: int = 0, allies: tuple[str, ...] = ("US",)
) -> list[PlannedEvent]:
    return [
        PlannedEvent(i, i * interval_ns, "track_update", f"k{i % 4}", frozenset(allies), 0, i >= warmup)
        for i in range(count)
    ]


def test_a_stalled_sender_shows_in_from_intended_latency_only() -> None:
    """1000/s for 1 s; the sender freezes for 200 ms at 0.5 s, then catches up as fast as it can
    (10 us per send). The pipeline itself always takes 2 ms. Only the intended clock sees the stall."""
    start_ns = 10 * NS_PER_S
    plan = _plan(1000, 1 * MS)
    accounting = Accounting(plan, start_ns, allies=("US",))
    free_at = start_ns
    for p in plan:
        intended = start_ns + p.offset_ns
        if p.offset_ns == 500 * MS:
            free_at = intended + 200 * MS  # the stall
        actual = max(intended, free_at)
        free_at = actual + 10_000
        accounting.observe(
            "US",
            p.slot,
            intended_ns=intended,
            actual_ns=actual,
            received_ns=actual + 1 * MS,
            delivered_ns=actual + 2 * MS,
        )
    from_actual = accounting.end_to_end_ms("US", 99.0, ACTUAL)
    from_intended = accounting.end_to_end_ms("US", 99.0, INTENDED)
    assert from_actual is not None and from_intended is not None
    assert from_actual == pytest.approx(2.0, rel=0.01)
    assert from_intended > 150.0  # about 20% of the events waited out part of the stall
    assert accounting.end_to_end_ms("US", 50.0, INTENDED) == pytest.approx(2.0, rel=0.01)
    lag = accounting.tallies["US"].recorders[("schedule_lag", INTENDED, ALL_KINDS)]
    assert lag.value_at_percentile_ms(100.0) == pytest.approx(200.0, rel=0.01)


def test_warmup_is_counted_for_loss_but_kept_out_of_latency() -> None:
    plan = _plan(10, 1 * MS, warmup=5)
    accounting = Accounting(plan, 0, allies=("US",))
    for p in plan:
        late = 500 * MS if not p.measured else 0  # a slow start must not spoil the figures
        accounting.observe(
            "US",
            p.slot,
            intended_ns=p.offset_ns,
            actual_ns=p.offset_ns,
            received_ns=None,
            delivered_ns=p.offset_ns + late + 3 * MS,
        )
    tally = accounting.tallies["US"]
    assert tally.delivered_unique == 10
    assert tally.recorders[("end_to_end", INTENDED, ALL_KINDS)].count == 5
    assert accounting.end_to_end_ms("US", 100.0) == pytest.approx(3.0, rel=0.01)


def test_loss_duplicates_and_order_are_counted_per_ally() -> None:
    plan = _plan(8, 1 * MS, allies=("US", "JP"))  # keys k0..k3: slots 0 and 4 share k0
    accounting = Accounting(plan, 0, allies=("US", "JP"))
    for slot in range(8):
        accounting.observe("US", slot, intended_ns=0, actual_ns=0, received_ns=None, delivered_ns=1 * MS)
    for slot in (4, 0, 1, 1, 2):  # k0 reordered, slot 1 twice, 3/5/6/7 never arrive
        accounting.observe("JP", slot, intended_ns=0, actual_ns=0, received_ns=None, delivered_ns=1 * MS)
    expected = {a: accounting.expected(a) for a in ("US", "JP")}
    assert expected["US"] == expected["JP"] == set(range(8))
    assert not accounting.complete(expected)
    us, jp = accounting.tallies["US"], accounting.tallies["JP"]
    assert (us.delivered_unique, us.duplicates, us.out_of_order) == (8, 0, 0)
    assert (jp.delivered_unique, jp.duplicates, jp.out_of_order) == (4, 1, 1)
    assert expected["JP"] - jp.seen.keys() == {3, 5, 6, 7}
    assert accounting.expected("JP", sent_slots=[0, 1]) == {0, 1}  # unsent events are not "lost"


def test_curve_recorder_survives_a_process_boundary() -> None:
    recorder = CurveRecorder()
    for us in range(1, 1001):
        recorder.record_ns(us * 1000)
    copy = CurveRecorder.decode(recorder.encode())
    assert copy.count == 1000
    assert copy.summary() == recorder.summary()
    assert CurveRecorder.decode("").count == 0


# ------------------------------------------------------------------ objectives


@pytest.mark.parametrize(
    ("text", "percentile", "limit_ms"),
    [
        ("p99=50ms", 99.0, 50.0),
        ("p99.9=200ms", 99.9, 200.0),
        ("p50=800us", 50.0, 0.8),
        ("max=1s", 100.0, 1000.0),
        (" p90 = 2.5 ms ", 90.0, 2.5),
        ("p99=1us", 99.0, 0.001),
    ],
)
def test_objectives_parse(text: str, percentile: float, limit_ms: float) -> None:
    objective = parse_objective(text)
    assert objective.percentile == percentile
    assert objective.limit_ms == pytest.approx(limit_ms)


@pytest.mark.parametrize(
    "text", ["p99", "99=50ms", "p99=50", "p99=50min", "p0=1ms", "p101=1ms", "p99=0ms", "p99=-1ms"]
)
def test_bad_objectives_are_refused(text: str) -> None:
    with pytest.raises(LoadtestConfigError) as err:
        parse_objective(text)
    assert err.value.reason == "bad_slo"


def test_an_objective_given_twice_is_refused() -> None:
    with pytest.raises(LoadtestConfigError, match="twice"):
        parse_objectives(["p99=50ms", "p99=40ms"])


def test_the_worst_ally_decides_and_no_data_is_a_miss() -> None:
    figures = {
        ("US", 99.0): 10.0,
        ("JP", 99.0): 60.0,
        ("KR", 99.0): 20.0,
        ("US", 50.0): 1.0,
        ("JP", 50.0): 2.0,
    }
    verdicts = evaluate(
        parse_objectives(["p99=50ms", "p50=5ms"]), ("US", "JP", "KR"), lambda a, p: figures.get((a, p))
    )
    p99, p50 = verdicts
    assert not p99.met and p99.ally == "JP" and p99.observed_ms == 60.0
    assert "JP" in p99.message() and ">" in p99.message()
    assert not p50.met and p50.observed_ms is None and p50.ally == "KR"  # KR has no p50 figure
    ok = evaluate(parse_objectives(["p99=100ms"]), ("US", "JP", "KR"), lambda a, p: figures[(a, p)])
    assert ok[0].met


# ------------------------------------------------------------------ Kafka's tool


def test_end_to_end_latency_output_is_parsed() -> None:
    result = parse_output(CAPTURED_TOOL_OUTPUT, 300, 200)
    assert (result.avg_ms, result.p50_ms, result.p99_ms, result.p99_9_ms) == (7.3391, 4.0, 64.0, 199.0)
    assert result.num_records == 300 and result.acks == "all"


def test_end_to_end_latency_without_summary_is_a_typed_error() -> None:
    with pytest.raises(LoadtestError) as err:
        parse_output("Exception in thread main org.apache.kafka...\n", 300, 200)
    assert err.value.reason == "baseline_failed"


def test_tool_command_names_the_tool_and_its_options() -> None:
    command = tool_command(
        "/lib/*", "127.0.0.1:9092", "t", num_records=300, record_size_bytes=181, acks="all"
    )
    assert command[:4] == ["java", "-cp", "/lib/*", "org.apache.kafka.tools.EndToEndLatency"]
    assert command[command.index("--record-size") + 1] == "181"


# ------------------------------------------------------------------ harness verdict and report


def _sender(worker: int, sent: int, first_due_ns: int, last_actual_ns: int, lag_ms: float) -> SenderResult:
    lag = CurveRecorder()
    for _ in range(sent):
        lag.record_ns(int(lag_ms * MS))
    return SenderResult(
        worker=worker,
        planned=sent,
        sent=sent,
        acked=sent,
        sent_slots_upto=sent - 1,
        measured_sent=sent,
        measured_first_due_ns=first_due_ns,
        measured_last_actual_ns=last_actual_ns,
        max_lag_ns=int(lag_ms * MS),
        lag_hist=lag.encode(),
        value_bytes=180 * sent,
        cpu_s=sent * 100e-6,
    )


def _loadtest() -> LoadTest:
    return LoadTest("127.0.0.1:1", ProducerSettings(), [])  # nothing is started until start()


def test_harness_that_keeps_up_is_not_saturated() -> None:
    spec = _spec(warmup_s=0.0, duration_s=1.0, rate_per_s=1000.0)
    plan = Workload(spec).plan
    figures = _loadtest()._harness_figures(spec, plan, [_sender(0, 1000, 0, 999 * MS + 200_000, 0.2)])
    assert not figures.saturated
    assert figures.achieved_rate_per_s == pytest.approx(1000.0, rel=0.01)


def test_harness_that_falls_behind_is_saturated_not_slow() -> None:
    spec = _spec(warmup_s=0.0, duration_s=1.0, rate_per_s=1000.0)
    plan = Workload(spec).plan
    figures = _loadtest()._harness_figures(spec, plan, [_sender(0, 1000, 0, 1_600 * MS, 300.0)])
    assert figures.saturated
    assert "achieved" in figures.reason and "schedule lag" in figures.reason
    assert figures.achieved_rate_per_s == pytest.approx(625.0, rel=0.01)


def test_a_run_stopped_for_hopeless_lag_is_saturated() -> None:
    spec = _spec(warmup_s=0.0, duration_s=1.0, rate_per_s=1000.0)
    plan = Workload(spec).plan
    figures = _loadtest()._harness_figures(spec, plan, [_sender(0, 1000, 0, 999 * MS, 0.2)], aborted=True)
    assert figures.saturated and figures.aborted
    assert "behind its schedule" in figures.reason


def _result() -> RunResult:
    spec = _spec(warmup_s=0.0, duration_s=1.0, rate_per_s=100.0)
    plan = Workload(spec).plan
    start_ns = 5 * NS_PER_S
    accounting = Accounting(plan, start_ns)
    for p in plan:
        intended = start_ns + p.offset_ns
        for ally in ("US", "JP", "KR"):
            if ally == "KR" and p.slot == 7:
                continue  # one loss
            accounting.observe(
                ally,
                p.slot,
                intended_ns=intended,
                actual_ns=intended + 100_000,
                received_ns=intended + 1 * MS,
                delivered_ns=intended + 3 * MS,
            )
    lt = _loadtest()
    harness = lt._harness_figures(spec, plan, [_sender(0, len(plan), start_ns, start_ns + 990 * MS, 0.1)])
    result = RunResult(
        spec=spec,
        producer=ProducerSettings(),
        start_ns=start_ns,
        started_at_unix_s=start_ns / NS_PER_S,
        plan=plan,
        accounting=accounting,
        harness=harness,
        expected={a: accounting.expected(a) for a in ("US", "JP", "KR")},
    )
    result.verdicts = evaluate(parse_objectives(["p99=50ms"]), ("US", "JP", "KR"), accounting.end_to_end_ms)
    return result


def _service_report(ally: str, latency: list[dict[str, object]]) -> AllyReport:
    """An ally service's report with these latency rows and nothing counted."""
    return AllyReport.model_validate(
        {
            "ally": ally,
            "instance_id": "i",
            "group_id": "g",
            "latency": latency,
            "counts": {
                "received": {},
                "withheld": {},
                "withheld_by_reason": {},
                "delivered": {},
                "duplicates_suppressed": 0,
                "dead_letters": {},
                "subscriber_drops": {},
                "delivery_failures": {},
            },
            "launches": {},
            "dedup_window_ids": 0,
            "assigned_partitions": [],
            "error": None,
        }
    )


def test_report_json_shape() -> None:
    figures = {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "p99_9_ms": 1.0, "max_ms": 1.0, "mean_ms": 1.0}
    service = _service_report(
        "US", [{"hop": "end_to_end", "kind": "*", "channel": "kafka", "count": 3, **figures}]
    )
    baseline = BaselineResult(2.0, 1.0, 3.0, 5.0, 300, 180, "all")
    report = json.loads(build_report(_result(), {"US": service}, baseline).model_dump_json())
    assert report["format"] == REPORT_FORMAT
    assert set(report) >= {
        "run",
        "config",
        "harness",
        "allies",
        "latency",
        "service_hops",
        "objectives",
        "timeline",
        "curves",
        "baseline",
        "capacity",
    }
    assert report["allies"]["KR"]["lost"] == 1 and report["allies"]["US"]["lost"] == 0
    assert report["allies"]["US"]["dead_lettered"] == 0 and report["allies"]["JP"]["dead_lettered"] is None
    assert report["allies"]["US"]["throughput_per_s"] == pytest.approx(100.0, rel=0.02)
    row = next(
        r
        for r in report["latency"]
        if (r["ally"], r["hop"], r["basis"], r["kind"]) == ("US", "end_to_end", "intended", "*")
    )
    assert row["count"] == 100
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert {r["basis"] for r in report["latency"]} == {"intended", "actual", "receive"}
    assert report["service_hops"][0]["ally"] == "US"
    assert report["objectives"][0]["met"] is True
    assert report["baseline"]["end_to_end_vs_tool"]["US"]["p50"]["ratio"] == pytest.approx(3.0, rel=0.01)
    timeline = report["timeline"]
    assert len(timeline["second"]) == len(timeline["sent_per_s"]) == len(timeline["allies"]["JP"]["p99_ms"])
    assert report["curves"]["US"]["intended"][0][0] == 0.0


def test_terminal_report_shows_every_hop_with_the_hub_s() -> None:
    """The services' and the hub's own hops are printed in the pipeline's order, the hub hop
    between the sensors' append and the feeds'."""
    figures = {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "p99_9_ms": 4.0, "max_ms": 5.0, "mean_ms": 1.5}
    hops = ["hub_to_append", "send_to_append", "append_to_receive", "append_to_hub"]  # any order
    service = _service_report(
        "JP",
        [{"hop": h, "kind": "*", "channel": "none", "count": 7, **figures} for h in hops]
        + [{"hop": "end_to_end", "kind": "*", "channel": "kafka", "count": 7, **figures}],
    )
    hub = HubReport(
        instance_id="i",
        group_id="h",
        verify_body=True,
        received={"KR": {"track_update": 7}},
        released={"JP": {"track_update": 7}},
        withheld={},
        dead_letters={},
        delivery_failures={},
        latency=[HubLatencyRow(hop="append_to_hub", feed="none", count=7, **figures)],
        error=None,
    )
    text = render_text(build_report(_result(), {"JP": service}, hub=hub))
    assert "[hub] received 7  released US 0 JP 7 KR 0" in text
    assert "  append_to_hub                     1.00      3.00      5.00        7" in text
    jp = text[text.index("[JP]") :]
    order = [
        jp.index(f"  {h} ") for h in ("send_to_append", "append_to_hub", "hub_to_append", "append_to_receive")
    ]
    assert order == sorted(order)
    assert "end_to_end [kafka]" in jp
    assert "[US]" not in text[text.index("every hop") :]  # no service report for US: no table


def test_terminal_table_and_plot(tmp_path: Path) -> None:
    from trilink.loadtest.plot import write_plot

    report = build_report(_result())
    text = render_text(report)
    assert "KR" in text and "end_to_end" in text and "objective p99=50ms" in text
    png = tmp_path / "lt.png"
    write_plot(report.model_dump(mode="json"), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
