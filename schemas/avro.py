"""The Avro side of the contract: the schema derived from the models, released versions,
Parsing Canonical Form and the CRC-64-AVRO fingerprint (both computed by fastavro).

The models in :mod:`schemas.models` are the single source of truth; :func:`derive_schema`
turns them into an Avro schema (docs from field descriptions). Each release freezes that
schema into ``released/trilink.warning.WarningEvent/v<N>.avsc`` forever; the newest release
is the writer schema and the reader schema, and every release stays decodable.
"""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin
from uuid import UUID

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, to_parsing_canonical_form
from fastavro.schema import fingerprint as _fastavro_fingerprint
from pydantic import AwareDatetime, BaseModel
from pydantic_core import PydanticUndefined

from schemas.errors import SchemaDefinitionError
from schemas.models import WarningEvent
from trilink.resources import package_path

__all__ = [
    "NAMESPACE",
    "RELEASED_DIR",
    "SCHEMA_NAME",
    "ReleasedSchema",
    "crc64_avro",
    "current",
    "derive_schema",
    "fingerprint",
    "load_released",
    "parsing_canonical_form",
    "record_schema",
    "released_by_fingerprint",
]

NAMESPACE = "trilink.warning"
SCHEMA_NAME = f"{NAMESPACE}.WarningEvent"
#: Where frozen releases live: one folder per top-level schema, one file per version.
RELEASED_DIR = package_path("schemas", "released")
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")

# --- Parsing Canonical Form and CRC-64-AVRO fingerprint: fastavro's ------------------------
# tests/contract/test_contract_fingerprint.py checks both against the Avro specification's
# algorithm and published vectors.

#: Fingerprint of the empty byte string; also the register's initial value (Avro spec).
EMPTY_FINGERPRINT = 0xC15D213AA4D7A795


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint the Avro spec calls CRC-64-AVRO, of UTF-8 text's bytes."""
    # fastavro returns the 8 bytes least significant first (the single-object encoding's order).
    digest = _fastavro_fingerprint(data.decode("utf-8"), "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(digest), "little")


def parsing_canonical_form(schema: Any) -> str:
    """The schema's Parsing Canonical Form: the text two parties fingerprint to agree on it."""
    try:
        return str(to_parsing_canonical_form(schema))
    except (SchemaParseException, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaDefinitionError("bad_schema", f"not an Avro schema: {schema!r} ({exc})") from exc


def fingerprint(schema: Any) -> int:
    """CRC-64-AVRO of the schema's Parsing Canonical Form (UTF-8)."""
    return crc64_avro(parsing_canonical_form(schema).encode("utf-8"))


# --- Schema derived from the models ----------------------------------------------------------


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def _avro_type(annotation: Any, defined: set[str]) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _avro_type(get_args(annotation)[0], defined)
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        branches = [_avro_type(a, defined) for a in args if a is not type(None)]
        return ["null", *branches] if type(None) in args else branches
    if origin is list:
        return {"type": "array", "items": _avro_type(get_args(annotation)[0], defined)}
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "long"
    if annotation is float:
        return "double"
    if annotation is str:
        return "string"
    if annotation is UUID:
        return {"type": "string", "logicalType": "uuid"}
    if annotation is datetime or annotation is AwareDatetime:
        return {"type": "long", "logicalType": "timestamp-micros"}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        if annotation.__name__ in defined:
            return annotation.__name__
        defined.add(annotation.__name__)
        return {
            "type": "enum",
            "name": annotation.__name__,
            "doc": _doc(annotation),
            "symbols": [member.value for member in annotation],
        }
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _record(annotation, defined)
    raise SchemaDefinitionError("bad_schema", f"no Avro mapping for {annotation!r}")


def _record(model: type[BaseModel], defined: set[str]) -> Any:
    if model.__name__ in defined:
        return model.__name__
    defined.add(model.__name__)
    fields = []
    for name, info in model.model_fields.items():
        if not info.description:
            raise SchemaDefinitionError("bad_schema", f"{model.__name__}.{name} has no description")
        field: dict[str, Any] = {
            "name": name,
            "type": _avro_type(info.rebuild_annotation(), defined),
            "doc": info.description,
        }
        if info.default is not PydanticUndefined:
            field["default"] = info.default
        elif info.default_factory is not None:
            field["default"] = info.default_factory()  # type: ignore[call-arg]
        fields.append(field)
    return {"type": "record", "name": model.__name__, "doc": _doc(model), "fields": fields}


def record_schema(model: type[BaseModel], namespace: str) -> dict[str, Any]:
    """The Avro record schema of ``model`` (field docs from descriptions) in ``namespace``."""
    schema = _record(model, set())
    assert isinstance(schema, dict)
    return {"type": "record", "name": schema["name"], "namespace": namespace} | {
        k: v for k, v in schema.items() if k not in ("type", "name")
    }


def derive_schema() -> dict[str, Any]:
    """The Avro schema the current models describe (what the next release would freeze)."""
    return record_schema(WarningEvent, NAMESPACE)


# --- Released versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasedSchema:
    """One frozen release: its version, file, JSON, fastavro-parsed form and fingerprint."""

    version: int
    path: Path
    schema: dict[str, Any]
    parsed: Any
    fingerprint: int

    @property
    def label(self) -> str:
        """Short human name, e.g. ``v1``."""
        return f"v{self.version}"


def load_schema_file(path: Path, version: int = 0) -> ReleasedSchema:
    """Read and parse one .avsc file (a release or a candidate)."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        parsed = parse_schema(schema)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SchemaDefinitionError("bad_schema", f"{path}: {exc}") from exc
    if not isinstance(schema, dict):
        raise SchemaDefinitionError("bad_schema", f"{path}: top level must be a record")
    return ReleasedSchema(version, path, schema, parsed, fingerprint(schema))


def load_released(directory: Path = RELEASED_DIR) -> tuple[ReleasedSchema, ...]:
    """Every released version of WarningEvent, oldest first."""
    folder = directory / SCHEMA_NAME
    found = []
    for path in folder.glob("*.avsc") if folder.is_dir() else ():
        match = _VERSION_FILE.match(path.name)
        if match is None:
            raise SchemaDefinitionError("bad_schema", f"{path}: expected a name like v1.avsc")
        found.append(load_schema_file(path, int(match.group(1))))
    if not found:
        raise SchemaDefinitionError("bad_schema", f"no released schema in {folder}")
    found.sort(key=lambda r: r.version)
    for expected, release in enumerate(found, start=1):
        if release.version != expected:
            raise SchemaDefinitionError("bad_schema", f"release v{expected} is missing in {folder}")
    return tuple(found)


@cache
def _released() -> tuple[ReleasedSchema, ...]:
    return load_released()


def current() -> ReleasedSchema:
    """The newest release: the schema every producer writes and every consumer reads into."""
    return _released()[-1]


@cache
def released_by_fingerprint() -> dict[int, ReleasedSchema]:
    """Every release keyed by its fingerprint, for finding a message's writer schema."""
    return {release.fingerprint: release for release in _released()}
