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

from certhub.hub.demo.world import DemoWorld, build_world
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine

DATABASE_ENV = "CERTHUB_TEST_DATABASE_URL"
REDIS_ENV = "CERTHUB_TEST_REDIS_URL"

# Markers are applied here from what a test uses, so a new test is marked by the fixtures and
# parameters it takes; a test slow for its own reasons carries @pytest.mark.slow itself.
# `pytest -m "not slow"` is the inner loop (README, "Testing"); the full suite runs everything.
#
# postgres: a parameter (database_url, shared_hub, fz, source_url ...) chose "postgresql", or
# the test takes a fixture that reads CERTHUB_TEST_DATABASE_URL itself. Such a variant is also
# slow: each makes a fresh PostgreSQL database (about 0.6 s a test on the 2-core CI machine,
# 490 of them: minutes), while its SQLite twin runs the same code in the inner loop.
POSTGRES_FIXTURES = frozenset({"pg_engine", "db_url"})
# redis: the test takes the Redis URL, or a parameter chose a Redis backend ("redis", "redis-2").
REDIS_FIXTURES = frozenset({"redis_url"})
# slow as a whole: fault injection against served hubs, RPC fuzzing, a browser.
SLOW_DIRECTORIES = (Path(__file__).parent / "faults", Path(__file__).parent / "hub" / "fuzz")
SLOW_FIXTURES = frozenset({"browser"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = [v for v in callspec.params.values() if isinstance(v, str)] if callspec else []
        if "postgresql" in params:
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.slow)
        elif fixtures & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if fixtures & REDIS_FIXTURES or any(p.startswith("redis") for p in params):
            item.add_marker(pytest.mark.redis)
        if fixtures & SLOW_FIXTURES or any(d in item.path.parents for d in SLOW_DIRECTORIES):
            item.add_marker(pytest.mark.slow)


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
