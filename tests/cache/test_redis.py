"""RedisCache: basic behaviour on the shared Redis, and outages on a server the test owns."""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

import pytest
import redis

from certhub.cache.port import Cache, GenerationalCache, Namespace
from certhub.cache.redis import MAX_VALUE_BYTES, RETRY_INTERVAL, RedisCache

if TYPE_CHECKING:
    from conftest import RedisServer, Timed

TTL = 60.0
# Timeouts on the shared 2-core machine: above the production default so a busy CI box
# does not fake an outage, still well under the test's PROMPT bound.
TEST_SOCKET_TIMEOUT = 0.2


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "certhub.cache" and r.levelno == logging.WARNING]


def test_is_a_cache(redis_url: str, prefix: str) -> None:
    c = RedisCache.from_url(redis_url, prefix=prefix)
    assert isinstance(c, Cache)
    c.close()


def test_values_round_trip_and_expire(redis_url: str, namespace: Namespace) -> None:
    c = RedisCache.from_url(redis_url, prefix=namespace.prefix)
    a, b = namespace.key("a"), namespace.key("b")
    assert c.get_many([]) == []
    c.set(a, b"\x00\xffbytes", ttl_seconds=0.2)
    assert c.get_many([a, b]) == [b"\x00\xffbytes", None]
    time.sleep(0.3)
    assert c.get_many([a]) == [None]
    c.set(b, b"v", ttl_seconds=TTL)
    c.delete(b)
    assert c.get_many([b]) == [None]
    assert (c.outages, c.errors) == (0, 0)
    c.close()


def test_oversized_value_is_not_cached_and_drops_the_old_one(
    redis_url: str, namespace: Namespace
) -> None:
    c = RedisCache.from_url(redis_url, prefix=namespace.prefix)
    key = namespace.key("big")
    c.set(key, b"old", ttl_seconds=TTL)
    c.set(key, b"x" * (MAX_VALUE_BYTES + 1), ttl_seconds=TTL)
    assert c.get_many([key]) == [None]
    c.close()


def test_generations_are_per_deployment_prefix(redis_url: str, prefix: str) -> None:
    hub_a = RedisCache.from_url(redis_url, prefix=prefix)
    hub_b = RedisCache.from_url(redis_url, prefix=prefix + "b")
    before = hub_b.generation("holder:h")
    assert before == hub_b.generation("holder:h")  # stable until bumped
    assert hub_a.bump(["holder:h"]) is True
    assert hub_b.generation("holder:h") == before
    assert hub_b.bump(["holder:h"]) is True
    assert hub_b.generation("holder:h") != before
    hub_a.close()
    hub_b.close()
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"certhub:{prefix}b:*"))
    client.close()


def test_a_forgotten_generation_is_never_reused(redis_url: str, prefix: str) -> None:
    """Expiry or eviction of a counter costs a miss, never a stale hit."""
    c = RedisCache.from_url(redis_url, prefix=prefix)
    scope = "holder:h"
    first = c.generation(scope)
    c.bump([scope])
    bumped = c.generation(scope)
    client = redis.Redis.from_url(redis_url)
    client.delete(f"certhub:{prefix}:gen:{scope}")  # what expiry or eviction would do
    client.close()
    again = c.generation(scope)
    assert again not in (first, bumped)
    c.close()


