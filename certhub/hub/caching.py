"""Choosing and wiring the hub's cache and rate limiter from its configuration.

What is cached, and where:

* a holder's current certificates: ``HolderScopes`` over ``cache.GenerationalCache``
  (scope ``holder:<commitment>``), in Redis when ``--redis`` is given, in-process when the
  hub is one process, and not at all when several processes have no shared Redis: an
  in-process cache cannot see another process's invalidation, so a revocation served by
  worker A would leave worker B showing the certificate as VALID;
* in front of Redis, each process keeps the holder views it read for a while
  (``cache.NearCache``): a repeat fetch of a holder costs no Redis round trip. It cannot
  see other processes' invalidations, and need not: every cached view is checked against
  the holder's version in the fetch's group commit, and a superseded one is dropped and
  read again (``certhub.hub.services.freshness``);
* the registry and its parsed public keys: in each process (``RegistrySource``), re-checked
  against the database every ``RELOAD_INTERVAL_SECONDS``. It is small, read on every call
  and changes rarely, so a Redis round trip would cost more than it saves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from certhub.cache import (
    GenerationalCache,
    MemoryCache,
    MemoryRateLimiter,
    Namespace,
    RateLimit,
    RateLimiter,
    RedisCache,
    RedisRateLimiter,
)
from certhub.cache.near import NearCache
from certhub.cache.port import Cache
from certhub.hub.app import HolderCache, NoCache
from certhub.hub.services.intake import HolderView
from certhub.hub.services.intake.codec import HOLDER_SCHEMA_VERSION, decode_holder, encode_holder

log = logging.getLogger("certhub.cache")

__all__ = [
    "HOLDER_CACHE_TTL_SECONDS",
    "HOLDER_SCHEMA_VERSION",
    "CacheChoice",
    "HolderScopes",
    "announce_cache",
    "announce_rate_limits",
    "build_holder_cache",
    "build_rate_limiter",
    "holder_scope",
    "to_rate_limit",
]

# How long a cached holder view lives. Correctness does not depend on it: a view whose
# invalidation was lost is caught in the fetch's group commit (certhub.hub.services.freshness) and
# costs one database read. It bounds how long such a superseded view keeps costing that
# read; two minutes still covers the repeated fetches of one case at a service window
# (the same applicant, several materials, a few minutes).
HOLDER_CACHE_TTL_SECONDS = 120.0


# Holder views each process keeps in front of Redis. A window fetches one applicant a few
# times per case within minutes; 10,000 holders cover the cases in progress at every window
# of a district (3,458 items, a few thousand cases a day) with views of a few KiB each.
NEAR_CACHE_HOLDERS = 10_000
# ... and at most this many bytes of them per process (a few holders with many large
# envelopes must not grow a worker past the size a small VM gives it).
NEAR_CACHE_BYTES = 64 * 1024 * 1024


def holder_scope(commitment: str) -> str:
    """The cache scope of one holder: the commitment, never the raw ID, reaches Redis."""
    return f"holder:{commitment}"


class HolderScopes:
    """``certhub.hub.app.HolderCache`` over a generational cache, with counters for metrics.

    ``reads`` counts fetches that asked the cache, ``loads`` those that went to the
    database (misses and cache trouble), ``lost_invalidations`` bumps the backend could
    not make (it heals them with its epoch). ``outages`` / ``errors`` come from the Redis
    backend (0 in-process).
    """

    def __init__(
        self,
        *,
        generational: GenerationalCache,
        backend: Cache,
        kind: str,
        near: NearCache | None = None,
    ) -> None:
        self._generational = generational
        self.backend = backend
        self.kind = kind
        self._near = near
        self._lock = threading.Lock()
        self.reads = 0
        self.loads = 0
        self.near_hits = 0
        self.lost_invalidations = 0

    @property
    def hits(self) -> int:
        return self.reads - self.loads

    @property
    def outages(self) -> int:
        return self.backend.outages if isinstance(self.backend, RedisCache) else 0

    @property
    def errors(self) -> int:
        return self.backend.errors if isinstance(self.backend, RedisCache) else 0

    async def read_through(
        self, scope: str, load: Callable[[], Awaitable[HolderView]]
    ) -> tuple[HolderView, bool]:
        loaded: HolderView | None = None

        # Counters are read by the metrics thread; += on an int is not atomic across threads.
        async def counted() -> bytes:
            nonlocal loaded
            with self._lock:
                self.loads += 1
            loaded = await load()
            return encode_holder(loaded)

        with self._lock:
            self.reads += 1
        if self._near is not None:
            near = self._near.get(scope)
            if near is not None:
                with self._lock:
                    self.near_hits += 1
                return decode_holder(near), True
        value = await self._generational.read_through_async(holder_scope(scope), counted)
        if self._near is not None:
            self._near.put(scope, value)
        if loaded is not None:  # read now: no need to decode what was just encoded
            return loaded, False
        return decode_holder(value), True

    async def invalidate(self, scopes: Sequence[str]) -> bool:
        if self._near is not None:
            self._near.discard(list(scopes))
        done = await self._generational.invalidate_async([holder_scope(s) for s in scopes])
        if not done:
            with self._lock:
                self.lost_invalidations += 1
        return done

    def close(self) -> None:
        self.backend.close()

    async def close_async(self) -> None:
        """Close the event loop's connections, on that loop (before it stops)."""
        await self.backend.close_async()


