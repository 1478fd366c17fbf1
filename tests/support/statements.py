"""Every statement an engine's connections send, including the group commit's pipelined
ones on PostgreSQL (certhub.hub.store.engine.pipeline_scope), which run on the raw psycopg
connection and so never reach SQLAlchemy's cursor events."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextlib.contextmanager
def recorded(engine: Engine) -> Iterator[list[str]]:
    """The statements sent while the block runs, in order. On psycopg, every cursor of a
    connection checked out meanwhile records them (SQLAlchemy's statements go through one
    too); elsewhere SQLAlchemy's cursor events do."""
    seen: list[str] = []

    def text(query: Any) -> str:
        return query.decode() if isinstance(query, bytes) else str(query)

    class Recording(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(text(query))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(text(query))
            super().executemany(query, *args, **kwargs)

    def on_sqlalchemy(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not isinstance(cursor, Recording):
            seen.append(statement)

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_connection, psycopg.Connection):
            dbapi_connection.cursor_factory = Recording

    def on_checkin(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, psycopg.Connection):
            dbapi_connection.cursor_factory = psycopg.Cursor

    event.listen(engine, "before_cursor_execute", on_sqlalchemy)
    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_sqlalchemy)
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(engine.pool, "checkin", on_checkin)
