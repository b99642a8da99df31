"""Contract v2 (issue #12): ``missile_class`` on track updates, impact predictions and alerts,
fully compatible with v1 in both directions, on the fast and the reference path."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from schemas import _fast, avro, codec
from schemas.compat import reader_problems
from schemas.models import EventKind, MissileClass, WarningEvent
from schemas.samples import sample_event

pytestmark = pytest.mark.unit

CLASSED = (EventKind.TRACK_UPDATE, EventKind.IMPACT_PREDICTION, EventKind.ALERT)


def _releases() -> tuple[avro.ReleasedSchema, avro.ReleasedSchema]:
    released = avro.load_released()
    assert [r.label for r in released[:2]] == ["v1", "v2"]
    return released[0], released[1]


def _classed(kind: EventKind, cls: MissileClass) -> WarningEvent:
    event = sample_event(kind)
    payload = event.payload.model_copy(update={"missile_class": cls})
    return WarningEvent(header=event.header, payload=payload)


def test_v2_adds_only_optional_fields_to_v1() -> None:
    v1, v2 = _releases()
    assert reader_problems(v2.schema, v1.schema) == []  # v2 reads v1 data
    assert reader_problems(v1.schema, v2.schema) == []  # v1 reads v2 data
    assert avro.current().version >= 2


@pytest.mark.parametrize("kind", CLASSED)
@pytest.mark.parametrize("cls", list(MissileClass))
def test_the_class_round_trips_on_both_paths(kind: EventKind, cls: MissileClass) -> None:
    event = _classed(kind, cls)
    data = codec.encode_event(event)
    assert data == codec._encode_reference(event)  # the fast encoder writes fastavro's bytes
    fast = _fast.decode(data)
    assert fast is not None and fast == event  # the fast decoder accepts it ...
    assert codec._decode_reference(data) == event  # ... and agrees with the reference path
    assert codec.decode_event(data).payload.missile_class is cls  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", CLASSED)
def test_a_v1_reader_reads_v2_data_without_the_class(kind: EventKind) -> None:
    v1, v2 = _releases()
    data = codec.encode_event(_classed(kind, MissileClass.ICBM))
    body = io.BytesIO(data[codec.PREFIX_BYTES :])
    record: Any = schemaless_reader(body, v2.parsed, v1.parsed)
    payload = record["payload"]
    assert "missile_class" not in payload
    # what a v1 consumer builds from it is the same event with the class unknown
    old = WarningEvent.model_validate({"header": record["header"], "payload": payload})
    assert old.payload.missile_class is MissileClass.UNKNOWN  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", CLASSED)
def test_v1_data_decodes_with_the_class_unknown(kind: EventKind) -> None:
    v1, _ = _releases()
    event = sample_event(kind)  # UNKNOWN: the v1 payload says nothing about the class
    record = codec._to_record(event)
    name, payload = record["payload"]
    del payload["missile_class"]
    buffer = io.BytesIO()
    schemaless_writer(buffer, v1.parsed, {"header": record["header"], "payload": (name, payload)})
    data = codec.MAGIC + v1.fingerprint.to_bytes(8, "little") + buffer.getvalue()
    assert data[: len(_fast.PREFIX)] != _fast.PREFIX  # not the fast codec's: the reference path resolves it
    decoded = codec.decode_event(data)
    assert decoded == event
    assert decoded.payload.missile_class is MissileClass.UNKNOWN  # type: ignore[union-attr]
