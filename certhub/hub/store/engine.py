"""Engines and sessions: SQLite (WAL) in the data dir by default, PostgreSQL via a URL.

Database failures leave this module only as ``certhub.hub.errors.Unavailable`` (see
``session_scope``), so callers and the gRPC edge never see driver exceptions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import PoolProxiedConnection

log = logging.getLogger("certhub.store")

# How long SQLite waits for another writer before giving up. Group commit keeps write
# transactions short (milliseconds); 30 s only matters when several processes share one file.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# How long a PostgreSQL connect may take before the call fails with UNAVAILABLE. A hub that
# cannot reach its database must answer quickly so clients can retry elsewhere.
PG_CONNECT_TIMEOUT_S = 3
# Statements slower than this are cancelled: no single query of the hub should take this long,
# and a hung database must not hang calls past their deadlines.
PG_STATEMENT_TIMEOUT_MS = 15_000
# Characters of a driver's error message logged with an outage: its first line names the
# cause; anything longer is a statement echo the log does not need.
MAX_CAUSE_CHARS = 200
# Pool size per process: gRPC worker threads share it; more connections than threads is waste.
PG_POOL_SIZE = 16
PG_MAX_OVERFLOW = 8
# A pooled PostgreSQL connection idle longer than this is pinged before use; one returned
# more recently is handed out as it is. SQLAlchemy's pool_pre_ping pinged every checkout:
# a round trip before every group commit and every cache-miss read, each paid by a thread
# that then waits for the GIL again. A connection that died in the last second fails its
# statement instead (UNAVAILABLE, retryable), and a detected disconnect makes the pool
# replace every connection older than it (SQLAlchemy's pool invalidation), so one outage
# costs the calls that were in flight during it, as before.
PG_PING_AFTER_IDLE_S = 1.0
# Where a pooled connection remembers when it was last returned.
_CHECKED_IN_AT = "certhub.checked_in_at"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'certhub.db'}"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine configured for the hub: WAL and busy timeout on SQLite, timeouts on PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args = {
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
        }
    engine = create_engine(
        url,
        echo=echo,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        connect_args=connect_args,
    )
    event.listen(engine, "checkin", _remember_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def _remember_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling, for connections idle long enough to have died."""
    if time.monotonic() - record.info.get(_CHECKED_IN_AT, -math.inf) < PG_PING_AFTER_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        # Hand the connection out idle, as the pool would: a transaction left open by the
        # ping would stop its next user from switching to autocommit (read_scope).
        dbapi_connection.rollback()
    except Exception as e:
        # The pool discards this connection and checks out (or opens) another.
        raise exc.DisconnectionError(f"pooled connection is dead: {e}") from e


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is disabled so that "begin" below decides.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; FULL adds power-loss safety.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at the start, so two writers never deadlock upgrading
    # read locks; readers are not blocked in WAL mode.
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# Execution option marking a transaction that will write (SQLite then begins IMMEDIATE).
WRITE_OPTION = "certhub_write"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def stored_utc(value: dt.datetime) -> dt.datetime:
    """A datetime read back from a timezone-aware column, aware: SQLite keeps no zone and
    returns it naive, and the hub writes UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session], *, write: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception.

    ``write=True`` takes SQLite's write lock at BEGIN. Driver errors that mean the database
    is unreachable or overloaded become ``Unavailable`` (retryable); others propagate as bugs.
    """
    session = factory()
    try:
        # The rollback is inside the translation too: on a connection that died under the
        # statement, ROLLBACK fails as well, and that is the same outage, not a bug.
        with translate_db_errors():
            try:
                if write:
                    # Procures the connection now, with the option the "begin" hook reads.
                    session.connection(execution_options={WRITE_OPTION: True})
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        session.close()


