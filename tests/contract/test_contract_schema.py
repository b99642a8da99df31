"""One source of truth: models, derived schema and frozen releases agree; fingerprints are right."""

from __future__ import annotations

import json
import types
from typing import Any, Union, get_args, get_origin

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from pydantic import BaseModel

from schemas import avro, models

pytestmark = pytest.mark.unit

#: Fingerprint of released v1. A released schema is frozen: this must never change.
V1_FINGERPRINT = 0x20E0FB29580ED14A

#: JSON-schema (pydantic's view) type -> Avro type, for the independent agreement check.
_JSON_TO_AVRO = {
    ("number", None): "double",
    ("integer", None): "long",
    ("boolean", None): "boolean",
    ("string", None): "string",
    ("string", "uuid"): "string/uuid",
    ("string", "date-time"): "long/timestamp-micros",
}


def _records(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Every named type defined in a schema, by short name."""
    if isinstance(schema, list):
        for branch in schema:
            _records(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            found[schema["name"]] = schema
        for field in schema.get("fields", ()):
            _records(field["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _records(schema[key], found)
    return found


def _avro_shape(schema: Any) -> tuple[bool, str]:
    """(nullable, type) of an Avro field type, in the vocabulary of ``_JSON_TO_AVRO``."""
    if isinstance(schema, list):
        rest = [b for b in schema if b != "null"]
        inner = _avro_shape(rest[0])[1] if len(rest) == 1 else "union"
        return "null" in schema, inner
    if isinstance(schema, str):
        return False, schema.rpartition(".")[2]
    if schema["type"] == "array":
        return False, "array:" + _avro_shape(schema["items"])[1]
    if schema["type"] in ("record", "enum"):
        return False, schema["name"]
    logical = schema.get("logicalType")
    return False, f"{schema['type']}/{logical}" if logical else schema["type"]


def _model_shape(prop: dict[str, Any]) -> tuple[bool, str]:
    """(nullable, type) of a pydantic JSON-schema property."""
    if "$ref" in prop:
        return False, prop["$ref"].rpartition("/")[2]
    if "anyOf" in prop:
        branches = [b for b in prop["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) < len(prop["anyOf"])
        if len(branches) > 1:
            return nullable, "union"
        return nullable, _model_shape(branches[0])[1]
    if prop.get("type") == "array":
        return False, "array:" + _model_shape(prop["items"])[1]
    return False, _JSON_TO_AVRO[(prop["type"], prop.get("format"))]


def test_released_v1_is_frozen() -> None:
    released = avro.load_released()
    assert released[0].label == "v1"
    assert released[0].fingerprint == V1_FINGERPRINT
    assert avro.current() is released[-1] or avro.current().version == released[-1].version


def test_models_derive_exactly_the_current_release() -> None:
    assert avro.derive_schema() == avro.current().schema, (
        "schemas/models.py changed: run `trilink schemas release` to freeze a new version"
    )


def test_models_and_avsc_agree_field_by_field() -> None:
    """Compare the .avsc with pydantic's own JSON schema of the models (not with the
    generator), so a bug in the generator cannot hide a disagreement."""
    named = _records(avro.current().schema, {})
    for name, avro_type in named.items():
        cls = getattr(models, name)
        if avro_type["type"] == "enum":
            assert avro_type["symbols"] == [member.value for member in cls], name
            continue
        assert issubclass(cls, BaseModel)
        json_schema = cls.model_json_schema()
        props = json_schema["properties"]
        assert [f["name"] for f in avro_type["fields"]] == list(props), name
        required = set(json_schema.get("required", ()))
        for field in avro_type["fields"]:
            where = f"{name}.{field['name']}"
            assert field.get("doc"), f"{where} has no doc"
            avro_nullable, avro_kind = _avro_shape(field["type"])
            model_nullable, model_kind = _model_shape(props[field["name"]])
            assert avro_kind == model_kind, where
            assert avro_nullable == model_nullable, where
            assert ("default" in field) == (field["name"] not in required), where
    model_classes = {
        n
        for n, c in vars(models).items()
        if isinstance(c, type) and issubclass(c, models._Model) and n != "_Model"
    }
    assert model_classes <= set(named), model_classes - set(named)


def test_payload_union_order_matches_the_models() -> None:
    union = avro.current().schema["fields"][1]["type"]
    annotation = models.WarningEvent.model_fields["payload"].annotation
    assert get_origin(annotation) in (Union, types.UnionType)
    assert [b["name"] for b in union] == [cls.__name__ for cls in get_args(annotation)]
    assert [cls.KIND for cls in get_args(annotation)] == list(models.EventKind)


def test_every_release_is_self_contained() -> None:
    for release in avro.load_released():
        text = release.path.read_text(encoding="utf-8")
        assert avro.load_schema_file(release.path).fingerprint == release.fingerprint
        assert json.loads(text)["namespace"] == "trilink.warning"


def test_crc64_matches_published_vectors() -> None:
    assert avro.crc64_avro(b"") == 0xC15D213AA4D7A795  # Avro spec: fingerprint of nothing
    # Avro's own schema-tests data lists 7195948357588979594 for the schema "null".
    assert avro.fingerprint("null") == 7195948357588979594


@pytest.mark.parametrize(
    "schema",
    [
        "int",
        {"type": "string", "logicalType": "uuid"},
        {"type": "fixed", "name": "md5", "namespace": "x.y", "size": 16, "aliases": ["h"]},
        {"type": "map", "values": {"type": "array", "items": ["null", "double"]}},
        {
            "type": "record",
            "name": "a.R",
            "doc": "ignored",
            "fields": [
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
                {"name": "e2", "type": "E", "default": "X"},
                {"name": "n", "type": {"type": "record", "name": "b.N", "fields": []}},
                {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            ],
        },
        "current",
    ],
)
def test_canonical_form_and_fingerprint_match_fastavro(schema: Any) -> None:
    if schema == "current":
        schema = avro.current().schema
    assert avro.parsing_canonical_form(schema) == to_parsing_canonical_form(schema)
    expected = fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    assert avro.fingerprint(schema).to_bytes(8, "little").hex() == expected
