"""MemoryCache: LRU by count and by bytes, TTL, generations, thread safety."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from certhub.cache import memory as cache_memory
from certhub.cache.memory import MemoryCache
from certhub.cache.port import Cache

if TYPE_CHECKING:
    from conftest import FakeClock


def test_is_a_cache() -> None:
    assert isinstance(MemoryCache(), Cache)


def test_evicts_least_recently_used_by_count() -> None:
    c = MemoryCache(max_entries=3)
    for key in ("a", "b", "c"):
        c.set(key, key.encode(), ttl_seconds=60)
    assert c.get_many(["a"]) == [b"a"]  # a is now more recent than b
    c.set("d", b"d", ttl_seconds=60)
    assert c.get_many(["a", "b", "c", "d"]) == [b"a", None, b"c", b"d"]
    assert len(c) == 3


def test_evicts_by_total_bytes() -> None:
    # key (1 byte) + value (9 bytes) = 10 bytes each: three fit in 30, a fourth does not
    c = MemoryCache(max_entries=100, max_bytes=30)
    for key in ("a", "b", "c"):
        c.set(key, b"x" * 9, ttl_seconds=60)
    assert c.total_bytes == 30
    c.set("d", b"y" * 9, ttl_seconds=60)
    assert c.get_many(["a", "b", "c", "d"]) == [None, b"x" * 9, b"x" * 9, b"y" * 9]
    assert c.total_bytes == 30
    c.set("e", b"z" * 19, ttl_seconds=60)  # 20 bytes: evicts two
    assert c.get_many(["b", "c", "d", "e"]) == [None, None, b"y" * 9, b"z" * 19]
    assert c.total_bytes == 30


def test_entry_larger_than_the_bound_is_not_stored_and_replaces_the_old_value() -> None:
    c = MemoryCache(max_entries=10, max_bytes=20)
    c.set("k", b"small", ttl_seconds=60)
    c.set("other", b"kept", ttl_seconds=60)
    c.set("k", b"x" * 50, ttl_seconds=60)
    assert c.get_many(["k", "other"]) == [None, b"kept"]
    assert c.total_bytes == len("other") + len(b"kept")


def test_replacing_a_value_keeps_the_byte_count_right() -> None:
    c = MemoryCache(max_bytes=1000)
    c.set("k", b"12345", ttl_seconds=60)
    c.set("k", b"12", ttl_seconds=60)
    assert c.total_bytes == 3
    c.delete("k")
    assert c.total_bytes == 0
    assert c.get_many(["k"]) == [None]


def test_ttl_expiry_with_injected_clock(clock: FakeClock) -> None:
    c = MemoryCache(clock=clock)
    c.set("short", b"s", ttl_seconds=10)
    c.set("long", b"l", ttl_seconds=100)
    clock.advance(9.99)
    assert c.get_many(["short", "long"]) == [b"s", b"l"]
    clock.advance(0.01)
    assert c.get_many(["short", "long"]) == [None, b"l"]
    assert len(c) == 1  # the expired entry was dropped, not just hidden
    clock.advance(90)
    assert c.get_many(["long"]) == [None]
    assert c.total_bytes == 0


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("inf"), float("nan")])
def test_rejects_a_ttl_that_is_not_positive_and_finite(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        MemoryCache().set("k", b"v", ttl_seconds=ttl)


def test_rejects_non_positive_bounds() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryCache(max_bytes=0)


def test_bump_moves_only_the_named_scopes_and_never_repeats() -> None:
    c = MemoryCache()
    a0, b0 = c.generation("a"), c.generation("b")
    seen = {a0}
    for _ in range(5):
        assert c.bump(["a"]) is True
        gen = c.generation("a")
        assert gen not in seen
        seen.add(gen)
    assert c.generation("b") == b0


def test_too_many_generations_start_a_new_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_memory, "MAX_GENERATIONS", 3)
    c = MemoryCache()
    c.bump(["a", "b", "c"])
    before = {s: c.generation(s) for s in ("a", "b", "c", "never")}
    c.set("value", b"v", ttl_seconds=60)
    c.bump(["d"])  # would remember a fourth scope: forget all, new epoch
    after = {s: c.generation(s) for s in ("a", "b", "c", "never")}
    assert all(before[s] != after[s] for s in before)
    assert c.get_many(["value"]) == [None]


def test_concurrent_use_keeps_the_bounds() -> None:
    c = MemoryCache(max_entries=50, max_bytes=2000)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(500):
                key = f"k{(n * 7 + i) % 120}"
                c.set(key, bytes(i % 60), ttl_seconds=60)
                c.get_many([key, f"k{i % 120}"])
                if i % 10 == 0:
                    c.bump([key])
                    c.delete(f"k{i % 120}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(c) <= 50
    assert c.total_bytes <= 2000
    held = [k for k in (f"k{i}" for i in range(120)) if c.get_many([k])[0] is not None]
    assert c.total_bytes == sum(len(k) + len(c.get_many([k])[0] or b"") for k in held)
