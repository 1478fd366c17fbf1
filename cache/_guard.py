"""Outage tracking shared by the Redis backends: fail soft, log once, probe rarely."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from collections.abc import Callable

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
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._name = name
        self._heal = heal
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

    def _ready(self) -> bool:
        with self._lock:
            if not self._down:
                return True
            now = self._clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self._retry_interval  # this thread probes, others skip
            debt = self._debt
            owed = debt > self._paid
        try:
            self._client.ping()
            if owed and self._heal is not None:
                self._heal()
        except BACKEND_ERRORS as exc:
            self._failed(exc, invalidation=False)
            return False
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
