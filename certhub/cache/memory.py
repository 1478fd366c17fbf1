"""In-process cache: a thread-safe LRU with per-entry TTL, bounded by entries and bytes.

Only correct for ONE hub process: a bump here is invisible to other processes, so a hub
running several workers must use the Redis backend (see ``certhub.cache.port``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple

from certhub.cache.port import check_ttl, fold_generation, generation_tag

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "MAX_GENERATIONS", "MemoryCache"]

# A holder's current certificates are a few envelopes of a few KiB; 100,000 entries cover
# the active holders of a district-sized deployment (711,100 certificates, most holders
# fetched rarely) while the index itself stays around 20 MB of Python objects.
DEFAULT_MAX_ENTRIES = 100_000

# 256 MiB of values: well inside a hub worker's memory on a small VM, and more than the
# hot set of a district; the byte bound stops a few huge holders from pushing memory up.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

# Scopes whose generation is remembered. Forgetting a single scope could let it read an
# old generation again, so on overflow the whole cache moves to a new epoch instead
# (everything becomes a miss once). 1,000,000 scopes is ~100 MB at worst and more pushes
# than a district makes in a year between process restarts.
MAX_GENERATIONS = 1_000_000


class _Entry(NamedTuple):
    value: bytes
    expires_at: float
    size: int


def _size(key: str, value: bytes) -> int:
    return len(key.encode()) + len(value)


class MemoryCache:
    """Thread-safe LRU implementing ``certhub.cache.port.Cache`` inside one process."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._epoch = 0
        self._generations: dict[str, int] = {}
        # Starts at 1: generation 0 means "never bumped".
        self._counter = itertools.count(1)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        with self._lock:
            return [self._get(key, now) for key in keys]

    def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        entry = _Entry(bytes(value), self._clock() + ttl_seconds, _size(key, value))
        with self._lock:
            self._drop(key)
            if entry.size > self._max_bytes:
                return  # would evict everything else and still not fit
            self._entries[key] = entry
            self._bytes += entry.size
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def generation(self, scope: str) -> int | None:
        with self._lock:
            return self._generation(scope)

    def read(self, scope: str, key_prefix: str) -> tuple[int | None, bytes | None]:
        now = self._clock()
        with self._lock:  # one lock: no bump can fall between the two reads
            generation = self._generation(scope)
            return generation, self._get(key_prefix + generation_tag(generation), now)

    def bump(self, scopes: Sequence[str]) -> bool:
        with self._lock:
            if len(self._generations) + len(scopes) > MAX_GENERATIONS:
                self._new_epoch()
            for scope in scopes:
                self._generations[scope] = next(self._counter)
        return True

    # The event loop's face of the port: nothing here waits, so the same calls serve it.
    async def read_async(self, scope: str, key_prefix: str) -> tuple[int | None, bytes | None]:
        return self.read(scope, key_prefix)

    async def set_async(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        self.set(key, value, ttl_seconds=ttl_seconds)

    async def bump_async(self, scopes: Sequence[str]) -> bool:
        return self.bump(scopes)

    async def close_async(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch += 1
        self._generations.clear()
        self._entries.clear()
        self._bytes = 0

    def _generation(self, scope: str) -> int:
        # The per-process counter cannot reach 2**64 in any process lifetime.
        return fold_generation(self._epoch, self._generations.get(scope, 0))

    def _get(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
