"""The ``trilink`` command line.

Each part of the project registers its own subcommands through a ``register(subparsers)``
function in its ``cli`` module; this file only wires them together, routes log records
(:mod:`trilink.logs`: the client library's to a file, trilink's own warnings to the terminal)
and turns the project's typed errors into one clear line and a non-zero exit code (never a
traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from kafka.errors import KafkaError
from pydantic import ValidationError

from trilink.errors import BrokerNotReadyError, TrilinkError
from trilink.logs import LogRouting, setup_logging

#: Modules that contribute subcommands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "trilink.platform.cli",
    "schemas.cli",
    "producers.cli",
    "consumers.cli",
    "trilink.pipeline",
    "trilink.replay.cli",
    "trilink.loadtest.cli",
    "trilink.monitoring.cli",
    "trilink.report_schemas",
    "trilink.report_html",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trilink",
        description="Simulate and measure real-time missile-warning data sharing over Apache Kafka.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                # that part of the project is not installed in this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    logs: LogRouting | None = None
    try:
        logs = setup_logging(args.command)
        return handler(args)
    except BrokerNotReadyError as exc:
        print(f"trilink: error {exc}", file=sys.stderr)
        if exc.log_tail:
            print("--- last lines of the broker log ---", file=sys.stderr)
            print(exc.log_tail, file=sys.stderr)
        return 2
    except TrilinkError as exc:
        print(f"trilink: error {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"trilink: error [invalid_config] {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"trilink: error [kafka_error] the Kafka client failed: {exc!r}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trilink: interrupted", file=sys.stderr)
        return 130
    finally:
        if logs is not None:
            logs.close()


if __name__ == "__main__":
    sys.exit(main())
