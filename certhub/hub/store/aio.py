"""Read statements on PostgreSQL from the serving event loop, with no thread hop.

A cache-miss fetch used to read through the synchronous engine in the loop's thread pool:
every hop between the loop, a pool thread and back is a GIL hand-over, and SQLAlchemy's
asyncio extension costs more still (it drives the same synchronous machinery through
greenlets). Measured in one process, 32 concurrent reads of a holder's two certificates
(2026-12-05): sync engine in the thread pool 180-200 us of CPU per read, SQLAlchemy
asyncio 350-440 us, psycopg's own ``AsyncConnection`` 82-90 us. So the hot read runs as
psycopg text compiled once from the SQLAlchemy statement (one definition of the query),
on connections this module pools per event loop. Writes stay with the group committer.

Driver errors leave as ``certhub.hub.errors.Unavailable`` through ``translate_db_errors``, the one
place database outages are mapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import URL, Engine
from sqlalchemy.sql import ClauseElement

from certhub.hub.store.engine import (
    PG_CONNECT_TIMEOUT_S,
    PG_PING_AFTER_IDLE_S,
    PG_POOL_SIZE,
    PG_STATEMENT_TIMEOUT_MS,
    translate_db_errors,
)

__all__ = ["AsyncReader", "CompiledRead"]

_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]


class CompiledRead:
    """A SELECT rendered once for psycopg (``%(name)s`` parameters), so the query is still
    written once, as SQLAlchemy, and costs no compilation per call."""

    __slots__ = ("sql",)

    def __init__(self, statement: ClauseElement) -> None:
        self.sql = str(statement.compile(dialect=_DIALECT))


class AsyncReader:
    """Autocommit psycopg connections for one event loop: each read is one statement, so it
    sees one snapshot without BEGIN and COMMIT (as ``store.engine.read_scope``).

    At most ``size`` connections; a reader waits for a free one beyond that. A connection
    idle longer than ``PG_PING_AFTER_IDLE_S`` is pinged before use, as the synchronous pool
    does, so a database restart costs the calls in flight, not one failure per pooled
    connection. A connection that failed is closed, never reused.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        size: int = PG_POOL_SIZE,
        ping_after_idle: float = PG_PING_AFTER_IDLE_S,
    ) -> None:
        self._conninfo = conninfo
        self._ping_after_idle = ping_after_idle
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @classmethod
    def for_engine(cls, engine: Engine) -> AsyncReader | None:
        """A reader for the same database as ``engine``, or None unless it is PostgreSQL
        through psycopg (SQLite reads stay in the thread pool: its driver has no async)."""
        url = engine.url
        if url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
            return None
        return cls(_conninfo(url))

    async def rows(
        self, read: CompiledRead, params: Mapping[str, Any]
    ) -> Sequence[tuple[Any, ...]]:
        async with self._slots:
            conn = await self._checkout()
            try:
                with translate_db_errors():
                    cursor = await conn.execute(read.sql, params)
                    found = await cursor.fetchall()
            except BaseException:
                await _discard(conn)
                raise
            self._idle.append((conn, time.monotonic()))
            return found

    async def close_async(self) -> None:
        """Close the idle connections, on the loop they belong to (``Hub.close_async``
        closes the serving loop's resources by this name)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await _discard(conn)

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since < self._ping_after_idle:
                return conn
            try:
                await conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                await _discard(conn)  # died while idle: try the next one, or connect
        with translate_db_errors():
            return await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=PG_CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
            )


async def _discard(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(psycopg.Error):  # already broken: nothing left to release
        await conn.close()


def _conninfo(url: URL) -> str:
    """libpq's URI for a SQLAlchemy ``postgresql+psycopg`` URL (its query arguments, such as
    ``host=/run/postgresql``, are libpq's own and pass through)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
