"""Namespace keys and the generational read-through scheme on every backend."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from certhub.cache.memory import MemoryCache
from certhub.cache.port import (
    Cache,
    GenerationalCache,
    Namespace,
    fold_generation,
    generation_tag,
    unfold_generation,
)
from certhub.cache.redis import RedisCache

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TTL = 60.0


def test_namespace_key_layout() -> None:
    ns = Namespace(prefix="gulou", schema_version=3)
    assert ns.key("holder", "abc", "g7") == "certhub:gulou:v3:holder:abc:g7"


def test_two_hubs_and_two_schemas_never_share_keys() -> None:
    keys = {
        Namespace(prefix="a", schema_version=1).key("holder", "x"),
        Namespace(prefix="b", schema_version=1).key("holder", "x"),
        Namespace(prefix="a", schema_version=2).key("holder", "x"),
    }
    assert len(keys) == 3


@pytest.mark.parametrize("bad", ["", "a:v1", "has space", "x" * 65])
def test_namespace_rejects_a_prefix_that_is_not_one_key_segment(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Namespace(prefix=bad, schema_version=1)


def test_namespace_rejects_a_negative_schema_version() -> None:
    with pytest.raises(ValueError, match="schema_version"):
        Namespace(prefix="a", schema_version=-1)


@pytest.mark.parametrize(
    ("epoch", "generation"), [(0, 0), (1, 7), (1_700_000_000_000_000, 2**64 - 1)]
)
def test_a_generation_folds_unfolds_and_tags_both_parts_in_decimal(
    epoch: int, generation: int
) -> None:
    folded = fold_generation(epoch, generation)
    assert unfold_generation(folded) == (epoch, generation)
    # The Redis script builds this text from the two stored counters: it must match.
    assert generation_tag(folded) == f"g{epoch}.{generation}"


def test_different_generations_have_different_tags() -> None:
    # Bumping either part changes the tag; (1, 23) and (12, 3) do not collide.
    pairs = [(0, 0), (0, 1), (1, 0), (1, 23), (12, 3), (123, 0)]
    assert len({generation_tag(fold_generation(e, g)) for e, g in pairs}) == len(pairs)


def test_fold_rejects_a_scope_generation_that_would_spill_into_the_epoch() -> None:
    with pytest.raises(ValueError, match="out of range"):
        fold_generation(0, 2**64)


def test_generational_cache_rejects_a_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        GenerationalCache(
            cache=MemoryCache(), namespace=Namespace(prefix="a", schema_version=1), ttl_seconds=0
        )


# Each backend as (reader's cache, writer's cache): the same object, or for "redis-2" two
# RedisCache instances on one Redis, standing in for two hub processes.
Pair = tuple[Cache, Cache]


@pytest.fixture(params=["memory", "redis", "redis-2"])
def pair(request: pytest.FixtureRequest, prefix: str) -> Iterator[Pair]:
    if request.param == "memory":
        shared = MemoryCache()
        yield shared, shared
        return
    url: str = request.getfixturevalue("redis_url")
    reader = RedisCache.from_url(url, prefix=prefix)
    writer = reader if request.param == "redis" else RedisCache.from_url(url, prefix=prefix)
    yield reader, writer
    reader.close()
    writer.close()


def _caches(pair: Pair, namespace: Namespace) -> tuple[GenerationalCache, GenerationalCache]:
    reader, writer = pair
    return (
        GenerationalCache(cache=reader, namespace=namespace, ttl_seconds=TTL),
        GenerationalCache(cache=writer, namespace=namespace, ttl_seconds=TTL),
    )


class Database:
    """The source of truth, counting loads so a test can tell hits from misses."""

    def __init__(self, value: bytes) -> None:
        self.value = value
        self.loads = 0

    def load(self) -> bytes:
        self.loads += 1
        return self.value


def test_second_read_is_a_hit(pair: Pair, namespace: Namespace) -> None:
    reader, _ = _caches(pair, namespace)
    db = Database(b"certs-v1")
    assert reader.read_through("holder:h1", db.load) == b"certs-v1"
    assert reader.read_through("holder:h1", db.load) == b"certs-v1"
    assert db.loads == 1


def test_invalidate_through_the_writer_is_seen_by_the_reader(
    pair: Pair, namespace: Namespace
) -> None:
    reader, writer = _caches(pair, namespace)
    db = Database(b"valid")
    other = Database(b"other holder")
    reader.read_through("holder:h1", db.load)
    reader.read_through("holder:h2", other.load)
    db.value = b"revoked"
    assert writer.invalidate(["holder:h1"]) is True
    assert reader.read_through("holder:h1", db.load) == b"revoked"
    assert reader.read_through("holder:h2", other.load) == b"other holder"
    assert (db.loads, other.loads) == (2, 1)  # only the invalidated scope was reloaded


def test_slow_reader_cannot_resurrect_stale_data(pair: Pair, namespace: Namespace) -> None:
    reader, writer = _caches(pair, namespace)
    reader_cache, _ = pair
    scope = "holder:h1"
    db = Database(b"VALID")
    stale_generation = reader_cache.generation(scope)

    def slow_load() -> bytes:
        value = db.load()  # the reader's database read happens before the revocation...
        db.value = b"REVOKED"  # ...which commits while the reader is still busy
        assert writer.invalidate([scope]) is True
        return value

    # The slow reader answers its own (earlier) request with what it read, and writes it.
    assert reader.read_through(scope, slow_load) == b"VALID"
    # That write happened, under the old generation: a bare delete would have lost here.
    assert stale_generation is not None
    stale_key = reader.key(scope, stale_generation)
    assert reader_cache.get_many([stale_key]) == [b"VALID"]
    # Every read that starts after invalidate returned sees the revocation, in both "processes".
    assert reader.read_through(scope, db.load) == b"REVOKED"
    assert writer.read_through(scope, db.load) == b"REVOKED"


def test_concurrent_readers_never_see_a_revoked_value_after_invalidate(
    pair: Pair, namespace: Namespace
) -> None:
    """Many readers race many revocations; after each invalidate returns, reads are fresh."""
    reader, writer = _caches(pair, namespace)
    scope = "holder:race"
    version = [0]
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []

    def load() -> bytes:
        with lock:
            return str(version[0]).encode()

    def background_reader() -> None:
        while not stop.is_set():
            reader.read_through(scope, load)

    threads = [threading.Thread(target=background_reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for expected in range(1, 60):
            with lock:
                version[0] = expected  # commit
            assert writer.invalidate([scope]) is True  # then invalidate, then answer
            seen = reader.read_through(scope, load)
            if int(seen) < expected:
                failures.append(f"revision {expected} answered, then read {seen!r}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []


def test_backend_unavailable_means_load_and_do_not_cache(namespace: Namespace) -> None:
    down = RedisCache.from_url("redis://127.0.0.1:1/0", prefix=namespace.prefix)
    gc = GenerationalCache(cache=down, namespace=namespace, ttl_seconds=TTL)
    db = Database(b"x")
    loader: Callable[[], bytes] = db.load
    assert gc.read_through("holder:h", loader) == b"x"
    assert gc.read_through("holder:h", loader) == b"x"
    assert db.loads == 2
    assert gc.invalidate(["holder:h"]) is False
    down.close()


# The one-call read (``Cache.read``) on every backend: generation first, then the value
# stored under that generation's key, and nothing else.


def _prefix(namespace: Namespace, scope: str) -> str:
    return namespace.key(scope, "")


def test_read_returns_the_value_set_under_the_current_generation(
    pair: Pair, namespace: Namespace
) -> None:
    reader, writer = pair
    gc = GenerationalCache(cache=reader, namespace=namespace, ttl_seconds=TTL)
    scope = "holder:h1"
    generation, value = reader.read(scope, _prefix(namespace, scope))
    assert generation is not None
    assert value is None  # nothing cached yet
    assert generation == reader.generation(scope)
    reader.set(gc.key(scope, generation), b"certs", ttl_seconds=TTL)
    reader.set(gc.key("holder:h2", generation), b"other scope", ttl_seconds=TTL)
    assert reader.read(scope, _prefix(namespace, scope)) == (generation, b"certs")
    # The other "process" reads the same generation and finds the same entry.
    assert writer.read(scope, _prefix(namespace, scope)) == (generation, b"certs")


def test_read_misses_after_a_bump(pair: Pair, namespace: Namespace) -> None:
    reader, writer = pair
    gc = GenerationalCache(cache=reader, namespace=namespace, ttl_seconds=TTL)
    scope, untouched = "holder:h1", "holder:h2"
    old, _ = reader.read(scope, _prefix(namespace, scope))
    kept, _ = reader.read(untouched, _prefix(namespace, untouched))
    assert old is not None
    assert kept is not None
    reader.set(gc.key(scope, old), b"VALID", ttl_seconds=TTL)
    reader.set(gc.key(untouched, kept), b"kept", ttl_seconds=TTL)
    assert writer.bump([scope]) is True
    new, value = reader.read(scope, _prefix(namespace, scope))
    assert new is not None
    assert new != old
    assert value is None
    assert reader.read(untouched, _prefix(namespace, untouched)) == (kept, b"kept")


def test_a_stale_set_under_an_old_generation_is_never_read_after_a_bump(
    pair: Pair, namespace: Namespace
) -> None:
    """The racing reader through the one-call read: it read generation G (a miss), loaded
    VALID, the revocation committed and bumped, and only then did it store VALID under G."""
    reader, writer = pair
    gc = GenerationalCache(cache=reader, namespace=namespace, ttl_seconds=TTL)
    scope = "holder:h1"
    stale, value = reader.read(scope, _prefix(namespace, scope))
    assert stale is not None
    assert value is None
    assert writer.bump([scope]) is True  # revocation: commit, bump, answer
    reader.set(gc.key(scope, stale), b"VALID", ttl_seconds=TTL)  # the slow reader lands
    assert reader.get_many([gc.key(scope, stale)]) == [b"VALID"]  # it is there...
    for cache in (reader, writer):  # ...but no read reaches it, in either "process"
        generation, value = cache.read(scope, _prefix(namespace, scope))
        assert generation is not None
        assert generation != stale
        assert value is None
    db = Database(b"REVOKED")
    assert gc.read_through(scope, db.load) == b"REVOKED"
    assert gc.read_through(scope, db.load) == b"REVOKED"
    assert db.loads == 1  # the fresh value was cached under the new generation


def test_read_through_stores_a_miss_under_the_generation_it_read(
    pair: Pair, namespace: Namespace
) -> None:
    reader, _ = pair
    gc = GenerationalCache(cache=reader, namespace=namespace, ttl_seconds=TTL)
    scope = "holder:h1"
    generation = reader.generation(scope)
    assert generation is not None
    assert gc.read_through(scope, lambda: b"loaded") == b"loaded"
    assert reader.get_many([gc.key(scope, generation)]) == [b"loaded"]


def test_an_unavailable_backend_reads_none_none_and_loads_without_caching(
    namespace: Namespace,
) -> None:
    down = RedisCache.from_url("redis://127.0.0.1:1/0", prefix=namespace.prefix)
    scope = "holder:h"
    for _ in range(3):  # the first call fails, the others skip Redis: all the same answer
        assert down.read(scope, _prefix(namespace, scope)) == (None, None)
    gc = GenerationalCache(cache=down, namespace=namespace, ttl_seconds=TTL)
    db = Database(b"x")
    assert gc.read_through(scope, db.load) == b"x"
    assert gc.read_through(scope, db.load) == b"x"
    assert db.loads == 2
    down.close()