@contextlib.contextmanager
def read_scope(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection for one read statement, errors translated as in ``session_scope``.

    On PostgreSQL the statement runs outside a transaction (autocommit): one statement sees
    one snapshot anyway, and BEGIN and COMMIT were two more round trips on every
    cache-miss fetch, each paid again in a wait for the GIL. Elsewhere it is an ordinary
    transaction, rolled back at the end.
    """
    engine = factory.kw["bind"]
    with translate_db_errors():
        conn = engine.connect()
        try:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
        finally:
            conn.close()


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A transaction in ``pipeline_scope``: statements executed on ``conn`` are queued, not
    waited for; ``sync`` sends what is queued and waits for the results, which the
    statements' cursors then hold."""

    conn: psycopg.Connection[Any]
    pipeline: psycopg.Pipeline

    def sync(self) -> None:
        self.pipeline.sync()


@contextlib.contextmanager
def pipeline_scope(factory: sessionmaker[Session]) -> Iterator[Pipeline]:
    """One PostgreSQL transaction in psycopg's pipeline mode on a pooled connection, for a
    writer that needs few results: what it queues travels at each ``Pipeline.sync`` and at
    the end, where COMMIT goes in the same round trip as everything queued before it.

    The connection runs in autocommit for the scope, and the transaction is an explicit
    BEGIN queued with the first statements: psycopg's own implicit BEGIN is a round trip of
    its own, even in pipeline mode. A failed statement aborts the ones queued after it;
    the first error is raised and the transaction rolled back. Errors leave as in
    ``session_scope``: outages as ``Unavailable``, anything else as it is. PostgreSQL
    through psycopg only (``supports_pipeline``).
    """
    engine = factory.kw["bind"]
    with translate_db_errors():
        pooled = engine.raw_connection()
        try:
            conn = pooled.driver_connection
            assert isinstance(conn, psycopg.Connection)
            conn.autocommit = True
            try:
                with conn.pipeline() as pipeline:
                    conn.execute(_BEGIN)
                    yield Pipeline(conn, pipeline)
                    conn.execute(_COMMIT)
            except BaseException:
                _end_failed(pooled, conn)
                raise
            conn.autocommit = False  # as the pool hands connections out
        finally:
            pooled.close()


_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"


def _end_failed(pooled: PoolProxiedConnection, conn: psycopg.Connection[Any]) -> None:
    """Roll back what a failed pipeline left open and hand the connection back as the pool
    expects it, or drop it if it is gone (the pool then opens a new one)."""
    if conn.broken or conn.closed:
        pooled.invalidate()
        return
    try:
        conn.rollback()
        conn.autocommit = False
    except psycopg.Error:
        pooled.invalidate()  # the caller sees the first error, not this one


def supports_pipeline(factory: sessionmaker[Session]) -> bool:
    """Whether ``pipeline_scope`` runs on this factory's database: PostgreSQL through
    psycopg, with a libpq that has pipeline mode (14 or later)."""
    engine = factory.kw["bind"]
    return bool(
        engine.dialect.name == "postgresql"
        and engine.dialect.driver == "psycopg"
        and psycopg.Pipeline.is_supported()
    )


# SQLite reports outages and programming errors alike as OperationalError; only these
# messages mean "the database cannot serve now" (locked, full, read-only, unreachable file).
_SQLITE_OUTAGES = (
    "database is locked",
    "disk i/o error",
    "unable to open database",
    "database or disk is full",
    "readonly database",
    "database table is locked",
)
_DRIVER_ERRORS = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    # psycopg's own, raised by the event loop's reads (certhub.hub.store.aio), which bypass
    # SQLAlchemy: connection lost, server shut down, statement timeout
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def _is_outage(error: Exception) -> bool:
    if not isinstance(error, exc.OperationalError):
        return True
    orig = error.orig
    if type(orig).__module__.startswith("sqlite3"):
        return any(text in str(orig).lower() for text in _SQLITE_OUTAGES)
    # PostgreSQL raises OperationalError for connection loss, admin shutdown and timeouts.
    return True


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    """Map database outages to ``Unavailable`` (retryable): the one place this happens.
    Anything else (a bad query, an unexpected constraint) stays a bug."""
    try:
        yield
    except _DRIVER_ERRORS as e:
        if not _is_outage(e):
            raise
        # The driver's first line names the cause ("database or disk is full", "connection
        # refused", ...) for the operator; the statement and its parameters are not logged.
        cause = getattr(e, "orig", None) or e
        detail = (str(cause).strip().splitlines() or [""])[0][:MAX_CAUSE_CHARS]
        log.warning("database unavailable: %s: %s", type(cause).__name__, detail)
        raise Unavailable(
            "database unavailable; retry shortly", reason="DATABASE_UNAVAILABLE"
        ) from e
