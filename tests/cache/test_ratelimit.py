"""Token buckets: burst, refusal with retry_after, refill, one budget across processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from certhub.cache.ratelimit import Decision, MemoryRateLimiter, RateLimit, RedisRateLimiter

if TYPE_CHECKING:
    from conftest import FakeClock, Timed

REPO = Path(__file__).resolve().parents[2]


def test_memory_burst_then_refusal_then_refill(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    limit = RateLimit(rate_per_second=2.0, burst=3)
    assert [limiter.acquire("intake-1", limit).allowed for _ in range(3)] == [True] * 3
    refused = limiter.acquire("intake-1", limit)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    clock.advance(0.25)
    assert limiter.acquire("intake-1", limit).retry_after == pytest.approx(0.25)
    clock.advance(0.25)
    assert limiter.acquire("intake-1", limit) == Decision(allowed=True, retry_after=0.0)
    assert not limiter.acquire("intake-1", limit).allowed


def test_memory_refill_is_capped_at_burst(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    limit = RateLimit(rate_per_second=10.0, burst=2)
    limiter.acquire("p", limit)
    clock.advance(3600)
    assert [limiter.acquire("p", limit).allowed for _ in range(3)] == [True, True, False]


def test_memory_principals_have_separate_budgets(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    limit = RateLimit(rate_per_second=1.0, burst=1)
    assert limiter.acquire("a", limit).allowed
    assert not limiter.acquire("a", limit).allowed
    assert limiter.acquire("b", limit).allowed


def test_memory_clock_stepping_back_grants_nothing(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    limit = RateLimit(rate_per_second=1.0, burst=1)
    limiter.acquire("p", limit)
    clock.advance(-100)
    assert not limiter.acquire("p", limit).allowed
    clock.advance(100.5)  # back where it was, plus half a token
    assert not limiter.acquire("p", limit).allowed
    clock.advance(0.5)
    assert limiter.acquire("p", limit).allowed


@pytest.mark.parametrize(
    ("rate", "burst", "field"),
    [(0.0, 1, "rate_per_second"), (float("inf"), 1, "rate_per_second"), (1.0, 0, "burst")],
)
def test_rate_limit_rejects_nonsense(rate: float, burst: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RateLimit(rate_per_second=rate, burst=burst)


def test_redis_burst_then_refusal_then_refill(redis_url: str, prefix: str) -> None:
    limiter = RedisRateLimiter.from_url(redis_url, prefix=prefix)
    limit = RateLimit(rate_per_second=20.0, burst=3)
    assert [limiter.acquire("intake-1", limit).allowed for _ in range(3)] == [True] * 3
    refused = limiter.acquire("intake-1", limit)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 1 / 20.0
    time.sleep(refused.retry_after + 0.02)
    assert limiter.acquire("intake-1", limit).allowed
    assert limiter.acquire("intake-2", limit).allowed  # another principal, another bucket
    assert (limiter.outages, limiter.errors) == (0, 0)
    limiter.close()


def test_redis_two_instances_share_one_budget(redis_url: str, prefix: str) -> None:
    first = RedisRateLimiter.from_url(redis_url, prefix=prefix)
    second = RedisRateLimiter.from_url(redis_url, prefix=prefix)
    # A refill of one token a day: nothing comes back during the test.
    limit = RateLimit(rate_per_second=1 / 86400, burst=5)
    allowed = [
        limiter.acquire("dept-x", limit).allowed for _ in range(5) for limiter in (first, second)
    ]
    assert allowed.count(True) == 5
    assert first.acquire("dept-x", limit).retry_after > 3600
    first.close()
    second.close()


_WORKER = """
import sys
from certhub.cache.ratelimit import RateLimit, RedisRateLimiter
limiter = RedisRateLimiter.from_url(sys.argv[1], prefix=sys.argv[2], socket_timeout=1.0)
limit = RateLimit(rate_per_second=1 / 86400, burst=10)
print(sum(limiter.acquire("dept-x", limit).allowed for _ in range(25)), limiter.errors)
"""


def test_redis_budget_is_shared_by_separate_processes(redis_url: str, prefix: str) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, redis_url, prefix],
            cwd=REPO,
            env={"PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [worker.communicate(timeout=60)[0].split() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert [int(errors) for _, errors in results] == [0, 0]
    assert sum(int(allowed) for allowed, _ in results) == 10


def test_redis_down_fails_open_and_counts(prompt: Timed) -> None:
    limiter = RedisRateLimiter.from_url("redis://127.0.0.1:1/0", prefix="unreachable")
    limit = RateLimit(rate_per_second=1.0, burst=1)
    for _ in range(5):
        assert prompt(lambda: limiter.acquire("p", limit)) == Decision(
            allowed=True, retry_after=0.0
        )
    assert (limiter.outages, limiter.errors) == (1, 1)
    limiter.close()
