"""Fixtures shared across the suite: databases (SQLite and PostgreSQL), the demo world, and a
running hub on loopback with real mTLS."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine
from support.databases import fresh_postgres_database
from support.hubs import RunningHub, start_hub

from hub.demo.world import DemoWorld, build_world
from hub.store import migrate
from hub.store.engine import make_engine

DATABASE_ENV = "CERTHUB_TEST_DATABASE_URL"
REDIS_ENV = "CERTHUB_TEST_REDIS_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on SQLite and, where CERTHUB_TEST_DATABASE_URL is set, PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'certhub.db'}"
        return
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: PostgreSQL tests need a server")
    with fresh_postgres_database(base) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def world() -> DemoWorld:
    return build_world()


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: Redis tests need a server")
    return url


@pytest.fixture
def cache_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix no other test uses; its keys are removed afterwards."""
    value = f"t{uuid.uuid4().hex[:16]}"
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"certhub:{value}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a test may have left Redis unreachable: nothing to clean
    finally:
        client.close()


@pytest.fixture
def running_hub(tmp_path: Path, engine: Engine, world: DemoWorld) -> Iterator[RunningHub]:
    running = start_hub(tmp_path / "data", engine, world)
    yield running
    running.server.stop(grace=None)
    running.hub.close()
