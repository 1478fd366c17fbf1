"""The cache port, its key namespace, and generational invalidation.

Invalidation scheme
===================

A cached value belongs to a *scope* (one holder commitment, the registry, ...). Each scope
has a *generation*, an integer the backend keeps. A value is stored under a key that
contains the generation it was read under::

    namespace.key(scope, f"g{generation}")

Reader (``GenerationalCache.read_through``):

1. read ``gen = cache.generation(scope)`` FIRST, before anything else;
2. try ``cache.get_many([key(gen)])``;
3. on a miss, load from the database, then ``cache.set(key(gen), value)``.

Writer (push, revoke): commit to the database, then ``cache.bump([scope])`` BEFORE
answering. A bump atomically moves the generation to a value it never had before.

Why stale data cannot come back: a reader that read ``gen`` before the bump and finishes
its database load after it writes under ``key(gen)``, the OLD generation. Every reader that
starts after the bump returned reads the new generation first, so it never looks at
``key(gen)`` again. A bare ``delete`` would not do: the slow reader's ``set`` would land
after the delete and be served.

Generations are never reused, even after the backend forgets a counter (expiry, eviction,
restart): the Redis backend stamps a new or bumped generation with
``max(old + 1, server time in microseconds)``, and the in-process backend draws them from
one process-wide counter. So a forgotten counter only costs misses, never stale hits.

Lost bumps and the epoch
========================

``bump`` returns ``False`` when the backend is down: the writer could not invalidate. The
generation the readers see is the pair (epoch, scope generation) folded into one integer,
read in one round trip, where the *epoch* is one global counter per deployment. The
process that lost a bump increments the epoch as its first action when the backend answers
again, before it serves anything from the cache; that makes every entry written before the
failure, by every process, unreachable.

Residual window, honestly: between the lost bump and that epoch increment, OTHER processes
that can still reach the backend (a partition that only cut this process off) or that
reconnect earlier keep serving the entries cached before the write. The window ends when
the failing process reaches the backend again (its next cache call after the retry
interval), and in any case when those entries' TTL runs out; if the failing process dies
before reconnecting, only the TTL bounds it. So TTLs must be chosen as the longest
staleness the hub may tolerate after a Redis failure. A Redis restored from an old
snapshot also forgets bumps that nobody knows were lost: run the cache Redis without
persistence (``--save "" --appendonly no``) so a restart comes back empty.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Cache", "GenerationalCache", "Namespace"]

# A prefix is one key segment: a colon would let prefix "a:v1" read Namespace("a", 1).
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@runtime_checkable
class Cache(Protocol):
    """Byte values under string keys. Every method is fail-soft: backend trouble never raises."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def generation(self, scope: str) -> int | None:
        """The scope's current generation; None = backend unavailable (miss, do not cache)."""
        ...

    def bump(self, scopes: Sequence[str]) -> bool:
        """Move each scope to a new generation; False = could not invalidate (backend down)."""
        ...

    def close(self) -> None: ...


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is one safe key segment, else raise ValueError naming it."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix {prefix!r} must be 1-64 characters from A-Z a-z 0-9 _ . - (no colon)"
        )
    return prefix


def check_ttl(ttl_seconds: float) -> float:
    """Return ``ttl_seconds`` if it is a positive finite number, else raise ValueError."""
    if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"ttl_seconds must be a positive finite number, got {ttl_seconds!r}")
    return ttl_seconds


@dataclass(frozen=True)
class Namespace:
    """Where one hub deployment's entries of one schema version live.

    Two hubs on one Redis use different prefixes; a change to what the bytes mean bumps
    ``schema_version``. Either way the keys differ, so neither reads the other's entries.
    """

    prefix: str
    schema_version: int

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        if isinstance(self.schema_version, bool) or self.schema_version < 0:
            raise ValueError(
                f"schema_version must be a non-negative integer, got {self.schema_version!r}"
            )

    def key(self, *parts: str) -> str:
        return f"certhub:{self.prefix}:v{self.schema_version}:" + ":".join(parts)


@dataclass(frozen=True, kw_only=True)
class GenerationalCache:
    """Read-through caching of one value per scope with generational invalidation."""

    cache: Cache
    namespace: Namespace
    ttl_seconds: float

    def __post_init__(self) -> None:
        check_ttl(self.ttl_seconds)

    def read_through(self, scope: str, load: Callable[[], bytes]) -> bytes:
        """Return the cached value of ``scope``, or ``load()`` it and cache it.

        Exceptions from ``load`` propagate untouched; cache trouble only costs a load.
        """
        generation = self.cache.generation(scope)  # first: see the module docstring
        if generation is None:
            return load()
        key = self.namespace.key(scope, f"g{generation}")
        [cached] = self.cache.get_many([key])
        if cached is not None:
            return cached
        value = load()
        self.cache.set(key, value, ttl_seconds=self.ttl_seconds)
        return value

    def invalidate(self, scopes: Sequence[str]) -> bool:
        """Call after the database commit and before answering; False = not invalidated."""
        return self.cache.bump(scopes)
