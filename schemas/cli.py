"""``trilink schemas ...``: check schema evolution, print fingerprints, freeze a release."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from schemas import avro
from schemas.compat import check_full_compatibility
from schemas.errors import SchemaDefinitionError

__all__ = ["register"]


def _releases(args: argparse.Namespace) -> tuple[avro.ReleasedSchema, ...]:
    return avro.load_released(Path(args.released_dir))


def _fp_text(fp: int) -> str:
    return f"0x{fp:016x} (wire bytes {fp.to_bytes(8, 'little').hex(' ')})"


def _check(args: argparse.Namespace) -> int:
    releases = _releases(args)
    if args.candidate is not None:
        candidate = avro.load_schema_file(Path(args.candidate))
        count = check_full_compatibility(candidate.schema, releases)
        print(f"ok: {args.candidate} is fully compatible with {count} released version(s)")
        return 0
    newest = releases[-1]
    check_full_compatibility(newest.schema, releases[:-1])
    print(
        f"ok: current {newest.label} {_fp_text(newest.fingerprint)} is fully compatible "
        f"with {len(releases) - 1} earlier version(s)"
    )
    if Path(args.released_dir) == avro.RELEASED_DIR and avro.derive_schema() != newest.schema:
        raise SchemaDefinitionError(
            "drift",
            f"schemas/models.py no longer matches released {newest.label}; "
            "run `trilink schemas release` to check and freeze the next version",
        )
    print(f"ok: schemas/models.py matches released {newest.label}")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    if args.files:
        for name in args.files:
            loaded = avro.load_schema_file(Path(name))
            print(f"{name}: {_fp_text(loaded.fingerprint)}")
        return 0
    for release in _releases(args):
        print(f"{release.label} {release.path.name}: {_fp_text(release.fingerprint)}")
    return 0


def _release(args: argparse.Namespace) -> int:
    releases = _releases(args)
    derived: dict[str, Any] = avro.derive_schema()
    if derived == releases[-1].schema:
        print(f"nothing to release: models match {releases[-1].label}")
        return 0
    check_full_compatibility(derived, releases)
    version = releases[-1].version + 1
    path = Path(args.released_dir) / avro.SCHEMA_NAME / f"v{version}.avsc"
    path.write_text(json.dumps(derived, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"released v{version}: {path} {_fp_text(avro.fingerprint(derived))}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``trilink schemas`` and its subcommands to the top-level parser."""
    parser = subparsers.add_parser("schemas", help="the Avro event contract")
    commands = parser.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--released-dir",
        default=str(avro.RELEASED_DIR),
        help="folder holding released schemas (default: the package's own)",
    )

    check = commands.add_parser(
        "check",
        parents=[common],
        help="fail unless the schema is fully compatible with every released version",
    )
    check.add_argument("--candidate", help="an .avsc to check instead of the newest release")
    check.set_defaults(handler=_check)

    fingerprint = commands.add_parser("fingerprint", parents=[common], help="print CRC-64-AVRO fingerprints")
    fingerprint.add_argument("files", nargs="*", help=".avsc files (default: every release)")
    fingerprint.set_defaults(handler=_fingerprint)

    release = commands.add_parser(
        "release",
        parents=[common],
        help="freeze the schema derived from the models as the next version",
    )
    release.set_defaults(handler=_release)
