"""Outage tracking shared by the Redis backends: fail soft, log once, probe rarely."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

logger = logging.getLogger("certhub.cache")

T = TypeVar("T")

# A cache answer that takes longer than the database query it saves is useless: an indexed
# PostgreSQL lookup answers in a few ms, so 100 ms is already generous; past that the hub
# goes to the database instead of queueing behind a slow Redis.
SHORT_TIMEOUT = 0.1

# Connecting on a LAN takes well under a millisecond; a SYN that is not answered in 100 ms
# means Redis is gone or overloaded, which the hub must not wait for.
CONNECT_TIMEOUT = 0.1

# While Redis is down, one call per process per second pays for a probe (at most one
# connect timeout); every other call skips Redis entirely so an outage never adds latency
# to thousands of fetches a second, and recovery is noticed within a second.
RETRY_INTERVAL = 1.0

# Errors that mean "the backend is in trouble", never a bug in the caller. ValueError
# covers a counter key that does not hold a number (someone wrote to our keys).
BACKEND_ERRORS = (redis.RedisError, OSError, ValueError)


def connect(url: str, *, socket_timeout: float) -> redis.Redis:
    """A client that fails fast: short timeouts and no retries inside redis-py."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(CONNECT_TIMEOUT, socket_timeout),
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def connect_async(url: str, *, socket_timeout: float) -> redis.asyncio.Redis:
    """The same fail-fast client for an event loop. It connects on first use, in the loop
    that uses it: each hub process has one serving loop, so one client per process."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(CONNECT_TIMEOUT, socket_timeout),
        retry=AsyncRetry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


# What ``Guard._gate`` tells a caller: use the backend, or skip it (down, no probe due);
# any other value is a probe to make now, owing heals for that many lost invalidations.
_USE = -1
_SKIP = -2


class Guard:
    """Runs Redis operations fail-soft and tracks one backend's outages.

    ``outages`` counts up->down transitions and ``errors`` counts failed calls (including
    failed probes); a metrics layer reads both. While down, calls return their default
    without touching Redis except for one probe per ``retry_interval``. An *invalidation*
    that fails or is skipped while down is a debt: the backend is not used again until
    ``heal`` (run on the first successful probe) has paid it.
    """

    def __init__(
        self,
        *,
        client: redis.Redis,
        name: str,
        heal: Callable[[], None] | None = None,
        async_client: redis.asyncio.Redis | None = None,
        async_heal: Callable[[], Awaitable[None]] | None = None,
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._name = name
        self._heal = heal
        self._async_client = async_client
        self._async_heal = async_heal
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._next_probe = 0.0
        self._debt = 0  # invalidations lost so far
        self._paid = 0  # of those, how many a successful heal has covered
        self.outages = 0
        self.errors = 0

    @property
    def down(self) -> bool:
        with self._lock:
            return self._down

    @property
    def owes_heal(self) -> bool:
        with self._lock:
            return self._debt > self._paid

    def run(self, op: Callable[[], T], default: T, *, invalidation: bool = False) -> T:
        if not self._ready():
            if invalidation:
                with self._lock:
                    self._debt += 1
            return default
        try:
            return op()
        except BACKEND_ERRORS as exc:
            self._failed(exc, invalidation=invalidation)
            return default

    async def run_async(
        self, op: Callable[[], Awaitable[T]], default: T, *, invalidation: bool = False
    ) -> T:
        """``run`` for an event loop: the same state, probes and heals, awaited."""
        if not await self._ready_async():
            if invalidation:
                with self._lock:
                    self._debt += 1
            return default
        try:
            return await op()
        except BACKEND_ERRORS as exc:
            self._failed(exc, invalidation=invalidation)
            return default

    def _ready(self) -> bool:
        debt = self._gate()
        if debt < 0:
            return debt == _USE
        try:
            self._client.ping()
            if self._owed(debt) and self._heal is not None:
                self._heal()
        except BACKEND_ERRORS as exc:
            self._failed(exc, invalidation=False)
            return False
        return self._probed(debt)

    async def _ready_async(self) -> bool:
        debt = self._gate()
        if debt < 0:
            return debt == _USE
        assert self._async_client is not None, "run_async needs the guard's async client"
        try:
            await self._async_client.ping()
            if self._owed(debt) and self._async_heal is not None:
                await self._async_heal()
        except BACKEND_ERRORS as exc:
            self._failed(exc, invalidation=False)
            return False
        return self._probed(debt)

    def _gate(self) -> int:
        with self._lock:
            if not self._down:
                return _USE
            now = self._clock()
            if now < self._next_probe:
                return _SKIP
            self._next_probe = now + self._retry_interval  # this caller probes, others skip
            return self._debt

    def _owed(self, debt: int) -> bool:
        with self._lock:
            return debt > self._paid

    def _probed(self, debt: int) -> bool:
        """After a successful probe (and heal of ``debt``): is the backend usable again?"""
        with self._lock:
            self._paid = max(self._paid, debt)
            if self._debt > self._paid:
                return False  # another invalidation was lost meanwhile; heal on next probe
            if self._down:
                self._down = False
                logger.info("%s: redis is back, using the cache again", self._name)
            return True

    def _failed(self, exc: Exception, *, invalidation: bool) -> None:
        with self._lock:
            self.errors += 1
            if invalidation:
                self._debt += 1
            if self._down:
                return
            self._down = True
            self._next_probe = self._clock() + self._retry_interval
            self.outages += 1
        # Outside the lock: a handler doing I/O must not stall other threads' cache calls.
        logger.warning(
            "%s: redis unavailable (%s: %s); serving without it, next try in %.1fs",
            self._name,
            type(exc).__name__,
            exc,
            self._retry_interval,
        )

    def close(self) -> None:
        with contextlib.suppress(*BACKEND_ERRORS):
            self._client.close()

    async def close_async(self) -> None:
        if self._async_client is not None:
            with contextlib.suppress(*BACKEND_ERRORS):
                await self._async_client.aclose()
