"""The recording file format: Avro object container files of captured Kafka records.

One file holds a run of :class:`RecordedMessage` rows in the container format of the Avro
specification (header with metadata and a 16-byte sync marker, then blocks of records, each
followed by the marker), deflate-compressed. The original key, value and headers are kept as
bytes and are authoritative: the decoded fields next to them (kind, correlation key, sensor,
event times) are conveniences for filtering and reports, and a record that could not be decoded
is still kept, flagged with the decode error's reason code.

Writing uses fastavro's streaming ``Writer`` and ends a block every few records or every second,
so a recorder that crashes leaves a file whose complete blocks are all readable. Reading parses
the container itself (not with fastavro's reader) so that a damaged file yields every record
before the damage plus an exact account of where the damage starts and what was lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final

from fastavro import parse_schema, schemaless_reader
from fastavro.write import Writer

from schemas import decode_event, parse_headers
from schemas._guard import read_long
from schemas.errors import MalformedBodyError, TruncatedError
from schemas.headers import SENT_NS_HEADER
from trilink.errors import DeserializationError
from trilink.latency import CREATE_TIME, LOG_APPEND_TIME, decode_sent_ns, epoch_us
from trilink.replay.errors import RecordingError
from trilink.resources import package_path

__all__ = [
    "FORMAT_VERSION",
    "RECORDING_SCHEMA",
    "SHIPPED_DIR",
    "RecordedMessage",
    "Recording",
    "RecordingWriter",
    "capture",
    "epoch_us",
    "original_send_ns",
    "read_recording",
    "resolve_recordings",
]

#: Version of the row schema below, written into every file's metadata.
FORMAT_VERSION: Final = "1"
#: Where the shipped recordings live (``trilink replay single_srbm`` looks here).
SHIPPED_DIR: Final = package_path("trilink.replay", "recordings")
SCHEMA_NAME: Final = "trilink.replay.RecordedMessage"

_MAGIC: Final = b"Obj\x01"
_SYNC_BYTES: Final = 16
_TIMESTAMP_TYPES: Final = {CREATE_TIME: "CREATE_TIME", LOG_APPEND_TIME: "LOG_APPEND_TIME"}


def _nullable(avro_type: Any, doc: str, name: str) -> dict[str, Any]:
    return {"name": name, "type": ["null", avro_type], "default": None, "doc": doc}


#: One captured Kafka record. Field order is the order on disk; add fields only at the end,
#: with a default, so older recordings keep resolving to the newer reader.
RECORDING_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "RecordedMessage",
    "namespace": "trilink.replay",
    "doc": "One Kafka record as consumed: original bytes (authoritative) plus decoded conveniences.",
    "fields": [
        {"name": "topic", "type": "string", "doc": "Topic it was consumed from."},
        {"name": "partition", "type": "int", "doc": "Partition it was consumed from."},
        {"name": "offset", "type": "long", "doc": "Its offset in that partition."},
        {"name": "timestamp_ms", "type": "long", "doc": "Record timestamp, ms since the epoch."},
        {
            "name": "timestamp_type",
            "type": {
                "type": "enum",
                "name": "TimestampType",
                "symbols": ["NONE", "CREATE_TIME", "LOG_APPEND_TIME"],
                "default": "NONE",
            },
            "doc": "What timestamp_ms is: producer create time or broker append time.",
        },
        _nullable("bytes", "Original key bytes (null for a null key).", "key"),
        _nullable("bytes", "Original value bytes (null for a tombstone).", "value"),
        {
            "name": "headers",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "RecordedHeader",
                    "fields": [
                        {"name": "key", "type": "string"},
                        {"name": "value", "type": ["null", "bytes"], "default": None},
                    ],
                },
            },
            "doc": "Original headers, in order.",
        },
        _nullable(
            "long", "The producer's send-time header (trilink_sent_ns), ns since the epoch.", "sent_ns"
        ),
        {"name": "received_ns", "type": "long", "doc": "When the recorder received it, ns since the epoch."},
        _nullable("string", "Event kind (decoded, or from ce_type when undecodable).", "kind"),
        _nullable("string", "Correlation key (decoded, or from ce_subject).", "correlation_key"),
        _nullable("string", "Sensor id (decoded).", "sensor_id"),
        _nullable("string", "Nation operating the sensor (decoded).", "sensor_nation"),
        _nullable("string", "Event id (decoded, or from ce_id).", "event_id"),
        _nullable("long", "Event emitted_at, µs since the epoch (decoded).", "emitted_at_us"),
        _nullable("long", "Event measured_at, µs since the epoch (decoded).", "measured_at_us"),
        {
            "name": "emit_offset_us",
            "type": "long",
            "doc": "Send time (header, else broker timestamp) minus that of the session's first "
            "recorded record, µs; negative when partitions interleave.",
        },
        _nullable("string", "Reason code when the value could not be decoded.", "decode_error"),
        _nullable("string", "What was wrong with the value, for humans.", "decode_detail"),
    ],
}
_PARSED: Final = parse_schema(RECORDING_SCHEMA)


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One captured record (see :data:`RECORDING_SCHEMA` for the meaning of each field)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    sent_ns: int | None
    received_ns: int
    kind: str | None = None
    correlation_key: str | None = None
    sensor_id: str | None = None
    sensor_nation: str | None = None
    event_id: str | None = None
    emitted_at_us: int | None = None
    measured_at_us: int | None = None
    emit_offset_us: int = 0
    decode_error: str | None = None
    decode_detail: str | None = None

    @property
    def send_time_ns(self) -> int:
        """The original send time: the send-time header, else the broker timestamp."""
        return self.sent_ns if self.sent_ns is not None else self.timestamp_ms * 1_000_000

    @property
    def fingerprint(self) -> int | None:
        """The schema fingerprint in a single-object encoded value, if it has the marker."""
        value = self.value
        if value is None or len(value) < 10 or value[:2] != b"\xc3\x01":
            return None
        return int.from_bytes(value[2:10], "little")

    def to_avro(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["headers"] = [{"key": k, "value": v} for k, v in self.headers]
        return row

    @classmethod
    def from_avro(cls, row: Mapping[str, Any]) -> RecordedMessage:
        fields = dict(row)
        fields["headers"] = tuple((h["key"], h["value"]) for h in row["headers"])
        return cls(**fields)


def capture(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    timestamp_type: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]] | None,
    received_ns: int,
    origin_ns: int,
) -> RecordedMessage:
    """Build the row for one consumed record, decoding what can be decoded and flagging the rest.

    ``origin_ns`` is the send time of the session's first record (for ``emit_offset_us``).
    """
    header_list = tuple((str(k), None if v is None else bytes(v)) for k, v in headers or ())
    sent_ns = _sent_ns(header_list)
    message = RecordedMessage(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        timestamp_type=_TIMESTAMP_TYPES.get(timestamp_type, "NONE"),
        key=key,
        value=value,
        headers=header_list,
        sent_ns=sent_ns,
        received_ns=received_ns,
    )
    send_ns = message.send_time_ns
    conveniences: dict[str, Any] = {"emit_offset_us": (send_ns - origin_ns) // 1000}
    try:
        if value is None:
            raise _NoValueError
        event = decode_event(value)
    except (DeserializationError, _NoValueError) as exc:
        conveniences.update(_from_headers(header_list))
        if key is not None:  # the record key is the correlation key (ce_subject in older records)
            with contextlib.suppress(UnicodeDecodeError):
                conveniences["correlation_key"] = key.decode("utf-8")
        if isinstance(exc, DeserializationError):
            conveniences["decode_error"] = exc.reason
            conveniences["decode_detail"] = exc.message
        else:
            conveniences["decode_error"] = "no_value"
            conveniences["decode_detail"] = "the record has no value (tombstone)"
    else:
        h = event.header
        conveniences.update(
            kind=event.kind.value,
            correlation_key=h.correlation_key,
            sensor_id=h.sensor_id,
            sensor_nation=h.sensor_nation.value,
            event_id=str(h.event_id),
            emitted_at_us=epoch_us(h.emitted_at),
            measured_at_us=epoch_us(h.measured_at),
        )
    return dataclasses.replace(message, **conveniences)


def _sent_ns(headers: Iterable[tuple[str, bytes | None]]) -> int | None:
    for name, raw in headers:
        if name == SENT_NS_HEADER and raw is not None:
            return decode_sent_ns(raw)
    return None


def original_send_ns(headers: Iterable[tuple[str, bytes | None]], timestamp_ms: int) -> int:
    """A record's send time: its send-time header, else its broker timestamp (ns)."""
    sent = _sent_ns(headers)
    return sent if sent is not None else timestamp_ms * 1_000_000


