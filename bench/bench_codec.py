"""Codec benchmark: time per event (µs) and bytes per event for every event kind.

Reports the public path (``encode_event`` / ``decode_event``, which take the specialised
``schemas._fast`` codec for current-release messages) next to the reference path it must agree
with (``_encode_reference`` / ``_decode_reference``: pydantic + guard + fastavro), and the
parts of each separately — the fast body writer and fast decoder alone, raw fastavro
encode/decode of a prepared record, the structural guard, pydantic dump/validation — against
JSON (orjson + the same pydantic models) as a baseline. Each figure is the median (default) or
the best of R repeats of N calls; ``--cpu`` times process CPU time instead of wall time, which
is steadier when other jobs share the cores.
Run: ``.venv/bin/python bench/bench_codec.py [--number N] [--repeat R] [--stat median|min] [--cpu]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from io import BytesIO
from typing import Any

import fastavro
import orjson
import pydantic
from fastavro import schemaless_reader, schemaless_writer

from schemas import _fast, avro, codec
from schemas.models import EventHeader, WarningEvent
from schemas.samples import sample_events


def _timer(stat: str, cpu: bool, number: int, repeat: int) -> Callable[[Callable[[], object]], float]:
    clock = time.process_time if cpu else time.perf_counter
    pick = statistics.median if stat == "median" else min

    def per_call_us(func: Callable[[], object]) -> float:
        runs = timeit.Timer(func, timer=clock).repeat(number=number, repeat=repeat)
        return pick(runs) / number * 1e6

    return per_call_us


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=15, help="repeats per figure")
    parser.add_argument("--stat", choices=("median", "min"), default="median")
    parser.add_argument("--cpu", action="store_true", help="time process CPU, not wall clock")
    args = parser.parse_args()
    n, r = args.number, args.repeat
    us = _timer(args.stat, args.cpu, n, r)

    print(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"# python {platform.python_version()}, fastavro {fastavro.__version__}, "
        f"pydantic {pydantic.VERSION}, orjson {orjson.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cpus; {args.stat} of {r} x {n} calls, "
        f"{'process CPU' if args.cpu else 'wall'} time, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"# fast path enabled: {codec._fast_prefix() is not None}")
    print(
        "# times in µs per event; enc/dec/sum = public encode_event/decode_event (fast path), "
        "ref_* = reference path (fastavro + guard + pydantic)"
    )
    columns = (
        "kind",
        "avro_B",
        "json_B",
        "enc",
        "dec",
        "sum",
        "ref_enc",
        "ref_dec",
        "ref_sum",
        "fast_body",
        "fast_dec",
        "raw_enc",
        "raw_dec",
        "guard",
        "pyd_dump",
        "pyd_valid",
        "json_enc",
        "json_dec",
    )
    print(" ".join(f"{c:>17}" if i == 0 else f"{c:>9}" for i, c in enumerate(columns)))
    parsed = avro.current().parsed
    check = codec._readers()[avro.current().fingerprint][2]
    for event in sample_events():
        data = codec.encode_event(event)
        record = codec._to_record(event)
        body = data[codec.PREFIX_BYTES :]
        decoded: Any = codec.decode_record(data)
        _name, payload = decoded["payload"]
        payload_type = type(event.payload)
        json_data = orjson.dumps(event.model_dump(mode="json"))

        def raw_encode(record: dict[str, Any] = record) -> None:
            schemaless_writer(BytesIO(), parsed, record)

        def raw_decode(body: bytes = body) -> None:
            schemaless_reader(BytesIO(body), parsed, None, return_record_name=True)

        def validate(
            header: Any = decoded["header"], payload: Any = payload, kind: Any = payload_type
        ) -> None:
            WarningEvent(header=EventHeader.model_validate(header), payload=kind.model_validate(payload))

        assert data == codec._encode_reference(event)
        assert codec.decode_event(data) == codec._decode_reference(data) == event
        timings = [
            us(lambda e=event: codec.encode_event(e)),
            us(lambda d=data: codec.decode_event(d)),
        ]
        timings.append(timings[0] + timings[1])
        timings += [
            us(lambda e=event: codec._encode_reference(e)),
            us(lambda d=data: codec._decode_reference(d)),
        ]
        timings.append(timings[3] + timings[4])
        timings += [
            us(lambda e=event: _fast.encode_body(e)),
            us(lambda d=data: _fast.decode(d)),
            us(raw_encode),
            us(raw_decode),
            us(lambda d=data: check(d, codec.PREFIX_BYTES)),
            us(lambda e=event: codec._to_record(e)),
            us(validate),
            us(lambda e=event: orjson.dumps(e.model_dump(mode="json"))),
            us(lambda j=json_data: WarningEvent.model_validate(orjson.loads(j))),
        ]
        cells = [f"{event.kind.value:>17}", f"{len(data):>9}", f"{len(json_data):>9}"]
        cells += [f"{t:>9.2f}" for t in timings]
        print(" ".join(cells))
    print(
        "# fast_body: schemas._fast.encode_body alone; fast_dec: schemas._fast.decode alone "
        "(structure + checks + models); raw_enc/raw_dec: fastavro alone on a prepared "
        "record/body; guard: the structural pre-check; pyd_dump: model -> record dict; "
        "pyd_valid: record dict -> validated model"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
