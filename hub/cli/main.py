"""Entry point: builds the parser from the command modules and runs the chosen command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES = (
    "hub.cli.init",
    "hub.cli.serve",
    "hub.cli.registry",
    "hub.cli.db",
    "hub.cli.stats",
    "hub.cli.demo",
    "hub.cli.health",
    "hub.cli.fetch",
    "hub.cli.config",
    "adapters.cli",
    "hub.cli.audit",
    "hub.cli.witness",
    "hub.cli.console",
)


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certhub",
        description="Certificate-sharing data exchange hub for government services.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every migration step at INFO; the commands print their own summary.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        status: int = args.func(args)
    except CommandError as e:
        print(f"certhub {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    # `python -m hub.cli.main` runs this file as __main__, a second copy of the module whose
    # CommandError is not the one the commands import and raise: dispatch through the
    # imported module so their errors are caught and printed without a traceback.
    sys.exit(importlib.import_module("hub.cli.main").main())
