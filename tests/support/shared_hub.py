"""One running hub shared by every test of a module, on SQLite or PostgreSQL.

Matrix and fuzz tests make hundreds of calls; starting a hub (and a PostgreSQL database) per
call would dominate their run time on a 2-core CI machine. Tests that share a hub must not
depend on each other's data: each creates what it needs under fresh serials.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATABASE_ENV, fresh_postgres_database

from certhub.hub.demo.world import DemoWorld
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine
from support.hubs import RunningHub, start_hub

DATABASES = ("sqlite", "postgresql")

# Serials handed out to tests sharing one hub, so their certificate ids never collide.
_serials = itertools.count(1_000_000)


def next_serial() -> int:
    return next(_serials)


@contextlib.contextmanager
def serving_hub(root: Path, database: str, world: DemoWorld) -> Iterator[RunningHub]:
    """A hub on loopback with mTLS over a fresh database of kind ``database``."""
    url_scope: contextlib.AbstractContextManager[str]
    if database == "sqlite":
        url_scope = contextlib.nullcontext(f"sqlite:///{root / 'certhub.db'}")
    else:
        base = os.environ.get(DATABASE_ENV)
        if not base:
            pytest.skip(f"{DATABASE_ENV} is not set: PostgreSQL tests need a server")
        url_scope = fresh_postgres_database(base)
    with url_scope as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        running = start_hub(root / "data", engine, world)
        try:
            yield running
        finally:
            running.server.stop(grace=None)
            running.hub.close()
            engine.dispose()
