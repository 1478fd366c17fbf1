"""What a failed command tells its user: one line naming the problem, a hint, an exit status.

``certhub`` never shows a traceback for a problem the user can fix (a database that cannot
be reached, a URL with an unknown dialect, an unreadable file, a refusal from the hub);
``certhub --verbose COMMAND`` adds it. Anything not recognised here is a bug: it gets
``EXIT_INTERNAL`` and says so.

The exit statuses below are documented in docs/operations.md ("Exit statuses").
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from certhub.core.rpc.client import HubClientError
from certhub.hub.config import ConfigError, mask_secret
from certhub.hub.errors import HubError
from certhub.hub.pki import PkiError
from certhub.hub.registry import RegistryError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Failure",
    "describe",
    "silence_stdout",
]

EXIT_OK = 0
# The command could not do what was asked; the line says why. `health`, `fetch` and
# `db status` add their own (see their --help).
EXIT_FAILED = 1
# argparse's own status for a command line it cannot parse.
EXIT_USAGE = 2
# A bug: BSD sysexits' EX_SOFTWARE, so a script can tell it from a refusal.
EXIT_INTERNAL = 70
# 128 + the signal, as shells report a process a signal ended: SIGINT (Ctrl-C)...
EXIT_INTERRUPTED = 130
# ...and SIGPIPE: the reader of the output went away (`certhub fetch ... | head`).
EXIT_BROKEN_PIPE = 141

# Longest driver message quoted: its first line says what went wrong; the rest is SQL.
_MAX_QUOTED = 300
_VERBOSE_HINT = "`certhub --verbose {command} ...` shows the traceback"


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    hint: str
    status: int

    def line(self, command: str) -> str:
        hint = self.hint.format(command=command)
        return f"certhub {command}: {self.message} (hint: {hint})"


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return str(mask_secret("", line))[:_MAX_QUOTED]


def describe(error: BaseException) -> Failure:
    """The one line for ``error`` (any exception a command let escape)."""
    # The stores translate a lost database into the hub's Unavailable; its cause says why.
    for candidate in (error, error.__cause__):
        database = _database_failure(candidate) if candidate is not None else None
        if database is not None:
            return database
    if isinstance(error, ConfigError | PkiError | RegistryError | HubError | HubClientError):
        return Failure(_first_line(str(error)), _VERBOSE_HINT, EXIT_FAILED)
    if isinstance(error, PermissionError | FileNotFoundError | IsADirectoryError):
        where = f" {error.filename}" if error.filename else ""
        return Failure(
            f"{error.strerror or type(error).__name__}:{where}",
            "check the path and its permissions (--data-dir, --config)",
            EXIT_FAILED,
        )
    if isinstance(error, ConnectionError | TimeoutError):
        return Failure(
            f"{type(error).__name__}: {_first_line(str(error))}",
            "is the service it needs (database, Redis, hub) running and reachable?",
            EXIT_FAILED,
        )
    message = _first_line(str(error))
    return Failure(
        f"internal error {type(error).__name__}" + (f": {message}" if message else ""),
        "this is a bug; " + _VERBOSE_HINT + ": please report it",
        EXIT_INTERNAL,
    )


def _database_failure(error: BaseException) -> Failure | None:
    # Imported here: the light client install has no SQLAlchemy, and `certhub fetch` and
    # `health` must still explain their own failures.
    try:
        from sqlalchemy import exc as sa  # noqa: PLC0415 - optional dependency
    except ImportError:  # pragma: no cover - the light client install
        return None
    if isinstance(error, sa.NoSuchModuleError):
        dialect = str(error).rsplit(":", 1)[-1].strip()
        return Failure(
            f"the database URL names an unknown dialect {dialect!r}",
            "write postgresql+psycopg://USER@HOST/DB (not postgres://) or "
            "sqlite:///PATH, in --db or CERTHUB_DB",
            EXIT_FAILED,
        )
    if isinstance(error, sa.ArgumentError):
        return Failure(
            f"the database URL is not valid: {_first_line(str(error))}",
            "write postgresql+psycopg://USER@HOST/DB or sqlite:///PATH, in --db or CERTHUB_DB",
            EXIT_FAILED,
        )
    if isinstance(error, sa.DBAPIError):
        cause = error.orig if error.orig is not None else error
        return Failure(
            f"cannot use the database: {_first_line(str(cause))}",
            "is the database server running and does the database exist? check --db or "
            "CERTHUB_DB; `certhub db upgrade` creates the schema",
            EXIT_FAILED,
        )
    return None


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush of the
    rest of the output does not raise again at exit (the Python documentation's recipe for
    SIGPIPE, `signal` module notes)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
