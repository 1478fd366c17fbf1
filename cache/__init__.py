"""The cache port and its backends (in-process, Redis) and per-principal rate limits.

Knows nothing of gRPC or SQL. See ``cache.port`` for the invalidation scheme.
"""

from cache.memory import MemoryCache
from cache.near import NearCache
from cache.port import Cache, GenerationalCache, Namespace
from cache.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RateLimit,
    RateLimiter,
    RedisRateLimiter,
)
from cache.redis import RedisCache

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
