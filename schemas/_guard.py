"""A structural pre-check of Avro binary bodies, run before fastavro touches them.

fastavro trusts the lengths and counts it reads: a varint claiming 2**31 array items makes
it loop (or allocate) before it notices the data is missing. This module compiles each
*trusted* writer schema into a checker that walks the untrusted bytes once, verifying every
varint, length, count, enum and union index against the schema and the bytes left, and that
the body ends exactly at the end of the message. Work is O(message size); nothing is built.
Consecutive fixed-width fields (doubles, nested records of doubles) collapse into one step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.errors import MalformedBodyError, TrailingBytesError, TruncatedError

#: Largest item count one array or map block may declare; bounds zero-width items too.
MAX_BLOCK_ITEMS = 65_536

#: A step takes (data, position) and returns the position after the value it checked.
Step = Callable[[bytes, int], int]
#: A compiled schema: a fixed width in bytes, or a step for variable-width values.
Compiled = int | Step

_FIXED_WIDTH = {"null": 0, "float": 4, "double": 8}


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one Avro ``long`` (zig-zag varint) at ``pos``; returns (value, next position).

    The project's one varint reader (the guard, the fast codec and the recording format use it):
    at most 10 bytes and below 2**64 before zig-zag, as the Avro spec allows for a long, else
    :class:`MalformedBodyError`; :class:`TruncatedError` when the data ends inside it. A
    one-byte value (most of them) costs one index and one comparison.
    """
    try:
        byte = data[pos]
        if byte < 0x80:
            return (byte >> 1) ^ -(byte & 1), pos + 1
        result = byte & 0x7F
        shift = 7
        pos += 1
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise MalformedBodyError(f"varint longer than 10 bytes ending at byte {pos}")
    except IndexError:
        raise TruncatedError(f"varint runs past the end at byte {len(data)}") from None
    if result >> 64:
        raise MalformedBodyError(f"varint out of 64-bit range ending at byte {pos}")
    return (result >> 1) ^ -(result & 1), pos


def _skip(width: int) -> Step:
    def step(data: bytes, pos: int) -> int:
        pos += width
        if pos > len(data):
            raise TruncatedError(f"body ends inside a {width}-byte value")
        return pos

    return step


def _as_step(compiled: Compiled) -> Step:
    return _skip(compiled) if isinstance(compiled, int) else compiled


def _long(data: bytes, pos: int) -> int:
    return read_long(data, pos)[1]


def _boolean(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise TruncatedError("body ends before a boolean")
    if data[pos] > 1:
        raise MalformedBodyError(f"boolean byte {data[pos]} at byte {pos} is neither 0 nor 1")
    return pos + 1


def _length(data: bytes, pos: int) -> int:
    size, pos = read_long(data, pos)
    if size < 0:
        raise MalformedBodyError(f"negative length {size} at byte {pos}")
    pos += size
    if pos > len(data):
        raise TruncatedError(f"length {size} runs past the end of the body")
    return pos


def _enum(count: int) -> Step:
    def step(data: bytes, pos: int) -> int:
        index, pos = read_long(data, pos)
        if not 0 <= index < count:
            raise MalformedBodyError(f"enum index {index} outside 0..{count - 1}")
        return pos

    return step


def _union(branches: list[Step]) -> Step:
    count = len(branches)

    def step(data: bytes, pos: int) -> int:
        index, pos = read_long(data, pos)
        if not 0 <= index < count:
            raise MalformedBodyError(f"union index {index} outside 0..{count - 1}")
        return branches[index](data, pos)

    return step


def _blocks(item: Step, min_item_bytes: int) -> Step:
    def step(data: bytes, pos: int) -> int:
        while True:
            count, pos = read_long(data, pos)
            if count == 0:
                return pos
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                size, pos = read_long(data, pos)
                if size < 0 or pos + size > len(data):
                    raise TruncatedError(f"block size {size} runs past the end of the body")
            if count > MAX_BLOCK_ITEMS:
                raise MalformedBodyError(f"block declares {count} items (limit {MAX_BLOCK_ITEMS})")
            if count * min_item_bytes > len(data) - pos:
                raise TruncatedError(f"block declares {count} items but too few bytes remain")
            for _ in range(count):
                pos = item(data, pos)

    return step


def _sequence(parts: list[Compiled]) -> Compiled:
    merged: list[Compiled] = []
    for part in parts:
        if isinstance(part, int) and merged and isinstance(merged[-1], int):
            merged[-1] += part
        elif part != 0:
            merged.append(part)
    if not merged:
        return 0
    if len(merged) == 1:
        return merged[0]
    steps = [_as_step(part) for part in merged]

    def step(data: bytes, pos: int) -> int:
        for part in steps:
            pos = part(data, pos)
        return pos

    return step


def _min_bytes(schema: Any) -> int:
    """Fewest bytes any value of the schema takes (lengths and counts take one at least)."""
    if isinstance(schema, str):
        return _FIXED_WIDTH.get(schema, 1)
    if isinstance(schema, list):
        return 1
    kind = schema["type"]
    if kind == "record":
        return sum(_min_bytes(f["type"]) for f in schema["fields"])
    if kind == "fixed":
        return int(schema["size"])
    return _min_bytes(kind) if isinstance(kind, str) and kind in _FIXED_WIDTH else 1


def compile_schema(schema: Any, named: dict[str, Any] | None = None) -> Compiled:
    """Compile a fastavro-parsed schema (names expanded) into a checker."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in _FIXED_WIDTH:
            return _FIXED_WIDTH[schema]
        if schema in ("int", "long"):
            return _long
        if schema == "boolean":
            return _boolean
        if schema in ("string", "bytes"):
            return _length
        return compile_schema(named[schema], named)
    if isinstance(schema, list):
        return _union([_as_step(compile_schema(branch, named)) for branch in schema])
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return _sequence([compile_schema(f["type"], named) for f in schema["fields"]])
    if kind == "enum":
        named[schema["name"]] = schema
        return _enum(len(schema["symbols"]))
    if kind == "fixed":
        named[schema["name"]] = schema
        return int(schema["size"])
    if kind == "array":
        items = schema["items"]
        return _blocks(_as_step(compile_schema(items, named)), _min_bytes(items))
    if kind == "map":
        value = _sequence([_length, compile_schema(schema["values"], named)])
        return _blocks(_as_step(value), 1)
    return compile_schema(kind, named)  # {"type": "long", "logicalType": ...}


def make_checker(parsed_schema: Any) -> Callable[[bytes, int], None]:
    """A function that raises a typed error unless ``data[start:]`` is exactly one body."""
    step = _as_step(compile_schema(parsed_schema))

    def check(data: bytes, start: int) -> None:
        end = step(data, start)
        if end != len(data):
            raise TrailingBytesError(f"{len(data) - end} bytes follow the end of the body")

    return check
