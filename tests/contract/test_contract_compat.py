"""Evolution guard: the real schemas pass, deliberately broken candidates are named and rejected."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from schemas import avro, cli
from schemas.compat import check_full_compatibility, reader_problems
from schemas.errors import IncompatibleSchemaError, SchemaDefinitionError

pytestmark = pytest.mark.unit


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["schemas", *argv])
    result: int = args.handler(args)
    return result


def _candidate(tmp_path: Path, schema: dict[str, Any]) -> str:
    path = tmp_path / "candidate.avsc"
    path.write_text(json.dumps(schema), encoding="utf-8")
    return str(path)


def _track_update(schema: dict[str, Any]) -> dict[str, Any]:
    union = schema["fields"][1]["type"]
    return next(b for b in union if b["name"] == "TrackUpdate")


def test_real_schemas_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("check") == 0
    out = capsys.readouterr().out
    assert "ok: current v2" in out
    assert "models.py matches" in out


def test_current_schema_as_candidate_passes(tmp_path: Path) -> None:
    assert _run("check", "--candidate", _candidate(tmp_path, avro.current().schema)) == 0


def test_field_added_without_default_is_named(tmp_path: Path) -> None:
    schema = copy.deepcopy(avro.current().schema)
    _track_update(schema)["fields"].append({"name": "range_rate_m_s", "type": "double"})
    with pytest.raises(IncompatibleSchemaError) as info:
        _run("check", "--candidate", _candidate(tmp_path, schema))
    message = str(info.value)
    assert "v1" in message
    assert "TrackUpdate>.range_rate_m_s" in message
    assert info.value.reason == "incompatible_schema"


def test_field_added_with_default_passes(tmp_path: Path) -> None:
    schema = copy.deepcopy(avro.current().schema)
    _track_update(schema)["fields"].append(
        {"name": "range_rate_m_s", "type": ["null", "double"], "default": None}
    )
    assert _run("check", "--candidate", _candidate(tmp_path, schema)) == 0


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: _track_update(s)["fields"].pop(0), "position: field is new"),
        (lambda s: _track_update(s)["fields"][2].update(type="float"), "float"),
        (lambda s: _track_update(s)["fields"][4]["type"]["symbols"].pop(), "TERMINAL"),
        (lambda s: s["fields"][1]["type"].pop(), "no reader union branch"),
        (lambda s: _track_update(s)["fields"][2].update(type="string"), "type changed"),
        (
            lambda s: s["fields"][0]["type"]["fields"][6]["type"].update(logicalType="timestamp-millis"),
            "logicalType",
        ),
        (lambda s: _track_update(s).update(name="Track"), "no reader union branch accepts Track"),
    ],
)
def test_breaking_changes_are_rejected(mutate: Any, expected: str) -> None:
    schema = copy.deepcopy(avro.current().schema)
    mutate(schema)
    with pytest.raises(IncompatibleSchemaError, match=expected):
        check_full_compatibility(schema, avro.load_released())


def test_promotion_is_backward_but_not_forward_compatible() -> None:
    writer = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}
    reader = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}
    assert reader_problems(reader, writer) == []
    assert reader_problems(writer, reader) == ["R.x: type changed from long to int"]


def test_enum_default_allows_unknown_symbols() -> None:
    writer = {"type": "enum", "name": "E", "symbols": ["A", "B"]}
    reader = {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"}
    assert reader_problems(reader, writer) == []
    strict = {"type": "enum", "name": "E", "symbols": ["A"]}
    assert reader_problems(strict, writer) == ["E: enum symbol(s) B missing and no enum default"]


def test_fingerprint_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run("fingerprint") == 0
    assert "v1 v1.avsc: 0x20e0fb29580ed14a" in capsys.readouterr().out
    assert _run("fingerprint", _candidate(tmp_path, avro.current().schema)) == 0
    assert "0xbf0c4b6a6d150123" in capsys.readouterr().out  # v2, the current release


def test_release_writes_nothing_when_models_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / avro.SCHEMA_NAME
    folder.mkdir()
    (folder / "v1.avsc").write_text(avro.current().path.read_text(encoding="utf-8"))
    assert _run("release", "--released-dir", str(tmp_path)) == 0
    assert "nothing to release" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["v1.avsc"]


def test_gap_in_releases_and_bad_files_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / avro.SCHEMA_NAME
    folder.mkdir()
    (folder / "v2.avsc").write_text(avro.current().path.read_text(encoding="utf-8"))
    with pytest.raises(SchemaDefinitionError, match="v1 is missing"):
        avro.load_released(tmp_path)
    (folder / "v1.avsc").write_text("{not json")
    with pytest.raises(SchemaDefinitionError, match=r"v1\.avsc"):
        avro.load_released(tmp_path)
