"""The three nations' pictures: sensor reports delivered to each fusion cell, its products handed to
its alert authority, everything merged with the sensors' own events in emit-time order.

A report reaches a cell only when the sharing policy releases it to that nation, after a link
delay: :data:`DIRECT_LINK_S` on a direct link, :data:`HUB_LINK_S` when it is relayed through the
hub. Cells and authorities are deterministic (seeded), so :func:`producers.scenario.simulate` stays
byte-for-byte repeatable.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from producers.areas import AreaMap
from producers.authority import AlertAuthority, authority_source_id
from producers.fusion import FusedDraft, FusionCell, Report, at_clock, fusion_source_id
from producers.sensors import Draft
from schemas.models import LaunchDetection, Nation, TrackUpdate
from trilink.policy import SharingPolicy

#: Sensor event -> a nation's fusion cell on a direct link, s (ASSUMPTION).
DIRECT_LINK_S = 0.5
#: ... when relayed through the hub (ASSUMPTION: one more hop and a relay decision).
HUB_LINK_S = 1.5
#: How often each cell looks for tracks to end when no report arrives, s.
TICK_S = 10.0


#: The ``sensor_id`` of each nation's fusion cell and alert authority on the events they issue.
NATIONAL_SOURCES = frozenset(f(n) for n in Nation for f in (fusion_source_id, authority_source_id))


def is_national_product(sensor_id: str) -> bool:
    """True for an event issued by a nation's fusion cell or alert authority, not by a sensor."""
    return sensor_id in NATIONAL_SOURCES


@dataclass(frozen=True, slots=True)
class _Delivery:
    nation: Nation
    report: Report


@dataclass(frozen=True, slots=True)
class NationalSetup:
    """What the cells and authorities of a scenario share."""

    start_time: datetime
    duration_s: float
    seed: int
    exercise: bool
    prediction_interval_s: float
    areas: AreaMap
    policy: SharingPolicy


def with_national_products(drafts: Iterable[Draft], setup: NationalSetup) -> Iterator[Draft | FusedDraft]:
    """The sensors' drafts (in emit order) with every nation's fused products and alerts merged
    in, in emit order; nothing emitted after the scenario's end."""
    at = at_clock(setup.start_time)
    cells = {
        n: FusionCell(
            n,
            areas=setup.areas,
            at=at,
            prediction_interval_s=setup.prediction_interval_s,
            rng=random.Random(f"{setup.seed}:fusion:{n.value}"),
        )
        for n in Nation
    }
    authorities = {
        n: AlertAuthority(
            n,
            areas=setup.areas,
            exercise=setup.exercise,
            rng=random.Random(f"{setup.seed}:authority:{n.value}"),
        )
        for n in Nation
    }
    order = itertools.count()
    # (time, rank, tie, kind, item): at equal times, deliveries before publications
    heap: list[tuple[float, int, tuple[str, str, int], int, object]] = []
    tick = TICK_S
    while tick <= setup.duration_s:
        for n in Nation:
            heapq.heappush(heap, (tick, 0, ("", n.value, 0), next(order), n))
        tick += TICK_S

    def publish(products: list[FusedDraft]) -> None:
        for p in products:
            if p.emit_offset_s <= setup.duration_s:
                heapq.heappush(
                    heap, (p.emit_offset_s, 1, (p.source_id, p.correlation_key, 0), next(order), p)
                )
            for alert in authorities[p.nation].consider(p):
                if alert.emit_offset_s <= setup.duration_s:
                    key = (alert.source_id, alert.correlation_key, 0)
                    heapq.heappush(heap, (alert.emit_offset_s, 1, key, next(order), alert))

    def drain(until_s: float) -> Iterator[FusedDraft]:
        while heap and heap[0][0] <= until_s:
            at_s, _, _, _, item = heapq.heappop(heap)
            if isinstance(item, FusedDraft):
                yield item
            elif isinstance(item, _Delivery):
                publish(cells[item.nation].receive(item.report))
            else:
                assert isinstance(item, Nation)
                publish(cells[item].expire(at_s))

    for draft in drafts:
        yield from drain(draft.emit_offset_s)
        yield draft
        payload = draft.payload
        if not isinstance(payload, LaunchDetection | TrackUpdate):
            continue
        sensor_nation = draft.sensor.nation
        for nation in Nation:
            if not setup.policy.may_receive(sensor_nation, nation, payload.KIND):
                continue
            hub = setup.policy.relayed_by_hub(sensor_nation, nation, payload.KIND)
            received = draft.emit_offset_s + (HUB_LINK_S if hub else DIRECT_LINK_S)
            report = Report(received, draft.measured_offset_s, draft.sensor.id, sensor_nation, payload)
            heapq.heappush(heap, (received, 0, ("", nation.value, 0), next(order), _Delivery(nation, report)))
    yield from drain(setup.duration_s)