@dataclass(frozen=True, kw_only=True)
class CacheChoice:
    """Where the holder cache lives for one configuration, and why (logged once)."""

    kind: str  # "redis" | "memory" | "off"
    reason: str


def choose_cache(*, enabled: bool, redis_url: str | None, workers: int) -> CacheChoice:
    if not enabled:
        return CacheChoice(kind="off", reason="--no-cache given")
    if redis_url:
        return CacheChoice(kind="redis", reason="--redis given: shared by every hub process")
    if workers > 1:
        return CacheChoice(
            kind="off",
            reason=f"{workers} worker processes and no --redis: an in-process cache cannot see "
            "other processes' invalidations, so the holder cache is disabled",
        )
    return CacheChoice(kind="memory", reason="one process and no --redis: in-process LRU")


# Decisions already logged in this process or, for forked workers, in their supervisor:
# N workers making one decision should say it once, not N times (and again per restart).
_announced: set[CacheChoice] = set()


def announce_cache(*, enabled: bool, redis_url: str | None, workers: int) -> CacheChoice:
    """Log where the holder cache will live; a supervisor calls this before forking."""
    choice = choose_cache(enabled=enabled, redis_url=redis_url, workers=workers)
    if choice not in _announced:
        _announced.add(choice)
        log.info("holder cache: %s (%s)", choice.kind, choice.reason)
    return choice


def build_holder_cache(
    *, enabled: bool, redis_url: str | None, workers: int, prefix: str
) -> HolderCache:
    """The holder cache for this process (the decision is logged once, see announce_cache)."""
    choice = announce_cache(enabled=enabled, redis_url=redis_url, workers=workers)
    backend: Cache
    if choice.kind == "off":
        return NoCache()
    if choice.kind == "redis":
        assert redis_url is not None
        backend = RedisCache.from_url(redis_url, prefix=prefix)
    else:
        backend = MemoryCache()
    generational = GenerationalCache(
        cache=backend,
        namespace=Namespace(prefix=prefix, schema_version=HOLDER_SCHEMA_VERSION),
        ttl_seconds=HOLDER_CACHE_TTL_SECONDS,
    )
    near = None
    if choice.kind == "redis":
        near = NearCache(
            max_entries=NEAR_CACHE_HOLDERS,
            max_bytes=NEAR_CACHE_BYTES,
            ttl_seconds=HOLDER_CACHE_TTL_SECONDS,
        )
    return HolderScopes(generational=generational, backend=backend, kind=choice.kind, near=near)


# Worker counts whose per-process rate limits were already warned about (see _announced).
_limits_announced: set[int] = set()


def announce_rate_limits(*, redis_url: str | None, workers: int) -> None:
    """Warn once when rate limits cannot be shared: each process then has its own buckets."""
    if redis_url or workers <= 1 or workers in _limits_announced:
        return
    _limits_announced.add(workers)
    log.warning(
        "rate limits: no --redis, so each of the %d worker processes keeps its own token "
        "buckets; a principal can get up to %d times its registry rate",
        workers,
        workers,
    )


def build_rate_limiter(*, redis_url: str | None, prefix: str, workers: int = 1) -> RateLimiter:
    """Shared buckets in Redis when there is one, else this process's own buckets."""
    if redis_url:
        return RedisRateLimiter.from_url(redis_url, prefix=prefix)
    announce_rate_limits(redis_url=redis_url, workers=workers)
    return MemoryRateLimiter()


def to_rate_limit(per_second: float, burst: int) -> RateLimit:
    return RateLimit(rate_per_second=per_second, burst=burst)
