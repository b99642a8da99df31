"""Schema evolution guard: FULL compatibility (backward and forward) between Avro schemas.

Implements the Avro specification's schema-resolution rules as a static check: a reader can
read a writer's data when record fields it adds have defaults, enum symbols the writer may
send exist in the reader (or the reader has an enum default), types are equal or promoted
(int->long->float->double, string<->bytes), named types keep their names (or aliases) and
every writer union branch has a reader branch. One deliberate extra: a changed
``logicalType`` is reported too, because the bytes would resolve but mean something else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastavro import parse_schema

from schemas.avro import ReleasedSchema
from schemas.errors import IncompatibleSchemaError, SchemaDefinitionError

__all__ = ["check_full_compatibility", "reader_problems"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


class _Side:
    """One schema with its named types expanded to full names."""

    def __init__(self, schema: Any) -> None:
        self.named: dict[str, Any] = {}
        try:
            self.root = parse_schema(schema, named_schemas=self.named, _write_hint=False)
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise SchemaDefinitionError("bad_schema", f"not a valid Avro schema: {exc}") from exc

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self.named[schema]
        return schema


def _type_of(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    kind = schema["type"]
    return kind if isinstance(kind, str) else _type_of(kind)


def _logical(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _label(schema: Any) -> str:
    return _short(schema["name"]) if isinstance(schema, dict) and "name" in schema else _type_of(schema)


class _Checker:
    """Collects every reason ``reader`` cannot read data written with ``writer``."""

    def __init__(self, reader: _Side, writer: _Side) -> None:
        self.reader = reader
        self.writer = writer
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def _branch_for(self, union: list[Any], writer: Any) -> Any | None:
        # Spec: the first reader branch that matches exactly, else the first it promotes to.
        w_type = _type_of(writer)
        candidates = [self.reader.resolve(branch) for branch in union]
        for branch in candidates:
            if _type_of(branch) == w_type and (
                w_type not in ("record", "enum", "fixed") or self._names_match(branch, writer)
            ):
                return branch
        for branch in candidates:
            if _type_of(branch) in _PROMOTIONS.get(w_type, ()):
                return branch
        return None

    @staticmethod
    def _names_match(reader: Any, writer: Any) -> bool:
        names = {reader["name"], *reader.get("aliases", ())}
        return writer["name"] in names or _short(writer["name"]) in {_short(n) for n in names}

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = self.reader.resolve(reader)
        writer = self.writer.resolve(writer)
        if isinstance(writer, list):
            for named in writer:
                branch = self.writer.resolve(named)
                self.check(reader, branch, f"{path}<{_label(branch)}>")
            return
        if isinstance(reader, list):
            match = self._branch_for(reader, writer)
            if match is None:
                self.problems.append(f"{path}: no reader union branch accepts {_label(writer)}")
            else:
                self.check(match, writer, path)
            return
        r_type, w_type = _type_of(reader), _type_of(writer)
        if r_type != w_type:
            if r_type not in _PROMOTIONS.get(w_type, ()):
                self.problems.append(f"{path}: type changed from {w_type} to {r_type}")
            return
        if _logical(reader) != _logical(writer):
            self.problems.append(f"{path}: logicalType changed from {_logical(writer)} to {_logical(reader)}")
        if r_type in ("record", "enum", "fixed") and not self._names_match(reader, writer):
            self.problems.append(f"{path}: name changed from {writer['name']} to {reader['name']}")
            return
        if r_type == "record":
            self._record(reader, writer, path)
        elif r_type == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                self.problems.append(
                    f"{path}: enum symbol(s) {', '.join(missing)} missing and no enum default"
                )
        elif r_type == "fixed" and reader["size"] != writer["size"]:
            self.problems.append(f"{path}: fixed size changed {writer['size']} -> {reader['size']}")
        elif r_type == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif r_type == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")

    def _record(self, reader: Any, writer: Any, path: str) -> None:
        key = (reader["name"], writer["name"])
        if key in self._seen:  # recursive types: each pair is checked once
            return
        self._seen.add(key)
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            source = next((written[n] for n in names if n in written), None)
            where = f"{path}.{field['name']}"
            if source is not None:
                self.check(field["type"], source["type"], where)
            elif "default" not in field:
                self.problems.append(f"{where}: field is new to the reader and has no default")


def reader_problems(reader_schema: Any, writer_schema: Any) -> list[str]:
    """Every reason data written with ``writer_schema`` cannot be read with ``reader_schema``."""
    reader, writer = _Side(reader_schema), _Side(writer_schema)
    checker = _Checker(reader, writer)
    checker.check(reader.root, writer.root, _short(_label(reader.root)))
    return checker.problems


def check_full_compatibility(candidate: Any, releases: Iterable[ReleasedSchema]) -> int:
    """Raise :class:`IncompatibleSchemaError` unless ``candidate`` is fully compatible with
    every release; returns how many releases were checked."""
    problems: list[str] = []
    count = 0
    for release in releases:
        count += 1
        problems += [
            f"{release.label} data, candidate reader: {p}" for p in reader_problems(candidate, release.schema)
        ]
        problems += [
            f"candidate data, {release.label} reader: {p}" for p in reader_problems(release.schema, candidate)
        ]
    if problems:
        raise IncompatibleSchemaError(problems)
    return count
