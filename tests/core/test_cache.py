"""Cache.incr_many: several counters and one read in one round trip, the same in-process, on
Redis and through SafeCache with Redis down (the API's authentication uses it, api/deps.py)."""

from __future__ import annotations

import pytest
import redis

from core.cache import Cache, MemoryCache, RedisCache, SafeCache
from tests.conftest import commandstats_delta, redis_commandstats
from tests.services import free_port


@pytest.fixture
def redis_cache(redis_url: str) -> RedisCache:
    return RedisCache(redis_url)


@pytest.fixture
def down_cache() -> SafeCache:
    """A SafeCache whose Redis refuses connections (nothing listens on the port)."""
    return SafeCache(RedisCache(f"redis://127.0.0.1:{free_port()}/0"), MemoryCache())


@pytest.fixture(params=["memory", "redis", "redis-down"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "memory":
        return MemoryCache()
    if request.param == "redis":
        return SafeCache(request.getfixturevalue("redis_cache"), MemoryCache())
    return request.getfixturevalue("down_cache")


def test_incr_many_counts_each_counter_and_reads_the_value_before(cache: Cache) -> None:
    cache.set("gen", 7, ttl=60)
    counts, value = cache.incr_many([("a", 60), ("b", 3600)], also_get="gen")
    assert (counts, value) == ([1, 1], 7)
    cache.incr("a", ttl=60)
    assert cache.incr_many([("a", 60), ("b", 3600), ("c", 60)]) == ([3, 2, 1], None)
    # The read happens before the increments, even of the same key.
    assert cache.incr_many([("gen", 60)], also_get="gen") == ([8], 7)
    assert cache.incr_many([("a", 60)], also_get="missing") == ([4], None)
    assert cache.get("a") == 4 and cache.get("b") == 2


def test_incr_many_by_minus_one_takes_a_count_back(cache: Cache) -> None:
    assert cache.incr_many([("a", 60), ("b", 60)]) == ([1, 1], None)
    assert cache.incr_many([("b", 60)], by=-1) == ([0], None)
    assert cache.incr("b", ttl=60) == 1 and cache.incr("a", ttl=60) == 2


def test_incr_many_sets_the_expiry_on_the_first_increment_only(cache: Cache) -> None:
    """As `incr`: a fixed window, not one that each request pushes further out."""
    cache.incr_many([("a", 60)])
    assert 0 < cache.ttl("a") <= 60
    cache.incr_many([("a", 3600), ("b", 3600)])
    assert 0 < cache.ttl("a") <= 60
    assert 60 < cache.ttl("b") <= 3600
    assert cache.incr("a", ttl=3600) == 3 and cache.ttl("a") <= 60


def test_incr_many_with_no_counters_just_reads(cache: Cache) -> None:
    cache.set("gen", {"n": 1}, ttl=60)
    assert cache.incr_many([], also_get="gen") == ([], {"n": 1})


def test_with_redis_down_incr_many_uses_the_fallback_as_get_and_incr_do(down_cache: SafeCache) -> None:
    down_cache.set("gen", 3, ttl=60)  # lands in the fallback too
    assert down_cache.get("gen") == 3
    assert down_cache.incr("a", ttl=60) == 1
    assert down_cache.incr_many([("a", 60), ("b", 60)], also_get="gen") == ([2, 1], 3)
    assert down_cache.fallback.get("a") == 2 and down_cache.fallback.get("b") == 1


def test_safe_cache_uses_redis_while_it_is_up(redis_url: str, redis_cache: RedisCache) -> None:
    safe = SafeCache(redis_cache, MemoryCache())
    safe.set("gen", 5, ttl=60)
    assert safe.incr_many([("a", 60)], also_get="gen") == ([1], 5)
    assert safe.fallback.get("a") is None
    assert redis.Redis.from_url(redis_url).get("tw:a") == b"1"


def test_incr_many_on_redis_is_one_round_trip(redis_url: str, redis_cache: RedisCache,
                                              redis_round_trips: list[int]) -> None:
    redis_cache.set("gen", 1, ttl=60)  # connects (the handshake's writes are not counted below)
    admin = redis.Redis.from_url(redis_url)
    before = redis_commandstats(admin)
    redis_round_trips.clear()
    assert redis_cache.incr_many([("a", 60), ("b", 3600)], also_get="gen") == ([1, 1], 1)
    assert len(redis_round_trips) == 1
    delta = commandstats_delta(before, redis_commandstats(admin))
    assert delta == {"multi": 1, "get": 1, "incrby": 2, "pexpire": 2, "exec": 1}
