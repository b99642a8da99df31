"""What a load test sends and when: an open-loop schedule of intended send times and the events.

Open loop means the schedule is fixed before the first send and never waits for the system
under test: event ``i`` is due at ``i / rate`` seconds whatever happened to event ``i - 1``.
A stalled producer therefore makes later events *late*, and because latency is counted from
the due ("intended") time, the stall shows up in the figures instead of silently thinning
the load (coordinated omission).

Everything here is a pure function of :class:`LoadSpec`, so the parent process and every
sender process derive the same plan independently and only the spec crosses a process
boundary. Events get run-unique ids and keys, so two runs never look like duplicates to the
allies' de-duplication.
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from producers.catalog import default_catalog
from producers.publisher import Run, for_run
from producers.scenario import ScheduledEvent, parse_scenario
from producers.simulation_cache import simulate_cached
from schemas import samples
from schemas.models import AlertStatus, EventKind, EventPayload, Nation, WarningEvent
from trilink.loadtest.errors import LoadtestConfigError
from trilink.policy import default_policy
from trilink.settings import get_settings

NS_PER_S = 1_000_000_000

#: Event mix when none is given: mostly track updates, as in a real engagement.
DEFAULT_MIX: dict[str, float] = {
    "track_update": 0.70,
    "impact_prediction": 0.12,
    "launch_detection": 0.05,
    "alert": 0.05,
    "track_end": 0.03,
    "sensor_status": 0.05,
}

#: Launch sites for salvo mode (public launch areas, as in ``producers/scenarios/salvo.toml``).
_SALVO_SITES: tuple[tuple[float, float], ...] = (
    (39.2, 125.67),
    (39.16, 127.45),
    (39.9, 127.55),
    (40.03, 128.18),
    (39.7, 125.9),
)
_SALVO_SHOTS: tuple[dict[str, Any], ...] = (
    {"class": "SRBM", "profile": "depressed", "range_km": 600.0, "apogee_km": 55.0},
    {"class": "SRBM", "profile": "minimum-energy", "range_km": 450.0},
    {"class": "MRBM", "profile": "minimum-energy", "range_km": 1000.0},
    {"class": "SRBM", "profile": "depressed", "range_km": 500.0, "apogee_km": 50.0},
)


def parse_mix(text: str | None) -> dict[str, float]:
    """``track_update=0.7,alert=0.3`` -> normalised weights (unknown kinds and bad numbers refused)."""
    if text is None or not text.strip():
        return dict(DEFAULT_MIX)
    known = {k.value for k in EventKind}
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise LoadtestConfigError(
                "bad_mix", f"mix entry {part.strip()!r} is not KIND=WEIGHT with KIND one of {sorted(known)}"
            )
        try:
            weight = float(value)
        except ValueError:
            raise LoadtestConfigError(
                "bad_mix", f"mix entry {part.strip()!r}: {value!r} is not a number"
            ) from None
        if not weight >= 0.0 or weight == float("inf"):
            raise LoadtestConfigError(
                "bad_mix", f"mix entry {part.strip()!r}: weight must be finite and >= 0"
            )
        if name in weights:
            raise LoadtestConfigError("bad_mix", f"mix names {name} twice")
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0.0:
        raise LoadtestConfigError("bad_mix", "mix weights sum to zero")
    return {name: w / total for name, w in weights.items() if w > 0.0}


def open_loop_offsets_ns(rate_per_s: float, total_s: float) -> list[int]:
    """Intended send times (ns after the schedule's zero) at a constant rate, ``[0, total_s)``."""
    if rate_per_s <= 0.0 or total_s <= 0.0:
        return []
    count = int(rate_per_s * total_s)
    interval_ns = NS_PER_S / rate_per_s
    return [round(i * interval_ns) for i in range(count)]


@dataclass(frozen=True)
class LoadSpec:
    """Everything that decides the plan (picklable: it is what sender processes receive)."""

    run_id: str
    duration_s: float
    warmup_s: float = 1.0
    rate_per_s: float | None = None  # rate mode
    salvo_launches: int | None = None  # salvo mode: this many simultaneous launches, simulated
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    sensors: tuple[str, ...] = ()  # () = every sensor of the catalog
    keys: int = 64  # concurrent tracks (Kafka keys) in rate mode
    partitions: int | None = None  # spread over only the first N partitions of each topic
    producers: int = 1
    seed: int = 1

    def __post_init__(self) -> None:
        if (self.rate_per_s is None) == (self.salvo_launches is None):
            raise LoadtestConfigError("bad_option", "give exactly one of --rate or --salvo")
        if self.rate_per_s is not None and not self.rate_per_s > 0.0:
            raise LoadtestConfigError("bad_option", f"--rate must be > 0, got {self.rate_per_s}")
        if self.salvo_launches is not None and not 1 <= self.salvo_launches <= 500:
            raise LoadtestConfigError("bad_option", f"--salvo must be 1..500, got {self.salvo_launches}")
        if not self.duration_s > 0.0:
            raise LoadtestConfigError("bad_option", f"--duration must be > 0, got {self.duration_s}")
        if not self.warmup_s >= 0.0:
            raise LoadtestConfigError("bad_option", f"--warmup must be >= 0, got {self.warmup_s}")
        if self.keys < 1 or self.producers < 1 or (self.partitions is not None and self.partitions < 1):
            raise LoadtestConfigError("bad_option", "--keys, --producers and --partitions must be >= 1")

    @property
    def mode(self) -> Literal["rate", "salvo"]:
        return "rate" if self.rate_per_s is not None else "salvo"

    @property
    def total_s(self) -> float:
        return self.warmup_s + self.duration_s

    @property
    def warmup_ns(self) -> int:
        return round(self.warmup_s * NS_PER_S)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One slot of the schedule: when it is due, what it is, who must receive it, who sends it."""

    slot: int
    offset_ns: int  # intended send time after the schedule's zero
    kind: str
    key: str
    allies: frozenset[str]  # allies whose service may deliver it (releasability and policy)
    worker: int  # the sender process that owns this slot's key (keeps per-key order)
    measured: bool  # False while warming up: sent and checked for loss, kept out of latency


def _stable_bucket(text: str, buckets: int) -> int:
    return zlib.crc32(text.encode("utf-8")) % buckets


def _receivers(event: WarningEvent) -> frozenset[str]:
    # The same check the ally services run, so "expected" cannot disagree with the policy.
    from consumers.policy_filter import withhold_reason

    policy = default_policy()
    return frozenset(n.value for n in Nation if withhold_reason(n, event, policy) is None)


class Workload:
    """The plan of a :class:`LoadSpec` and the events behind it (rate or salvo mode)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        catalog = default_catalog()
        names = spec.sensors or catalog.ids
        unknown = [s for s in names if s not in catalog.ids]
        if unknown:
            raise LoadtestConfigError(
                "unknown_sensor", f"no sensor {unknown} in the catalog; known: {list(catalog.ids)}"
            )
        self.sensors = [catalog.get(s) for s in names]
        self._policy = default_policy()
        self._salvo: list[ScheduledEvent] = []
        self._salvo_start = datetime(2024, 1, 1, tzinfo=UTC)
        if spec.mode == "salvo":
            self._salvo = self._simulate_salvo()

    # ------------------------------------------------------------ plan

    @cached_property
    def plan(self) -> list[PlannedEvent]:
        return self._rate_plan() if self.spec.mode == "rate" else self._salvo_plan()

    def _rate_plan(self) -> list[PlannedEvent]:
        spec = self.spec
        assert spec.rate_per_s is not None
        kinds = list(spec.mix)
        weights = [spec.mix[k] for k in kinds]
        rng = random.Random(f"trilink/loadtest/{spec.seed}")
        # Who may receive depends on the sensor's nation and on the kind (sharing policy).
        receivers = {
            (i, kind): _receivers(self._template(i, kind)) for i in range(len(self.sensors)) for kind in kinds
        }
        plan = []
        hub = get_settings().topology == "hub"
        for slot, offset in enumerate(open_loop_offsets_ns(spec.rate_per_s, spec.total_s)):
            kind = rng.choices(kinds, weights)[0]
            sensor_index = slot % len(self.sensors)
            if kind == EventKind.SENSOR_STATUS.value:
                # Status travels on its own topic keyed per sensor, as the real sensors do: one
                # key must stay on one topic, or its order across topics would mean nothing.
                key = f"STS-{self.sensors[sensor_index].id}:{spec.run_id}"
                worker = _stable_bucket(key, spec.producers)
            else:
                key_index = slot % spec.keys
                key, worker = self._rate_key(key_index), key_index % spec.producers
                if hub:
                    # In the hub topology each nation's sensors write their own ingest topic, so a
                    # track reported by several nations would span topics, whose order across each
                    # other is only the hub's arrival order: one key per track and nation instead.
                    key = f"{key}-{self.sensors[sensor_index].nation.value.lower()}"
            plan.append(
                PlannedEvent(
                    slot=slot,
                    offset_ns=offset,
                    kind=kind,
                    key=key,
                    allies=receivers[(sensor_index, kind)],
                    worker=worker,
                    measured=offset >= spec.warmup_ns,
                )
            )
        return plan

    def _salvo_plan(self) -> list[PlannedEvent]:
        spec = self.spec
        run = Run(spec.run_id, self._salvo_start)
        plan = []
        for slot, item in enumerate(for_run(self._salvo, run, self._salvo_start)):
            offset = round(item.emit_offset_s * NS_PER_S)
            key = item.event.header.correlation_key
            plan.append(
                PlannedEvent(
                    slot=slot,
                    offset_ns=offset,
                    kind=item.event.kind.value,
                    key=key,
                    allies=_receivers(item.event),
                    worker=_stable_bucket(key, spec.producers),
                    measured=offset >= spec.warmup_ns,
                )
            )
        return plan

    def _simulate_salvo(self) -> list[ScheduledEvent]:
        spec = self.spec
        assert spec.salvo_launches is not None
        launches = []
        for i in range(spec.salvo_launches):
            shot = _SALVO_SHOTS[i % len(_SALVO_SHOTS)]
            launches.append(
                {
                    "id": f"L{i + 1:03d}",
                    "offset_s": spec.warmup_s,  # all at once, right after the warm-up
                    "site": list(_SALVO_SITES[i % len(_SALVO_SITES)]),
                    "azimuth_deg": 70.0 + (i * 7.0) % 50.0,
                    **shot,
                }
            )
        document = {
            "name": f"loadtest-salvo-{spec.salvo_launches}",
            "seed": spec.seed,
            "duration_s": spec.total_s,
            "start_time": self._salvo_start,
            "exercise": True,
            "sensors": [s.id for s in self.sensors],
            "launch": launches,
        }
        scenario = parse_scenario(document, origin="loadtest salvo")
        # Simulated once: the runner's Workload stores it, each sender process's reads it back.
        simulated = simulate_cached(scenario, get_settings().simulation_cache_dir, policy=self._policy)
        return [item for item in simulated.events if item.emit_offset_s < spec.total_s]

    # ------------------------------------------------------------ events

    def _rate_key(self, key_index: int) -> str:
        return f"LT-{self.spec.run_id}-{key_index:04d}"

    def _template(self, index: int, kind: str) -> WarningEvent:
        """A ``kind`` event of sensor ``index``, marked releasable as the sharing policy says."""
        sensor = self.sensors[index]
        header = samples.sample_header(
            sensor_id=sensor.id,
            sensor_nation=sensor.nation,
            releasable_to=self._policy.releasable_to(sensor.nation, EventKind(kind)),
            exercise=True,
        )
        return WarningEvent(header=header, payload=self._payloads[kind])

    @cached_property
    def _payloads(self) -> dict[str, EventPayload]:
        payloads = {kind.value: samples.sample_event(kind).payload for kind in EventKind}
        # Load-test events are marked as an exercise, and an exercise alert must say so too.
        payloads[EventKind.ALERT.value] = samples.sample_alert().model_copy(
            update={"status": AlertStatus.EXERCISE}
        )
        return payloads

    def events(self, worker: int, start_ns: int) -> Iterable[tuple[PlannedEvent, WarningEvent]]:
        """This worker's slots in schedule order, each with its event (times rebased to ``start_ns``)."""
        start = datetime.fromtimestamp(start_ns / NS_PER_S, UTC)
        if self.spec.mode == "salvo":
            run = Run(self.spec.run_id, start)
            rebased = for_run(self._salvo, run, self._salvo_start)
            for planned, item in zip(self.plan, rebased, strict=True):
                if planned.worker == worker:
                    yield planned, item.event
            return
        templates = {
            (i, kind): self._template(i, kind) for i in range(len(self.sensors)) for kind in self.spec.mix
        }
        for planned in self.plan:
            if planned.worker != worker:
                continue
            sensor_index = planned.slot % len(self.sensors)
            due = start + timedelta(microseconds=planned.offset_ns // 1000)
            header = templates[(sensor_index, planned.kind)].header.model_copy(
                update={
                    "event_id": uuid.uuid5(
                        uuid.NAMESPACE_OID, f"trilink/loadtest/{self.spec.run_id}/{planned.slot}"
                    ),
                    "correlation_key": planned.key,
                    "sequence": planned.slot // len(self.sensors),
                    "measured_at": due,
                    "emitted_at": due,
                }
            )
            yield planned, WarningEvent(header=header, payload=self._payloads[planned.kind])


def worker_partition(key: str, partitions: int) -> int:
    """The partition a key is pinned to when the load is confined to ``partitions`` partitions."""
    return _stable_bucket(key, partitions)
