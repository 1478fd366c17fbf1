"""NearCache: the in-process LRU in front of Redis, bounded by entries and bytes, with a TTL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from certhub.cache.near import NearCache

if TYPE_CHECKING:
    from conftest import FakeClock


def _near(clock: FakeClock, *, entries: int = 10, size: int = 1000) -> NearCache:
    return NearCache(max_entries=entries, max_bytes=size, ttl_seconds=30, clock=clock)


def test_keeps_what_it_was_given_until_the_ttl(clock: FakeClock) -> None:
    near = _near(clock)
    near.put("a", b"view")
    assert near.get("a") == b"view"
    clock.advance(29.9)
    assert near.get("a") == b"view"
    clock.advance(0.2)
    assert near.get("a") is None
    assert len(near) == 0


def test_evicts_least_recently_read_by_count_and_by_bytes(clock: FakeClock) -> None:
    near = _near(clock, entries=2, size=10)
    near.put("a", b"1234")
    near.put("b", b"1234")
    assert near.get("a") == b"1234"  # a is now the more recent
    near.put("c", b"1234")
    assert (near.get("a"), near.get("b"), near.get("c")) == (b"1234", None, b"1234")
    near.put("d", b"123456789")  # 4 + 9 > 10 bytes: both older ones go
    assert (near.get("a"), near.get("c"), near.get("d")) == (None, None, b"123456789")
    near.put("e", b"x" * 11)  # larger than the whole cache: not kept, nothing evicted
    assert (near.get("d"), near.get("e")) == (b"123456789", None)


def test_discard_and_replace(clock: FakeClock) -> None:
    near = _near(clock, entries=3, size=8)
    near.put("a", b"1234")
    near.put("a", b"5678")  # a replacement does not count twice against the bytes
    near.put("b", b"1234")
    assert (near.get("a"), near.get("b")) == (b"5678", b"1234")
    near.discard(["a", "never"])
    assert (near.get("a"), near.get("b")) == (None, b"1234")


def test_refuses_bounds_below_one_and_a_bad_ttl() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        NearCache(max_entries=0, max_bytes=1, ttl_seconds=1)
    with pytest.raises(ValueError, match="ttl_seconds"):
        NearCache(max_entries=1, max_bytes=1, ttl_seconds=0)
