"""A near cache: a small in-process LRU in front of a shared cache, for values that are
checked against the source of truth before they are relied on.

A process keeps the values it read from the shared cache (Redis) for a short time, so a
repeat read costs no round trip. It sees no other process's invalidations, so it is only
for values whose freshness the caller checks anyway: the hub's holder views are compared
with the holder's version in the fetch's group commit (``certhub.hub.services.freshness``), and a
superseded one is dropped here and read again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from certhub.cache.port import check_ttl

__all__ = ["NearCache"]


class _Entry(NamedTuple):
    value: bytes
    expires_at: float


class NearCache:
    """Thread-safe LRU of bytes by key with one TTL, bounded by entries and bytes."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"bounds must be at least 1, got {max_entries} and {max_bytes}")
        check_ttl(ttl_seconds)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self._max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        with self._lock:
            self._drop(key)
            self._entries[key] = _Entry(value, self._clock() + self._ttl)
            self._bytes += len(value)
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                self._drop(next(iter(self._entries)))

    def discard(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.value)
