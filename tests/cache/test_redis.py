import logging

import pytest
import redis.asyncio as aioredis

from tests.support import REDIS_URL, async_wait_until
from tidemark.cache import RedisCache

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_server_url):
    connection = aioredis.Redis.from_url(redis_server_url)
    yield connection
    await connection.aclose()


async def test_entries_round_trip_with_metadata_and_compression(client, redis_prefix):
    cache = RedisCache(client, prefix=redis_prefix, compress=True)
    value = b"abc" * 2000
    await cache.set("http://x/A|1", value, {"url": "http://x/A"})
    entry = await cache.get("http://x/A|1")
    assert entry is not None and entry.value == value and entry.meta == {"url": "http://x/A"}
    stored = await client.hget(f"{redis_prefix}http://x/A|1", "v")
    assert len(stored) < len(value) // 10
    assert await cache.get("absent") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)


async def test_a_second_process_sees_the_same_entries(client, redis_prefix):
    writer = RedisCache(client, prefix=redis_prefix)
    reader = RedisCache(REDIS_URL, prefix=redis_prefix)
    try:
        await writer.set("k", b"shared")
        entry = await reader.get("k")
        assert entry is not None and entry.value == b"shared"
    finally:
        await reader.aclose()


async def test_ttl_becomes_a_redis_expiry(client, redis_prefix):
    cache = RedisCache(client, prefix=redis_prefix, ttl=0.05)
    await cache.set("k", b"v")
    assert 0 < await client.pttl(f"{redis_prefix}k") <= 50

    async def gone():
        return await cache.get("k") is None

    await async_wait_until(gone, timeout=2.0, message="the entry should expire")


async def test_a_damaged_entry_is_a_logged_miss_and_is_deleted(client, redis_prefix, caplog):
    cache = RedisCache(client, prefix=redis_prefix)
    await cache.set("k", b"value")
    await client.hset(f"{redis_prefix}k", "v", b"tampered")
    with caplog.at_level(logging.WARNING, logger="tidemark.cache.redis"):
        assert await cache.get("k") is None
    assert "corrupt cache entry removed" in caplog.text
    assert await client.exists(f"{redis_prefix}k") == 0
    assert cache.stats().corrupt == 1


async def test_listing_and_clearing_stay_under_the_prefix(client, redis_prefix):
    cache = RedisCache(client, prefix=f"{redis_prefix}a:")
    neighbour = f"{redis_prefix}b:k"
    await client.set(neighbour, b"not ours")
    for key in ("http://a/1", "http://a/2", "http://b/1"):
        await cache.set(key, b"v", {"host": key.split("/")[2]})
    infos = await cache.entries()
    assert sorted(i.key for i in infos) == ["http://a/1", "http://a/2", "http://b/1"]
    assert cache.stats().entries == 3 and cache.stats().bytes > 0
    assert await cache.delete_where(lambda info: info.meta["host"] == "a") == 2
    assert await cache.clear() == 1
    assert await client.get(neighbour) == b"not ours"


async def test_glob_characters_in_the_prefix_match_only_themselves(client, redis_prefix):
    cache = RedisCache(client, prefix=f"{redis_prefix}[x]*:")
    await client.set(f"{redis_prefix}x-other", b"keep")
    await cache.set("k", b"v")
    assert [i.key for i in await cache.entries()] == ["k"]
    assert await cache.clear() == 1
    assert await client.get(f"{redis_prefix}x-other") == b"keep"


def test_an_empty_prefix_is_refused():
    with pytest.raises(ValueError):
        RedisCache(REDIS_URL, prefix="")
