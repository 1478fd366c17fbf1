"""PostgreSQL pool behaviour: a connection idle long enough to have died is checked first."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from support.databases import fresh_postgres_database

from hub.store import engine as engine_module
from hub.store.engine import make_engine

DATABASE_ENV = "CERTHUB_TEST_DATABASE_URL"


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: PostgreSQL pool tests need a server")
    with fresh_postgres_database(base) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _checked_out_in_transaction(engine: Engine) -> bool:
    """Whether the connection came out of the pool with a statement already run on it
    (the ping opens the transaction; an unpinged connection is idle)."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        return raw.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS


def test_a_connection_returned_moments_ago_is_not_pinged(pg_engine: Engine) -> None:
    _backend_pid(pg_engine)  # opens the pooled connection and returns it
    assert not _checked_out_in_transaction(pg_engine)


def test_a_connection_idle_past_the_threshold_is_pinged(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backend_pid(pg_engine)
    monkeypatch.setattr(engine_module, "PG_PING_AFTER_IDLE_S", 0.0)
    assert _checked_out_in_transaction(pg_engine)


def test_a_pooled_connection_that_died_while_idle_is_replaced_before_use(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _backend_pid(pg_engine)
    with make_engine(pg_engine.url.render_as_string(hide_password=False)).connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
        admin.commit()
    monkeypatch.setattr(engine_module, "PG_PING_AFTER_IDLE_S", 0.0)
    # Without the ping this statement would run on the dead connection and fail.
    assert _backend_pid(pg_engine) != dead
