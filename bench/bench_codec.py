"""Codec benchmark: time per event (µs) and bytes per event for every event kind.

Reports the full public path (``encode_event`` / ``decode_event``: pydantic + guard + Avro)
and its parts separately — raw fastavro encode/decode of a prepared record, the structural
guard, pydantic dump/validation — against JSON (orjson + the same pydantic models) as a
baseline. Each figure is the best of several repeats (least disturbed by other load).
Run: ``.venv/bin/python bench/bench_codec.py [--number N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import timeit
from collections.abc import Callable
from io import BytesIO
from typing import Any

import fastavro
import orjson
import pydantic
from fastavro import schemaless_reader, schemaless_writer

from schemas import avro, codec
from schemas.models import EventHeader, WarningEvent
from schemas.samples import sample_events


def _best_us(func: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=repeat)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="repeats (best is kept)")
    args = parser.parse_args()
    n, r = args.number, args.repeat

    print(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"# python {platform.python_version()}, fastavro {fastavro.__version__}, "
        f"pydantic {pydantic.VERSION}, orjson {orjson.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cpus; best of {r} x {n} calls"
    )
    print("# times in µs per event; 'full' = public encode_event/decode_event")
    columns = (
        "kind",
        "avro_B",
        "json_B",
        "enc_full",
        "dec_full",
        "enc+dec",
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
            WarningEvent(
                header=EventHeader.model_validate(header), payload=kind.model_validate(payload)
            )

        timings = [
            _best_us(lambda e=event: codec.encode_event(e), n, r),
            _best_us(lambda d=data: codec.decode_event(d), n, r),
        ]
        timings.append(timings[0] + timings[1])
        timings += [
            _best_us(raw_encode, n, r),
            _best_us(raw_decode, n, r),
            _best_us(lambda d=data: check(d, codec.PREFIX_BYTES), n, r),
            _best_us(lambda e=event: codec._to_record(e), n, r),
            _best_us(validate, n, r),
            _best_us(lambda e=event: orjson.dumps(e.model_dump(mode="json")), n, r),
            _best_us(lambda j=json_data: WarningEvent.model_validate(orjson.loads(j)), n, r),
        ]
        cells = [f"{event.kind.value:>17}", f"{len(data):>9}", f"{len(json_data):>9}"]
        cells += [f"{t:>9.2f}" for t in timings]
        print(" ".join(cells))
    print(
        "# raw_enc/raw_dec: fastavro alone on a prepared record/body; guard: the structural "
        "pre-check; pyd_dump: model -> record dict; pyd_valid: record dict -> validated model"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
