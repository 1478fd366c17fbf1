"""Fixtures for the scale-out tests: a served hub's files on a fresh PostgreSQL database
(several processes share it, so only PostgreSQL will do), and a Redis server of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.redis_server import RedisServer, own_redis_server
from support.served import Deployment

from certhub.hub.store.engine import make_engine


@pytest.fixture
def deployment(tmp_path: Path, database_url: str) -> Iterator[Deployment]:
    """Use with ``@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)``."""
    if not database_url.startswith("postgresql"):
        pytest.skip("hub processes share their database: these tests need PostgreSQL")
    engine = make_engine(database_url)
    yield Deployment(data_dir=tmp_path / "data", db_url=database_url, engine=engine)
    engine.dispose()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test starts on its own port, so it can stop it mid-run."""
    with own_redis_server(tmp_path) as server:
        yield server
