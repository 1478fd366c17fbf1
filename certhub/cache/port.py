"""The cache port, its key namespace, and generational invalidation.

Invalidation scheme
===================

A cached value belongs to a *scope* (one holder commitment, the registry, ...). Each scope
has a *generation*, an integer the backend keeps. A value is stored under a key that
contains the generation it was read under::

    namespace.key(scope, generation_tag(generation))      # ...:<scope>:g<epoch>.<gen>

Reader (``GenerationalCache.read_through``):

1. ``gen, cached = cache.read(scope, prefix)``: ONE backend call that reads the scope's
   generation FIRST and then, in the same atomic step, the value under
   ``prefix + generation_tag(gen)`` (on Redis one EVALSHA, so a warm read is one round
   trip; nothing can run between the two reads);
2. on a hit, return ``cached``;
3. on a miss, load from the database, then ``cache.set(key(gen), value)`` under the key
   that was just read, i.e. the generation read BEFORE the load.

Writer (push, revoke): commit to the database, then ``cache.bump([scope])`` BEFORE
answering. A bump atomically moves the generation to a value it never had before.

Why stale data cannot come back: a reader that read ``gen`` before the bump and finishes
its database load after it writes under ``key(gen)``, the OLD generation. Every reader that
starts after the bump returned reads the new generation first, so it never looks at
``key(gen)`` again. A bare ``delete`` would not do: the slow reader's ``set`` would land
after the delete and be served.

The generation is the pair (epoch, scope generation), the epoch being described below,
folded into one integer by ``fold_generation``. Its key tag spells the two parts apart,
``g<epoch>.<gen>``, because the Redis backend builds the key inside a Lua script, whose
numbers are doubles: it could not render ``epoch << 64 | gen`` exactly.

Generations are never reused, even after the backend forgets a counter (expiry, eviction,
restart): the Redis backend stamps a new or bumped generation with
``max(old + 1, server time in microseconds)``, and the in-process backend draws them from
one process-wide counter. So a forgotten counter only costs misses, never stale hits.

Lost bumps and the epoch
========================

``bump`` returns ``False`` when the backend is down: the writer could not invalidate. The
generation the readers see is the pair (epoch, scope generation), read in the same round
trip as the value, where the *epoch* is one global counter per deployment. The
process that lost a bump increments the epoch as its first action when the backend answers
again, before it serves anything from the cache; that makes every entry written before the
failure, by every process, unreachable.

Residual window: between the lost bump and that epoch increment, OTHER processes that can
still reach the backend (a partition that only cut this process off) or that reconnect
earlier can read entries cached before the write. The cache alone therefore cannot promise
freshness, and the hub does not rely on it: every fetch answered from a cached value is
checked against the database in the transaction that audits it (``certhub.hub.services.freshness``),
and a superseded value is read again. What this scheme buys is that the check almost never
fails. A Redis restored from an old snapshot also forgets bumps nobody knows were lost: run
the cache Redis without persistence (``--save "" --appendonly no``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = [
    "GENERATION_BITS",
    "Cache",
    "GenerationalCache",
    "Namespace",
    "fold_generation",
    "generation_tag",
    "unfold_generation",
]

# A prefix is one key segment: a colon would let prefix "a:v1" read Namespace("a", 1).
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Bits of the scope generation when folding (epoch, scope generation) into one int: the
# Redis backend's generations are microsecond stamps (< 2**53) and the in-process one's a
# per-process counter, both far below 2**64.
GENERATION_BITS = 64
_GENERATION_MASK = (1 << GENERATION_BITS) - 1


def fold_generation(epoch: int, generation: int) -> int:
    """The one integer a reader sees for (epoch, scope generation)."""
    if not 0 <= generation <= _GENERATION_MASK or epoch < 0:
        raise ValueError(f"generation ({epoch}, {generation}) out of range")
    return (epoch << GENERATION_BITS) | generation


def unfold_generation(folded: int) -> tuple[int, int]:
    """(epoch, scope generation) of a folded generation."""
    return folded >> GENERATION_BITS, folded & _GENERATION_MASK


def generation_tag(folded: int) -> str:
    """The key part naming a generation, ``g<epoch>.<gen>``: what the Redis script builds."""
    epoch, generation = unfold_generation(folded)
    return f"g{epoch}.{generation}"


@runtime_checkable
class Cache(Protocol):
    """Byte values under string keys. Every method is fail-soft: backend trouble never raises."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def generation(self, scope: str) -> int | None:
        """The scope's current generation; None = backend unavailable (miss, do not cache)."""
        ...

    def read(self, scope: str, key_prefix: str) -> tuple[int | None, bytes | None]:
        """The scope's current generation and, read after it in the same backend call, the
        value under ``key_prefix + generation_tag(generation)`` (None = not cached).

        (None, None) = backend unavailable (load, do not cache).
        """
        ...

    def bump(self, scopes: Sequence[str]) -> bool:
        """Move each scope to a new generation; False = could not invalidate (backend down)."""
        ...

    def close(self) -> None: ...

    # The same operations for an event loop (the serving hub): same semantics, awaited.
    async def read_async(self, scope: str, key_prefix: str) -> tuple[int | None, bytes | None]: ...

    async def set_async(self, key: str, value: bytes, *, ttl_seconds: float) -> None: ...

    async def bump_async(self, scopes: Sequence[str]) -> bool: ...

    async def close_async(self) -> None: ...


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
        # One call: the generation first, then the value under it (see the module docstring).
        generation, cached = self.cache.read(scope, self.namespace.key(scope, ""))
        if generation is None:
            return load()
        if cached is not None:
            return cached
        value = load()
        # Under the generation read BEFORE the load: if a bump came meanwhile, this entry
        # is already unreachable.
        self.cache.set(self.key(scope, generation), value, ttl_seconds=self.ttl_seconds)
        return value

    async def read_through_async(self, scope: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """``read_through`` on an event loop, with the same ordering guarantees."""
        generation, cached = await self.cache.read_async(scope, self.namespace.key(scope, ""))
        if generation is None:
            return await load()
        if cached is not None:
            return cached
        value = await load()
        await self.cache.set_async(self.key(scope, generation), value, ttl_seconds=self.ttl_seconds)
        return value

    def key(self, scope: str, generation: int) -> str:
        """Where ``scope``'s value read under ``generation`` is stored."""
        return self.namespace.key(scope, generation_tag(generation))

    def invalidate(self, scopes: Sequence[str]) -> bool:
        """Call after the database commit and before answering; False = not invalidated."""
        return self.cache.bump(scopes)

    async def invalidate_async(self, scopes: Sequence[str]) -> bool:
        return await self.cache.bump_async(scopes)