class _NoValueError(Exception):
    pass


def _from_headers(headers: tuple[tuple[str, bytes | None], ...]) -> dict[str, Any]:
    """What the CloudEvents headers say about an undecodable value (nothing if they are bad too)."""
    try:
        parsed = parse_headers(headers)
    except DeserializationError:
        return {}
    return {
        "kind": parsed.kind.value,
        "event_id": str(parsed.event_id),
    }


# --- writing ---------------------------------------------------------------------------------


class RecordingWriter:
    """Writes rows into a rolling series of files ``<directory>/<name>.<NNNN>.avro``.

    A new file starts when the open one holds ``max_bytes`` (counted conservatively: the bytes
    on disk plus the uncompressed size of the open block) or has been open ``max_seconds``.
    A block ends every ``flush_records`` rows, every ``flush_interval_s`` seconds (see
    :meth:`tick`) or when it reaches ``sync_interval_bytes``; each block end is flushed to the
    operating system and fsync'ed, so a crash loses at most the open block.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        metadata: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        flush_records: int = 100,
        flush_interval_s: float = 1.0,
        sync_interval_bytes: int = 64 * 1024,
        fsync: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.directory = directory
        self.name = name
        self.metadata = dict(metadata or {})
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.flush_records = max(1, flush_records)
        self.flush_interval_s = flush_interval_s
        self.sync_interval_bytes = sync_interval_bytes
        self.fsync = fsync
        self._clock = clock
        self.files: list[Path] = []
        self.records_written = 0
        self._fo: IO[bytes] | None = None
        self._writer: Writer | None = None
        self._opened_at = 0.0
        self._flushed_at = 0.0
        self._pending_records = 0
        self._pending_bytes = 0

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, message: RecordedMessage) -> None:
        """Append one row, starting a new file first when the open one is full or old."""
        size_bytes = _estimated_bytes(message)
        if self._writer is not None and self._should_roll(size_bytes):
            self._close_file()
        if self._writer is None:
            self._open_file()
        assert self._writer is not None
        self._writer.write(message.to_avro())
        self.records_written += 1
        self._pending_records += 1
        self._pending_bytes += size_bytes
        if self._writer.block_count == 0:  # fastavro ended the block at sync_interval
            self._block_written()
        elif self._pending_records >= self.flush_records:
            self.flush()

    def tick(self) -> None:
        """Call regularly (also when no records arrive): ends the open block after the interval."""
        if self._pending_records and self._clock() - self._flushed_at >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """End the open block and push it to disk."""
        if self._writer is None or self._fo is None:
            return
        self._writer.flush()
        self._block_written()

    def close(self) -> None:
        """Write the last block and close the file (what SIGINT/SIGTERM lead to)."""
        if self._writer is not None:
            self._close_file()

    @property
    def current_path(self) -> Path | None:
        return self.files[-1] if self._writer is not None else None

    def _should_roll(self, next_bytes: int) -> bool:
        assert self._fo is not None
        if self.max_seconds is not None and self._clock() - self._opened_at >= self.max_seconds:
            return True
        if self.max_bytes is not None:
            on_disk = self._fo.tell()
            return on_disk + self._pending_bytes + next_bytes > self.max_bytes
        return False

    def _open_file(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.name}.{len(self.files):04d}.avro"
        metadata = {
            **self.metadata,
            "trilink.recording.format": FORMAT_VERSION,
            "trilink.recording.file_index": str(len(self.files)),
            "trilink.recording.opened_ns": str(time.time_ns()),
        }
        fo = path.open("wb")
        try:
            self._writer = Writer(
                fo,
                _PARSED,
                codec="deflate",
                sync_interval=self.sync_interval_bytes,
                metadata=metadata,
            )
        except BaseException:
            fo.close()
            raise
        self._fo = fo
        self.files.append(path)
        self._opened_at = self._flushed_at = self._clock()
        self._sync_to_disk()

    def _block_written(self) -> None:
        assert self._fo is not None
        self._sync_to_disk()
        self._pending_records = 0
        self._pending_bytes = 0
        self._flushed_at = self._clock()

    def _sync_to_disk(self) -> None:
        assert self._fo is not None
        self._fo.flush()
        if self.fsync:
            os.fsync(self._fo.fileno())

    def _close_file(self) -> None:
        assert self._writer is not None and self._fo is not None
        try:
            self.flush()
        finally:
            self._fo.close()
            self._writer = None
            self._fo = None


def _estimated_bytes(message: RecordedMessage) -> int:
    # Upper bound of the row's uncompressed Avro size (varints and strings are generous).
    size = 128 + len(message.topic) + len(message.key or b"") + len(message.value or b"")
    size += sum(len(k) + len(v or b"") + 4 for k, v in message.headers)
    for text in (message.kind, message.correlation_key, message.sensor_id, message.event_id):
        size += len(text or "")
    return size + len(message.decode_detail or "")


# --- reading ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Recording:
    """What could be read from one file: its rows, metadata and any damage found."""

    path: Path
    metadata: dict[str, str]
    messages: list[RecordedMessage]
    blocks_read: int
    size_bytes: int
    #: Set when the file is damaged: every row before the damage is in ``messages``.
    damage: RecordingError | None = None
    #: Byte offset where the unreadable part starts (the start of the first bad block).
    damage_at_byte: int | None = None


class _TruncatedError(Exception):
    pass


class _CorruptError(Exception):
    pass


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """One Avro ``long`` at ``pos`` (the contract's reader), in this module's own error terms."""
    try:
        return read_long(data, pos)
    except TruncatedError:
        raise _TruncatedError from None
    except MalformedBodyError as exc:
        raise _CorruptError(str(exc)) from None


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _read_long(data, pos)
    if length < 0:
        raise _CorruptError("a negative length")
    if pos + length > len(data):
        raise _TruncatedError
    return data[pos : pos + length], pos + length


def _read_header(data: bytes, path: Path) -> tuple[dict[str, bytes], bytes, int]:
    if not data:
        raise RecordingError("not_a_recording", f"{path}: the file is empty, not an Avro object container")
    if data[: len(_MAGIC)] != _MAGIC[: len(data)]:
        raise RecordingError(
            "not_a_recording",
            f"{path}: not an Avro object container file (it starts with {data[:4].hex(' ')}, "
            f"expected {_MAGIC.hex(' ')})",
        )
    metadata: dict[str, bytes] = {}
    try:
        if len(data) < len(_MAGIC):
            raise _TruncatedError
        pos = len(_MAGIC)
        while True:
            count, pos = _read_long(data, pos)
            if count == 0:
                break
            if count < 0:  # a block with its byte size, which we do not need
                count = -count
                _, pos = _read_long(data, pos)
            for _ in range(count):
                raw_key, pos = _read_bytes(data, pos)
                value, pos = _read_bytes(data, pos)
                metadata[raw_key.decode("utf-8", "replace")] = value
        if pos + _SYNC_BYTES > len(data):
            raise _TruncatedError
        sync = data[pos : pos + _SYNC_BYTES]
        return metadata, sync, pos + _SYNC_BYTES
    except _TruncatedError:
        raise RecordingError(
            "truncated_recording",
            f"{path}: the file ends inside its Avro header ({len(data)} bytes): no record is readable",
        ) from None
    except _CorruptError as exc:
        raise RecordingError("not_a_recording", f"{path}: the Avro header is malformed ({exc})") from None


def _writer_schema(metadata: dict[str, bytes], path: Path) -> Any:
    try:
        schema = json.loads(metadata["avro.schema"].decode("utf-8"))
        parsed = parse_schema(schema)
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordingError(
            "not_a_recording", f"{path}: the Avro header has no usable schema ({exc!r})"
        ) from None
    name = schema.get("name") if isinstance(schema, dict) else None
    namespace = schema.get("namespace", "") if isinstance(schema, dict) else ""
    full = name if not namespace or (isinstance(name, str) and "." in name) else f"{namespace}.{name}"
    if full != SCHEMA_NAME:
        raise RecordingError(
            "not_a_recording",
            f"{path}: an Avro container of {full!r} records, not a trilink recording ({SCHEMA_NAME})",
        )
    return parsed


_CODECS: Final[dict[str, Callable[[bytes], bytes]]] = {
    "null": lambda raw: raw,
    "deflate": lambda raw: zlib.decompress(raw, -15),
}


def read_recording(path: Path | str) -> Recording:
    """Read every row of one recording; a damaged tail is reported in ``damage``, not raised.

    Raises :class:`RecordingError` only when nothing at all can be read: the file is missing
    (``missing_recording``), is not an Avro container of recording rows (``not_a_recording``)
    or ends inside its header (``truncated_recording``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError("missing_recording", f"{path}: {exc.strerror or exc}") from None
    metadata_raw, sync, pos = _read_header(data, path)
    writer_schema = _writer_schema(metadata_raw, path)
    metadata = {k: v.decode("utf-8", "replace") for k, v in metadata_raw.items()}
    codec_name = metadata.get("avro.codec", "null")
    codec = _CODECS.get(codec_name)
    if codec is None:
        raise RecordingError("not_a_recording", f"{path}: unsupported Avro codec {codec_name!r}")
    recording = Recording(path, metadata, [], 0, len(data))
    while pos < len(data):
        block_start = pos
        declared: int | None = None
        try:
            declared, pos = _read_long(data, pos)
            size, pos = _read_long(data, pos)
            if declared < 0 or size < 0:
                raise _CorruptError("a negative record count or size")
            if pos + size > len(data):
                raise _TruncatedError
            payload = data[pos : pos + size]
            pos += size
            if pos + _SYNC_BYTES > len(data):
                raise _TruncatedError
            if data[pos : pos + _SYNC_BYTES] != sync:
                raise _CorruptError("its sync marker does not match the header's")
            pos += _SYNC_BYTES
            rows = _decode_block(codec, payload, declared, writer_schema)
        except _TruncatedError:
            _damaged(recording, "truncated_recording", "the file ends inside", block_start, declared)
            break
        except _CorruptError as exc:
            _damaged(recording, "corrupt_recording", f"{exc} in", block_start, declared)
            break
        recording.messages.extend(rows)
        recording.blocks_read += 1
    return recording


def _decode_block(
    codec: Callable[[bytes], bytes], payload: bytes, count: int, writer_schema: Any
) -> list[RecordedMessage]:
    try:
        raw = codec(payload)
    except zlib.error as exc:
        raise _CorruptError(f"the block does not decompress ({exc})") from None
    stream = io.BytesIO(raw)
    rows = []
    try:
        for _ in range(count):
            row: Any = schemaless_reader(stream, writer_schema, _PARSED)
            rows.append(RecordedMessage.from_avro(row))
    except (EOFError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise _CorruptError(f"a row does not decode ({type(exc).__name__})") from None
    if stream.tell() != len(raw):
        raise _CorruptError("bytes follow the declared rows")
    return rows


def _damaged(recording: Recording, reason: str, what: str, block_start: int, declared: int | None) -> None:
    lost_bytes = recording.size_bytes - block_start
    declared_text = f", which declares {declared} record(s)" if declared is not None and declared >= 0 else ""
    recording.damage_at_byte = block_start
    recording.damage = RecordingError(
        reason,
        f"{recording.path}: {what} block {recording.blocks_read} at byte {block_start}{declared_text}; "
        f"read {len(recording.messages)} record(s) from {recording.blocks_read} complete block(s), "
        f"lost the last {lost_bytes} byte(s)",
    )


def resolve_recordings(names: Iterable[str], shipped_dir: Path = SHIPPED_DIR) -> list[Path]:
    """Turn command-line names into files: a path as given, else a shipped recording's files.

    ``single_srbm`` means ``recordings/single_srbm.avro`` or its rolled files
    ``recordings/single_srbm.NNNN.avro``; no names means every shipped recording (they were made
    back to back, so merged on their original timeline they play one after the other).
    """
    names = list(names)
    if not names:
        found = sorted(shipped_dir.glob("*.avro"))
        if not found:
            raise RecordingError("missing_recording", f"no shipped recordings in {shipped_dir}")
        return found
    paths: list[Path] = []
    for name in names:
        candidate = Path(name)
        if candidate.exists():
            paths.append(candidate)
            continue
        if (shipped_dir / name).is_file():
            paths.append(shipped_dir / name)
            continue
        if candidate.suffix or os.sep in name:
            raise RecordingError("missing_recording", f"{name}: no such file")
        rolled = sorted(shipped_dir.glob(f"{name}.[0-9][0-9][0-9][0-9].avro"))
        single = shipped_dir / f"{name}.avro"
        if single.exists():
            rolled.insert(0, single)
        if not rolled:
            available = sorted({p.name.split(".")[0] for p in shipped_dir.glob("*.avro")})
            raise RecordingError(
                "missing_recording",
                f"{name}: no such file and no shipped recording of that name (shipped: {', '.join(available) or 'none'})",
            )
        paths.extend(rolled)
    return paths
