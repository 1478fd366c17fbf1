"""Fixtures for the cache tests: the shared Redis, private Redis servers, a fake clock."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
from support.redis_server import RedisServer, own_redis_server

from certhub.cache.port import Namespace

if TYPE_CHECKING:
    from pathlib import Path

# What "returns promptly" means while Redis is down or hung: several times the backend's
# 100 ms timeout, far below what a client would notice as an error.
PROMPT = 0.5


class FakeClock:
    """An injectable monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("CERTHUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("CERTHUB_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    return url


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"certhub:{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix no other test uses; its keys on the shared Redis are removed after."""
    value = f"t{uuid.uuid4().hex[:16]}"
    yield value
    url = os.environ.get("CERTHUB_TEST_REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        try:
            _delete_prefix(client, value)
        except redis.RedisError:
            pass  # the test may have left the shared Redis unreachable: nothing to clean
        finally:
            client.close()


@pytest.fixture
def namespace(prefix: str) -> Namespace:
    return Namespace(prefix=prefix, schema_version=1)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis_server(tmp_path) as server:
        yield server


Timed = Callable[[Callable[[], object]], object]


@pytest.fixture
def prompt() -> Timed:
    """Run a call and fail the test if it does not return within PROMPT seconds."""

    def run(call: Callable[[], object]) -> object:
        start = time.monotonic()
        result = call()
        elapsed = time.monotonic() - start
        assert elapsed < PROMPT, f"call took {elapsed:.3f}s, more than {PROMPT}s"
        return result

    return run
