"""The cache port and its backends (in-process, Redis) and per-principal rate limits.

Knows nothing of gRPC or SQL. See ``certhub.cache.port`` for the invalidation scheme.
"""

from certhub.cache.memory import MemoryCache
from certhub.cache.near import NearCache
from certhub.cache.port import Cache, GenerationalCache, Namespace
from certhub.cache.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RateLimit,
    RateLimiter,
    RedisRateLimiter,
)
from certhub.cache.redis import RedisCache

__all__ = [
    "Cache",
    "Decision",
    "GenerationalCache",
    "MemoryCache",
    "MemoryRateLimiter",
    "Namespace",
    "NearCache",
    "RateLimit",
    "RateLimiter",
    "RedisCache",
    "RedisRateLimiter",
]
