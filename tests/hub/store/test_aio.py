"""The event loop's PostgreSQL reads (hub.store.aio): one statement per read outside a
transaction, dead connections replaced, outages UNAVAILABLE."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from certhub.hub.errors import Unavailable
from certhub.hub.store.aio import AsyncReader, CompiledRead
from certhub.hub.store.engine import make_engine

BACKEND = CompiledRead(text("SELECT pg_backend_pid(), now() = statement_timestamp()"))


def _reader(engine: Engine, **options: float) -> AsyncReader:
    reader = AsyncReader.for_engine(engine)
    assert reader is not None
    if options:
        reader = AsyncReader(reader._conninfo, **options)  # type: ignore[arg-type]
    return reader


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()


def test_a_read_is_one_statement_outside_a_transaction(pg_engine: Engine) -> None:
    async def run() -> tuple[int, bool, int]:
        reader = _reader(pg_engine)
        try:
            [(pid, own_snapshot)] = await reader.rows(BACKEND, {})
            [(again, _)] = await reader.rows(BACKEND, {})
            return pid, own_snapshot, again
        finally:
            await reader.close_async()

    pid, own_snapshot, again = asyncio.run(run())
    # In a transaction now() is its start, older than the statement: equal only outside one.
    assert own_snapshot
    assert again == pid  # the connection went back to the pool and was reused


def test_a_connection_that_died_while_idle_is_replaced_before_use(pg_engine: Engine) -> None:
    async def run() -> tuple[int, int]:
        reader = _reader(pg_engine, ping_after_idle=0.0)
        try:
            [(dead, _)] = await reader.rows(BACKEND, {})
            await asyncio.to_thread(_terminate, pg_engine, dead)
            [(fresh, _)] = await reader.rows(BACKEND, {})  # pinged, replaced: no failure
            return dead, fresh
        finally:
            await reader.close_async()

    dead, fresh = asyncio.run(run())
    assert fresh != dead


def test_a_statement_on_a_dead_connection_is_unavailable_once(pg_engine: Engine) -> None:
    async def run() -> tuple[int, int]:
        reader = _reader(pg_engine)  # returned moments ago: used without a ping
        try:
            [(dead, _)] = await reader.rows(BACKEND, {})
            await asyncio.to_thread(_terminate, pg_engine, dead)
            with pytest.raises(Unavailable) as failed:
                await reader.rows(BACKEND, {})
            assert failed.value.reason == "DATABASE_UNAVAILABLE"
            [(fresh, _)] = await reader.rows(BACKEND, {})  # the dead one was discarded
            return dead, fresh
        finally:
            await reader.close_async()

    dead, fresh = asyncio.run(run())
    assert fresh != dead


def test_an_unreachable_database_is_unavailable() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connect is refused at once.
    reader = AsyncReader.for_engine(make_engine("postgresql+psycopg://postgres@127.0.0.1:9/x"))
    assert reader is not None
    with pytest.raises(Unavailable):
        asyncio.run(reader.rows(BACKEND, {}))


def test_sqlite_has_no_reader(tmp_path: os.PathLike[str]) -> None:
    # pysqlite has no async driver: SQLite reads stay in the thread pool.
    assert AsyncReader.for_engine(make_engine(f"sqlite:///{tmp_path}/x.db")) is None
