"""PostgreSQL connections: a pooled one idle long enough to have died is checked first;
reads run outside a transaction."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import exc, text
from sqlalchemy.engine import Engine

from certhub.hub.errors import Unavailable
from certhub.hub.store import engine as engine_module
from certhub.hub.store.engine import make_engine, make_session_factory, read_scope


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(engine: Engine, pid: int) -> None:
    with make_engine(engine.url.render_as_string(hide_password=False)).connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()


def test_a_connection_returned_moments_ago_is_used_without_a_ping(pg_engine: Engine) -> None:
    _terminate(pg_engine, _backend_pid(pg_engine))
    # Not pinged, so the dead connection is used, and the statement fails (retryable).
    with pytest.raises(exc.DBAPIError) as failed:
        _backend_pid(pg_engine)
    assert failed.value.connection_invalidated
    _backend_pid(pg_engine)  # the pool replaced it


def test_a_pooled_connection_that_died_while_idle_is_replaced_before_use(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _backend_pid(pg_engine)
    _terminate(pg_engine, dead)
    monkeypatch.setattr(engine_module, "PG_PING_AFTER_IDLE_S", 0.0)
    # Without the ping this statement would run on the dead connection and fail.
    assert _backend_pid(pg_engine) != dead


def test_a_read_scope_runs_its_statement_outside_a_transaction(pg_engine: Engine) -> None:
    with read_scope(make_session_factory(pg_engine)) as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        # No BEGIN was sent, so there is no COMMIT to send either: one round trip per read.
        assert raw.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    # The pooled connection goes back to ordinary transactions for the next user.
    with pg_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        assert raw.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS


def test_a_read_scope_that_cannot_reach_the_database_is_unavailable() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connect is refused at once.
    factory = make_session_factory(make_engine("postgresql+psycopg://postgres@127.0.0.1:9/x"))
    with pytest.raises(Unavailable), read_scope(factory) as conn:
        conn.execute(text("SELECT 1"))
