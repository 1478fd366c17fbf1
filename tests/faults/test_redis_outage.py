"""Redis killed and restarted, then frozen and thawed, under `certhub serve --workers 2
--redis URL` while windows fetch and a department pushes: not one call fails.

Redis holds only the holder cache and the rate-limit buckets; the design says an outage
degrades to the database and never becomes an error. The redis-server is the test's own
(a spare port), restarted on the same port, so the hub's clients must reconnect by
themselves. The hub's database is PostgreSQL (two worker processes share it).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATABASE_ENV
from sqlalchemy import select
from support.databases import fresh_postgres_database
from support.load import Load
from support.processes import assert_audit_log_sound
from support.redis_server import RedisServer, own_redis_server
from support.served import ServedHub, prepare_deployment, serve, wait_for

from certhub.hub.demo.world import DemoWorld
from certhub.hub.store.engine import make_engine
from certhub.hub.store.models import Certificate

# The run's phases: traffic with Redis up, Redis gone, Redis back; then Redis frozen
# (SIGSTOP: connections open, no answers, the nastier outage) and thawed. Each lasts until
# every fetching and pushing thread has been answered a few times (support.load.phase_done).
# A call's deadline: with Redis down the hub answers from the database in milliseconds;
# a call that needed this long would mean the cache blocked on a dead Redis.
CALL_DEADLINE = 5.0
# Slowest acceptable answer while Redis is frozen: the hub's Redis socket timeout (well
# under a second, certhub.cache.redis SHORT_TIMEOUT) plus margin for the shared 2-core machine.
SLOW_CALL_SECONDS = 3.0


@pytest.fixture
def db_url() -> Iterator[str]:
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: two hub workers share a PostgreSQL database")
    with fresh_postgres_database(base, prefix="certhub_faults") as url:
        yield url


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def served(
    tmp_path: Path, db_url: str, redis_server: RedisServer, world: DemoWorld
) -> Iterator[ServedHub]:
    engine = make_engine(db_url)
    prepare_deployment(tmp_path / "data", engine, world.registry_toml())
    engine.dispose()
    hub = serve(tmp_path / "data", db_url, "--redis", redis_server.url, workers=2)
    try:
        yield hub
    finally:
        hub.kill()


def _cache_keys(server: RedisServer) -> int:
    client = server.admin()
    try:
        return len(list(client.scan_iter(match="certhub:*", count=1000)))
    finally:
        client.close()


def test_redis_killed_restarted_frozen_and_thawed_costs_no_call(
    served: ServedHub, redis_server: RedisServer, world: DemoWorld, tmp_path: Path, db_url: str
) -> None:
    load = Load(world=world, connect=served.client, fetchers=4, deadline=CALL_DEADLINE)
    load.seed()
    with load:
        load.phase("with Redis up")
        assert _cache_keys(redis_server) > 0, "the hub did not use Redis before the outage"
        redis_server.kill()
        killed_at = time.monotonic()
        load.phase("with Redis gone")
        redis_server.start()  # empty: it saved nothing
        load.phase("with Redis back")
        # Healed: the hub writes to the new Redis again.
        wait_for(lambda: _cache_keys(redis_server) > 0, timeout=10, what="the cache to refill")
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            load.phase("with Redis frozen")
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        load.phase("with Redis thawed")
    calls = load.snapshot()

    assert load.failures() == []
    during = [c for c in calls if c.started >= killed_at]
    assert len({c.kind for c in during}) == 2, "fetches and pushes both ran during the outages"
    slow = [c for c in calls if c.seconds > SLOW_CALL_SECONDS]
    assert slow == [], slow[:5]

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(Certificate.certificate_id)).scalars())
        assert set(load.acknowledged) <= stored
        assert_audit_log_sound(engine, data_dir=tmp_path / "data", db_url=db_url)
    finally:
        engine.dispose()
