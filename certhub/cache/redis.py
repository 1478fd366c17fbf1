"""Redis backend of the cache port, shared by every hub process of a deployment.

Keys (``P`` = the deployment prefix, the same one the hub's ``Namespace`` uses):

* ``certhub:P:v<N>:...``  values, written by callers through ``Namespace.key``;
* ``certhub:P:gen:<scope>``  a scope's generation (expires after GENERATION_TTL);
* ``certhub:P:epoch``  the deployment's epoch (never expires).

A counter is created on first read, and bumped, to ``max(old + 1, Redis server time in
microseconds)`` inside one Lua script, so a generation is never handed out twice, even
after the counter expired, was evicted or Redis restarted empty: forgetting costs misses,
never stale hits.

``read`` is one EVALSHA, so a warm read is one round trip: the script reads (or stamps)
the epoch, then the scope counter, then GETs the value key ``<key_prefix>g<epoch>.<gen>``
that it builds from the two counters as they are stored (decimal text, no arithmetic).
Python checks that the text is the canonical rendering of the numbers it parses, so the
key a miss is ``set`` under (built from those numbers) is the key the script read.
``generation`` is the same script without the GET. See ``certhub.cache.port`` for the whole
scheme and its residual window.

Requires Redis >= 5 (scripts replicated by effects, so TIME may precede writes). The
scripts touch several keys, and ``read`` one it builds itself rather than receives in
KEYS: fine on standalone Redis (or Sentinel), which is what this backend targets, but
not on Redis Cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from certhub.cache._guard import RETRY_INTERVAL, SHORT_TIMEOUT, Guard, connect, connect_async
from certhub.cache.port import check_prefix, check_ttl, fold_generation, generation_tag

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis
    import redis.asyncio

__all__ = ["GENERATION_TTL", "MAX_VALUE_BYTES", "RETRY_INTERVAL", "SHORT_TIMEOUT", "RedisCache"]

# A scope untouched for a day forgets its generation and costs one extra miss; in return
# Redis holds counters only for scopes pushed or read in the last day, not for every
# holder ever seen (billions at province scale).
GENERATION_TTL = 24 * 60 * 60.0

# 1 MiB moves in ~10 ms on a 1 Gbit link, well inside SHORT_TIMEOUT; a bigger value would
# time out on read and only churn Redis memory, so it is not cached at all.
MAX_VALUE_BYTES = 1024 * 1024

# KEYS = {epoch, scope counter}; ARGV[1] = the counter's TTL in ms, ARGV[2] (optional) =
# a value key prefix. Returns {epoch, generation} creating a missing counter with a fresh
# stamp, then, given ARGV[2], the value under ARGV[2] .. generation_tag (false if none):
# read after the counters in one atomic step, as certhub.cache.port requires.
_READ_SCRIPT = """
local function stamp(key, ttl_ms)
  local v = redis.call('GET', key)
  if v then return v end
  local t = redis.call('TIME')
  v = t[1] .. string.format('%06d', tonumber(t[2]))
  if ttl_ms > 0 then
    redis.call('SET', key, v, 'PX', ttl_ms)
  else
    redis.call('SET', key, v)
  end
  return v
end
local epoch = stamp(KEYS[1], 0)
local gen = stamp(KEYS[2], tonumber(ARGV[1]))
if ARGV[2] == nil then
  return {epoch, gen}