@pytest.mark.slow
def test_outage_is_fail_soft_logged_once_and_a_lost_bump_moves_the_epoch(
    redis_server: RedisServer,
    namespace: Namespace,
    caplog: pytest.LogCaptureFixture,
    prompt: Timed,
) -> None:
    caplog.set_level(logging.INFO, logger="certhub.cache")
    # Two hub processes: the writer loses a bump during the outage, the reader does not
    # touch Redis during it at all.
    writer_cache = RedisCache.from_url(
        redis_server.url, prefix=namespace.prefix, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    reader_cache = RedisCache.from_url(
        redis_server.url, prefix=namespace.prefix, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    writer = GenerationalCache(cache=writer_cache, namespace=namespace, ttl_seconds=TTL)
    reader = GenerationalCache(cache=reader_cache, namespace=namespace, ttl_seconds=TTL)
    scope = "holder:h1"
    db = {scope: b"VALID"}
    loads = [0]

    def load() -> bytes:
        loads[0] += 1
        return db[scope]

    assert reader.read_through(scope, load) == b"VALID"
    assert reader.read_through(scope, load) == b"VALID"
    assert loads[0] == 1
    old_generation = reader_cache.generation(scope)
    # Snapshot, then crash: the restart below brings back the cached VALID entry and the
    # old generation, exactly the state in which a lost bump would resurrect stale data.
    redis_server.save()
    redis_server.kill()

    db[scope] = b"REVOKED"  # the revocation commits to the database...
    assert prompt(lambda: writer.invalidate([scope])) is False  # ...and cannot invalidate
    for _ in range(20):
        assert prompt(lambda: writer.read_through(scope, load)) == b"REVOKED"
        assert prompt(lambda: writer_cache.generation(scope)) is None
        assert prompt(lambda: writer_cache.get_many(["k1", "k2"])) == [None, None]
        assert prompt(lambda: writer_cache.set("k1", b"v", ttl_seconds=TTL)) is None
        assert prompt(lambda: writer_cache.delete("k1")) is None
        assert prompt(lambda: writer_cache.bump([scope])) is False
    time.sleep(RETRY_INTERVAL)  # one probe while still down: an error, not a new outage
    assert prompt(lambda: writer_cache.generation(scope)) is None

    assert len(_warnings(caplog)) == 1
    assert writer_cache.outages == 1
    assert 1 <= writer_cache.errors <= 3  # first failure + at most the probes, not every call
    assert not writer_cache.available

    redis_server.start()  # loads the snapshot: VALID is cached again under old_generation
    # The residual window: the reader never saw the outage and the writer has not been
    # back yet, so the reader still finds the old generation (bounded by the TTL).
    assert reader_cache.generation(scope) == old_generation

    time.sleep(RETRY_INTERVAL)
    # The writer's first call after the interval probes, bumps the epoch, then serves.
    assert writer_cache.generation("holder:other") is not None
    assert writer_cache.available
    recovered = [
        r for r in caplog.records if r.name == "certhub.cache" and r.levelno == logging.INFO
    ]
    assert len(recovered) == 1

    # The VALID entry is still in Redis, but no one can reach it any more.
    assert reader_cache.generation(scope) != old_generation
    admin = redis_server.admin()
    assert old_generation is not None
    assert admin.get(reader.key(scope, old_generation)) == b"VALID"
    admin.close()
    assert reader.read_through(scope, load) == b"REVOKED"
    assert writer.read_through(scope, load) == b"REVOKED"
    assert (writer_cache.outages, reader_cache.outages) == (1, 0)
    assert len(_warnings(caplog)) == 1

    # And the cache is used again: a second read is a hit.
    before = loads[0]
    assert reader.read_through(scope, load) == b"REVOKED"
    assert loads[0] == before
    writer_cache.close()
    reader_cache.close()


@pytest.mark.slow
def test_hung_redis_times_out_fast_and_recovers(
    redis_server: RedisServer, namespace: Namespace, prompt: Timed
) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP) is an outage too."""
    c = RedisCache.from_url(
        redis_server.url, prefix=namespace.prefix, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    gc = GenerationalCache(cache=c, namespace=namespace, ttl_seconds=TTL)
    assert gc.read_through("holder:h", lambda: b"v1") == b"v1"
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(10):
            assert prompt(lambda: gc.read_through("holder:h", lambda: b"db")) == b"db"
            assert prompt(lambda: gc.invalidate(["holder:h"])) is False
        assert c.outages == 1
        assert c.errors == 1  # the first timeout; everything after skipped Redis
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    time.sleep(RETRY_INTERVAL)
    assert gc.read_through("holder:h", lambda: b"v2") == b"v2"  # epoch moved: v1 unreachable
    assert c.available
    assert gc.read_through("holder:h", lambda: b"not loaded") == b"v2"  # cached again
    c.close()


# How many warm reads the round-trip test counts: a few, so one stray command per read
# would show as a multiple, not as noise.
WARM_READS = 5


def test_a_warm_read_is_one_redis_command(redis_server: RedisServer, namespace: Namespace) -> None:
    """Counted by Redis itself, in the slow log of a private server set to log every
    command: it names the client that sent each one, while the commands a script runs
    show as client ``?:0``. (``INFO commandstats`` cannot tell those apart: it also counts
    the GETs the script makes.)"""
    admin = redis_server.admin()
    admin.config_set("slowlog-log-slower-than", 0)
    admin.config_set("slowlog-max-len", 1000)
    reader_cache = RedisCache.from_url(
        f"{redis_server.url}?client_name=reader",
        prefix=namespace.prefix,
        socket_timeout=TEST_SOCKET_TIMEOUT,
    )
    reader = GenerationalCache(cache=reader_cache, namespace=namespace, ttl_seconds=TTL)
    assert reader.read_through("holder:h", lambda: b"certs") == b"certs"  # cold: caches
    admin.slowlog_reset()
    for _ in range(WARM_READS):
        assert reader.read_through("holder:h", lambda: b"not loaded") == b"certs"
    sent = [
        e["command"].split()[0].upper()
        for e in reversed(admin.slowlog_get(1000))
        if e["client_name"] == b"reader"
    ]
    assert sent == [b"EVALSHA"] * WARM_READS
    admin.close()
    reader_cache.close()


@pytest.mark.slow
def test_epoch_heal_after_a_lost_bump_makes_old_entries_unreachable_to_read(
    redis_server: RedisServer, namespace: Namespace, prompt: Timed
) -> None:
    writer_cache = RedisCache.from_url(
        redis_server.url, prefix=namespace.prefix, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    reader_cache = RedisCache.from_url(
        redis_server.url, prefix=namespace.prefix, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    reader = GenerationalCache(cache=reader_cache, namespace=namespace, ttl_seconds=TTL)
    scope = "holder:h1"
    prefix = namespace.key(scope, "")
    assert reader.read_through(scope, lambda: b"VALID") == b"VALID"
    old, cached = reader_cache.read(scope, prefix)
    assert old is not None
    assert cached == b"VALID"
    redis_server.save()  # the restart below brings the entry and its generation back
    redis_server.kill()
    assert prompt(lambda: writer_cache.bump([scope])) is False  # the lost bump
    redis_server.start()
    # The residual window: until the writer is back, the reader still hits the old entry.
    assert reader_cache.read(scope, prefix) == (old, b"VALID")
    time.sleep(RETRY_INTERVAL)
    assert writer_cache.read("holder:other", namespace.key("holder:other", ""))[0] is not None
    new, cached = reader_cache.read(scope, prefix)
    assert new is not None
    assert new != old
    assert cached is None
    admin = redis_server.admin()
    assert admin.get(reader.key(scope, old)) == b"VALID"  # still stored, never read again
    admin.close()
    assert reader.read_through(scope, lambda: b"REVOKED") == b"REVOKED"
    writer_cache.close()
    reader_cache.close()


@pytest.mark.slow
def test_read_while_redis_is_down_is_none_none_and_recovers(
    redis_server: RedisServer, namespace: Namespace, prompt: Timed
) -> None:
    c = RedisCache.from_url(
        redis_server.url, prefix=namespace.prefix, socket_timeout=TEST_SOCKET_TIMEOUT
    )
    gc = GenerationalCache(cache=c, namespace=namespace, ttl_seconds=TTL)
    scope = "holder:h"
    prefix = namespace.key(scope, "")
    assert gc.read_through(scope, lambda: b"v1") == b"v1"
    redis_server.kill()
    for _ in range(10):
        assert prompt(lambda: c.read(scope, prefix)) == (None, None)
        assert prompt(lambda: gc.read_through(scope, lambda: b"db")) == b"db"
    assert c.outages == 1
    # The first failure, plus at most a probe or two if the loop outlasted RETRY_INTERVAL on a
    # busy machine: not one error per call, the others skipped Redis.
    assert 1 <= c.errors <= 3
    redis_server.start()  # empty: no snapshot was taken
    time.sleep(RETRY_INTERVAL)
    generation, value = c.read(scope, prefix)
    assert generation is not None
    assert value is None
    assert gc.read_through(scope, lambda: b"v2") == b"v2"
    assert c.read(scope, prefix) == (generation, b"v2")
    c.close()


def test_a_counter_not_in_canonical_decimal_is_backend_trouble(
    redis_url: str, namespace: Namespace
) -> None:
    """The script reads the value key built from the counters' text, a miss is stored
    under the key built from their numbers: text like "+7" would make those differ."""
    c = RedisCache.from_url(redis_url, prefix=namespace.prefix)
    scope = "holder:h"
    client = redis.Redis.from_url(redis_url)
    client.set(f"certhub:{namespace.prefix}:gen:{scope}", b"+7")
    client.close()
    assert c.read(scope, namespace.key(scope, "")) == (None, None)
    assert c.errors == 1
    c.close()
