"""Entry point: builds the parser from the command modules and runs the chosen command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence

from certhub.hub.cli import failures

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES = (
    "certhub.hub.cli.init",
    "certhub.hub.cli.serve",
    "certhub.hub.cli.registry",
    "certhub.hub.cli.db",
    "certhub.hub.cli.stats",
    "certhub.hub.cli.demo",
    "certhub.hub.cli.health",
    "certhub.hub.cli.fetch",
    "certhub.hub.cli.config",
    "certhub.adapters.cli",
    "certhub.hub.cli.audit",
    "certhub.hub.cli.witness",
    "certhub.hub.cli.console",
    "certhub.hub.cli.citizen",
)


def _version() -> str:
    try:
        return importlib.metadata.version("certhub")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown (not installed)"


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certhub",
        description="Certificate-sharing data exchange hub for government services.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log debug messages; a failure also prints its traceback",
    )
    parser.add_argument("--version", action="version", version=f"certhub {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


# Loggers that narrate building a hub in-process (registry loaded, cache chosen, SERVING,
# a database outage the command then reports itself): news in a server's log, noise on a
# one-shot command's stderr, whose failure is its one last line. `--verbose` keeps them.
_QUIET_UNLESS_VERBOSE = (
    "certhub.registry",
    "certhub.cache",
    "certhub.health",
    "certhub.runtime",
    "certhub.hub",
    "certhub.store",
    "certhub.audit",
    "alembic",
)
# Commands that are servers: their log is their output (certhub.hub.observability.logs).
_SERVERS = frozenset({"serve", "witness", "console"})


@contextlib.contextmanager
def _quiet_loggers(quiet: bool) -> Iterator[None]:
    """Raise the narrating loggers to ERROR for one command, then put them back (tests
    call ``main`` in-process)."""
    loggers = [logging.getLogger(name) for name in _QUIET_UNLESS_VERBOSE] if quiet else []
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, before, strict=True):
            logger.setLevel(level)


# What the command line needs beyond the light client install (requirements/client.txt):
# without one of these, `certhub` says how to get the full install instead of a traceback.
_SERVER_MODULES = frozenset(
    {"sqlalchemy", "alembic", "psycopg", "redis", "prometheus_client", "aiohttp", "jinja2"}
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in _SERVER_MODULES:
            raise
        print(
            f"certhub: the command line needs the full install ({e.name} is missing; this "
            "environment has the light client only): pip install certhub with its dependencies",
            file=sys.stderr,
        )
        return failures.EXIT_FAILED
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every migration step at INFO; the commands print their own summary.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    quiet = not args.verbose and args.command not in _SERVERS
    try:
        with _quiet_loggers(quiet):
            status: int = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except CommandError as e:
        print(f"certhub {args.command}: {e}", file=sys.stderr)
        return failures.EXIT_FAILED
    except KeyboardInterrupt:
        return failures.EXIT_INTERRUPTED
    except BrokenPipeError:
        # `certhub fetch ... | head`: the reader has what it wanted; no traceback.
        failures.silence_stdout()
        return failures.EXIT_BROKEN_PIPE
    except Exception as e:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        failure = failures.describe(e)
        print(failure.line(args.command), file=sys.stderr)
        return failure.status
    return status


if __name__ == "__main__":
    # `python -m certhub.hub.cli.main` runs this file as __main__, a second copy of the module whose
    # CommandError is not the one the commands import and raise: dispatch through the
    # imported module so their errors are caught and printed without a traceback.
    sys.exit(importlib.import_module("certhub.hub.cli.main").main())
