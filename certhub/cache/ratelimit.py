"""Per-principal token buckets: in-process, or in Redis shared by every hub process.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_second``; each call
takes one token. A refused call learns how long until a token is there (``retry_after``),
which the gRPC edge returns as retry info with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, cast

from certhub.cache._guard import SHORT_TIMEOUT, Guard, connect, connect_async
from certhub.cache.port import check_prefix

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis
    import redis.asyncio

__all__ = [
    "MAX_BUCKETS",
    "Decision",
    "MemoryRateLimiter",
    "RateLimit",
    "RateLimiter",
    "RedisRateLimiter",
]

# Principals come from the registry (departments, intake systems): thousands, not millions.
# The bound only stops a misconfigured caller from growing memory; an evicted bucket
# restarts full, which errs on the side of serving.
MAX_BUCKETS = 100_000


@dataclass(frozen=True)
class RateLimit:
    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_second) and self.rate_per_second > 0):
            raise ValueError(
                f"rate_per_second must be a positive finite number, got {self.rate_per_second!r}"
            )
        if isinstance(self.burst, bool) or self.burst < 1:
            raise ValueError(f"burst must be an integer of at least 1, got {self.burst!r}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a token is available (0 if allowed)


ALLOWED = Decision(allowed=True, retry_after=0.0)


class RateLimiter(Protocol):
    def acquire(self, principal: str, limit: RateLimit) -> Decision: ...

    async def acquire_async(self, principal: str, limit: RateLimit) -> Decision: ...


class _Bucket(NamedTuple):
    tokens: float
    at: float


def _take(tokens: float, limit: RateLimit) -> tuple[float, Decision]:
    if tokens >= 1:
        return tokens - 1, ALLOWED
    return tokens, Decision(allowed=False, retry_after=(1 - tokens) / limit.rate_per_second)


class MemoryRateLimiter:
    """Token buckets in this process (one hub process only), thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, principal: str, limit: RateLimit) -> Decision:
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(principal, None)
            if bucket is None:
                tokens = float(limit.burst)
            else:
                # A clock that stepped back refills nothing rather than draining the bucket.
                elapsed = max(0.0, now - bucket.at)
                tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate_per_second)
            tokens, decision = _take(tokens, limit)
            at = now if bucket is None else max(now, bucket.at)
            self._buckets[principal] = _Bucket(tokens, at)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return decision

    async def acquire_async(self, principal: str, limit: RateLimit) -> Decision:
        return self.acquire(principal, limit)  # nothing here waits


# The bucket lives in one hash; time comes from the Redis server so the clocks of the hub
# machines do not matter. Returns {allowed (0/1), retry_after as a string} (a Lua number
# would be truncated to an integer reply). The key expires once the bucket would be full
# again, since a missing bucket and a full one behave the same (capped at 30 days so a
# tiny rate cannot produce a number Redis rejects).
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
elseif now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local allowed = 0
local retry_after = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_after = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.17g', at))
local full_in_ms = math.ceil((burst - tokens) / rate * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], math.min(full_in_ms, 2592000000))
return {allowed, string.format('%.17g', retry_after)}
"""


class RedisRateLimiter:
    """Token buckets in Redis: one budget per principal across all hub processes.

    Fail-open: while Redis is unavailable every call is allowed (a rate limit protects
    capacity; refusing all traffic because the limiter is down would be the outage it is
    meant to prevent). ``outages`` and ``errors`` count it as in ``RedisCache``.
    """

    def __init__(
        self,
        *,
        client: redis.Redis,
        prefix: str,
        async_client: redis.asyncio.Redis | None = None,
    ) -> None:
        check_prefix(prefix)
        self._key_prefix = f"certhub:{prefix}:ratelimit:"
        self._script = client.register_script(_BUCKET_SCRIPT)
        if async_client is not None:
            self._script_async = async_client.register_script(_BUCKET_SCRIPT)
        self._guard = Guard(client=client, name=f"rate limiter {prefix}", async_client=async_client)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "certhub", socket_timeout: float = SHORT_TIMEOUT
    ) -> RedisRateLimiter:
        return cls(
            client=connect(url, socket_timeout=socket_timeout),
            async_client=connect_async(url, socket_timeout=socket_timeout),
            prefix=prefix,
        )

    @property
    def outages(self) -> int:
        return self._guard.outages

    @property
    def errors(self) -> int:
        return self._guard.errors

    def acquire(self, principal: str, limit: RateLimit) -> Decision:
        def op() -> Decision:
            return _decision(
                self._script(
                    keys=[self._key_prefix + principal],
                    args=[repr(limit.rate_per_second), limit.burst],
                )
            )

        return self._guard.run(op, ALLOWED)

    async def acquire_async(self, principal: str, limit: RateLimit) -> Decision:
        async def op() -> Decision:
            return _decision(
                await self._script_async(
                    keys=[self._key_prefix + principal],
                    args=[repr(limit.rate_per_second), limit.burst],
                )
            )

        return await self._guard.run_async(op, ALLOWED)

    def close(self) -> None:
        self._guard.close()

    async def close_async(self) -> None:
        await self._guard.close_async()


def _decision(answer: object) -> Decision:
    allowed, retry_after = cast("list[object]", answer)
    if allowed == 1:
        return ALLOWED
    return Decision(allowed=False, retry_after=float(cast("bytes", retry_after)))