end
return {epoch, gen, redis.call('GET', ARGV[2] .. 'g' .. epoch .. '.' .. gen)}
"""

# Moves every key to max(old + 1, now in microseconds); ARGV[1] = TTL in ms, 0 = none.
_BUMP_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl_ms = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local old = tonumber(redis.call('GET', key) or '0')
  local new = string.format('%.0f', math.max(old + 1, now))
  if ttl_ms > 0 then
    redis.call('SET', key, new, 'PX', ttl_ms)
  else
    redis.call('SET', key, new)
  end
end
return #KEYS
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _generation(epoch: bytes, generation: bytes) -> int:
    """The folded generation of the counters' text; ValueError if the text is not the
    canonical decimal that ``generation_tag`` renders (someone wrote to our keys)."""
    folded = fold_generation(int(epoch), int(generation))
    if generation_tag(folded).encode() != b"g" + epoch + b"." + generation:
        raise ValueError(f"generation counters hold {epoch!r}, {generation!r}")
    return folded


class RedisCache:
    """``certhub.cache.port.Cache`` on Redis: fail-soft, short timeouts, outage counters."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        prefix: str,
        async_client: redis.asyncio.Redis | None = None,
    ) -> None:
        check_prefix(prefix)
        self._client = client
        self._epoch_key = f"certhub:{prefix}:epoch"
        self._gen_prefix = f"certhub:{prefix}:gen:"
        self._read = client.register_script(_READ_SCRIPT)
        self._bump = client.register_script(_BUMP_SCRIPT)
        # The *_async methods run the same scripts on an event loop's client; they share
        # the guard, so an outage seen by either path is one outage.
        self._async_client = async_client
        if async_client is not None:
            self._read_async = async_client.register_script(_READ_SCRIPT)
            self._bump_async = async_client.register_script(_BUMP_SCRIPT)
        self._guard = Guard(
            client=client,
            name=f"cache {prefix}",
            heal=self._bump_epoch,
            async_client=async_client,
            async_heal=self._bump_epoch_async,
        )

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "certhub", socket_timeout: float = SHORT_TIMEOUT
    ) -> RedisCache:
        return cls(
            client=connect(url, socket_timeout=socket_timeout),
            async_client=connect_async(url, socket_timeout=socket_timeout),
            prefix=prefix,
        )

    @property
    def outages(self) -> int:
        """Times Redis went from usable to unavailable."""
        return self._guard.outages

    @property
    def errors(self) -> int:
        """Redis calls that failed (each one a fallback to the database)."""
        return self._guard.errors

    @property
    def available(self) -> bool:
        return not self._guard.down

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        misses: list[bytes | None] = [None] * len(keys)
        if not keys:
            return misses

        def op() -> list[bytes | None]:
            values = cast("list[bytes | None]", self._client.mget(list(keys)))
            if len(values) != len(keys):
                raise ValueError(f"MGET answered {len(values)} values for {len(keys)} keys")
            return values

        return self._guard.run(op, misses)

    def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        if len(value) > MAX_VALUE_BYTES:
            self.delete(key)  # never leave an older value under a key the caller replaced
            return
        self._guard.run(lambda: self._client.set(key, bytes(value), px=_ms(ttl_seconds)), None)

    def delete(self, key: str) -> None:
        self._guard.run(lambda: self._client.delete(key), None)

    def generation(self, scope: str) -> int | None:
        def op() -> int | None:
            epoch, gen = cast(
                "list[bytes]",
                self._read(
                    keys=[self._epoch_key, self._gen_prefix + scope],
                    args=[_ms(GENERATION_TTL)],
                ),
            )
            return _generation(epoch, gen)

        return self._guard.run(op, None)

    def read(self, scope: str, key_prefix: str) -> tuple[int | None, bytes | None]:
        def op() -> tuple[int | None, bytes | None]:
            return _read_answer(
                self._read(
                    keys=[self._epoch_key, self._gen_prefix + scope],
                    args=[_ms(GENERATION_TTL), key_prefix],
                )
            )

        return self._guard.run(op, _UNAVAILABLE)

    async def read_async(self, scope: str, key_prefix: str) -> tuple[int | None, bytes | None]:
        async def op() -> tuple[int | None, bytes | None]:
            return _read_answer(
                await self._read_async(
                    keys=[self._epoch_key, self._gen_prefix + scope],
                    args=[_ms(GENERATION_TTL), key_prefix],
                )
            )

        return await self._guard.run_async(op, _UNAVAILABLE)

    async def set_async(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        assert self._async_client is not None
        client = self._async_client
        if len(value) > MAX_VALUE_BYTES:

            async def drop() -> None:
                await client.delete(key)

            await self._guard.run_async(drop, None)
            return

        async def op() -> None:
            await client.set(key, bytes(value), px=_ms(ttl_seconds))

        await self._guard.run_async(op, None)

    async def bump_async(self, scopes: Sequence[str]) -> bool:
        if not scopes:
            return True

        async def op() -> bool:
            await self._bump_async(
                keys=[self._gen_prefix + s for s in scopes], args=[_ms(GENERATION_TTL)]
            )
            return True

        return await self._guard.run_async(op, False, invalidation=True)

    def bump(self, scopes: Sequence[str]) -> bool:
        if not scopes:
            return True

        def op() -> bool:
            self._bump(keys=[self._gen_prefix + s for s in scopes], args=[_ms(GENERATION_TTL)])
            return True

        return self._guard.run(op, False, invalidation=True)

    def close(self) -> None:
        self._guard.close()

    async def close_async(self) -> None:
        await self._guard.close_async()

    def _bump_epoch(self) -> None:
        """Heal after a lost bump: every entry cached before it becomes unreachable."""
        self._bump(keys=[self._epoch_key], args=[0])

    async def _bump_epoch_async(self) -> None:
        await self._bump_async(keys=[self._epoch_key], args=[0])


_UNAVAILABLE: tuple[int | None, bytes | None] = (None, None)


def _read_answer(answer: object) -> tuple[int, bytes | None]:
    """(generation, value) of the read script's answer."""
    epoch, gen, value = cast("list[bytes | None]", answer)
    if epoch is None or gen is None:
        raise ValueError("the read script answered no generation")
    # A missing key is Lua false: nil on RESP2, False on RESP3.
    return _generation(epoch, gen), value if isinstance(value, bytes) else None
