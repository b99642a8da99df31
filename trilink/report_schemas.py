"""``trilink report-schemas``: the JSON Schemas of the reports, generated from their models.

The ally service's report (:class:`consumers.ledger.AllyReport`), the run report of ``trilink
run``/``trilink demo`` (:class:`trilink.pipeline.RunReport`) and the load-test report
(:class:`trilink.loadtest.report.LoadTestReport`) are pydantic models; their schemas live in
``docs/schemas/`` for readers and other tools, and a test fails when a file there is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

#: Where the schemas are kept in the repository.
DOCS_SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def report_models() -> dict[str, type[BaseModel]]:
    """File stem -> model of every report with a published schema."""
    from consumers.ledger import AllyReport
    from trilink.loadtest.report import LoadTestReport
    from trilink.pipeline import RunReport

    return {
        "ally-report": AllyReport,
        "run-report": RunReport,
        "loadtest-report": LoadTestReport,
    }


def render_schema(model: type[BaseModel]) -> str:
    """The model's JSON Schema of its serialized form (what ``--report`` writes), stable text."""
    schema = model.model_json_schema(mode="serialization")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def schema_files() -> dict[str, str]:
    """File name -> content of every schema file."""
    return {f"{stem}.schema.json": render_schema(model) for stem, model in report_models().items()}


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_files().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def stale_schemas(directory: Path) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or differ from the models."""
    return [
        name
        for name, text in schema_files().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report-schemas",
        help="write the JSON Schemas of the ally, run and load-test reports (docs/schemas/)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=DOCS_SCHEMAS_DIR, help=f"directory (default {DOCS_SCHEMAS_DIR})"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file is missing or stale"
    )
    parser.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    if args.check:
        stale = stale_schemas(args.out)
        for name in stale:
            print(f"stale: {args.out / name} (run `trilink report-schemas`)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.out):
        print(path)
    return 0
