"""fastavro's Parsing Canonical Form and CRC-64-AVRO, which :mod:`schemas.avro` uses, agree with
the Avro specification: its fingerprint algorithm written out here from the spec's text, its
published vectors, and canonical forms worked out by hand from the spec's transformation rules
(https://avro.apache.org/docs/1.11.1/specification/#parsing-canonical-form-for-schemas)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import avro
from schemas.errors import SchemaDefinitionError

pytestmark = pytest.mark.unit

_EMPTY = 0xC15D213AA4D7A795


def spec_crc64_avro(data: bytes) -> int:
    """The spec's reference algorithm (section "Schema Fingerprints"), bit by bit."""
    fp = _EMPTY
    for byte in data:
        fp ^= byte
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
    return fp


@pytest.mark.parametrize(
    "text", ["", "null", '"int"', "héllo wörld", '{"type":"fixed","name":"x.y.md5","size":16}']
)
def test_crc64_is_the_specs_algorithm(text: str) -> None:
    assert avro.crc64_avro(text.encode()) == spec_crc64_avro(text.encode())


def test_published_vectors() -> None:
    assert avro.crc64_avro(b"") == avro.EMPTY_FINGERPRINT == 0xC15D213AA4D7A795
    # Avro's own schema-tests data lists these for the primitive schemas "null" and "int".
    assert avro.fingerprint("null") == 7195948357588979594
    assert avro.fingerprint({"type": "int"}) == 8247732601305521295


@pytest.mark.parametrize(
    ("schema", "canonical"),
    [
        ({"type": "int", "logicalType": "date"}, '"int"'),
        (
            {"type": "fixed", "name": "md5", "namespace": "x.y", "size": 16, "aliases": ["h"]},
            '{"name":"x.y.md5","type":"fixed","size":16}',
        ),
        (
            {
                "type": "record",
                "name": "R",
                "namespace": "a",
                "doc": "dropped",
                "fields": [
                    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
                    {"name": "e2", "type": "E", "default": "X"},
                    {"name": "m", "type": {"type": "map", "values": ["null", "double"]}},
                ],
            },
            '{"name":"a.R","type":"record","fields":[{"name":"e","type":{"name":"a.E","type":"enum",'
            '"symbols":["X","Y"]}},{"name":"e2","type":"a.E"},{"name":"m","type":{"type":"map",'
            '"values":["null","double"]}}]}',
        ),
    ],
)
def test_canonical_form_follows_the_spec(schema: Any, canonical: str) -> None:
    assert avro.parsing_canonical_form(schema) == canonical
    assert avro.fingerprint(schema) == spec_crc64_avro(canonical.encode())


def test_every_release_keeps_its_fingerprint() -> None:
    for release in avro.load_released():
        canonical = avro.parsing_canonical_form(release.schema)
        assert release.fingerprint == spec_crc64_avro(canonical.encode())


@pytest.mark.parametrize("schema", [5, {"type": "record"}, {"type": "no_such_type"}])
def test_not_a_schema_is_a_typed_error(schema: Any) -> None:
    with pytest.raises(SchemaDefinitionError) as err:
        avro.parsing_canonical_form(schema)
    assert err.value.reason == "bad_schema"
