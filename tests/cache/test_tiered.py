import asyncio

import orjson
import pytest

from tidemark.cache import (
    AsyncDiskTier,
    Cached,
    Codec,
    DiskCache,
    MemoryCache,
    RedisCache,
    TieredCache,
)

JSON = Codec(encode=orjson.dumps, decode=orjson.loads)


def _tiered(tmp_path, *, write_behind=False, memory=True, extra=()):
    disk = DiskCache(tmp_path / "disk")
    front: MemoryCache[str, Cached[dict[str, int]]] | None = (
        MemoryCache(max_entries=100) if memory else None
    )
    cache = TieredCache(
        tiers=[AsyncDiskTier(disk), *extra], codec=JSON, memory=front, write_behind=write_behind
    )
    return cache, disk


async def test_a_lower_tier_hit_is_promoted_to_memory(tmp_path):
    cache, disk = _tiered(tmp_path)
    disk.set("k", orjson.dumps({"a": 1}), {"m": 1})
    first = await cache.get("k")
    assert first is not None and first.value == {"a": 1} and first.tier == "disk"
    second = await cache.get("k")
    assert second.tier == "memory" and second.meta == {"m": 1}
    assert cache.get_memory("k").value == {"a": 1}
    await cache.aclose()


async def test_write_through_reaches_disk_before_set_returns(tmp_path):
    cache, disk = _tiered(tmp_path)
    await cache.set("k", {"v": 1}, {"url": "u"})
    assert orjson.loads(disk.get("k").value) == {"v": 1}
    await cache.aclose()


async def test_write_behind_is_readable_at_once_and_nothing_is_lost_on_close(tmp_path):
    cache, _disk = _tiered(tmp_path, write_behind=True, memory=False)
    for i in range(50):
        await cache.set(f"k{i}", {"i": i})
    found = await cache.get("k7")
    assert found is not None and found.value == {"i": 7}
    await cache.aclose()
    reopened = DiskCache(tmp_path / "disk")
    assert len(reopened) == 50
    for i in range(50):
        entry = reopened.get(f"k{i}")
        assert entry is not None and orjson.loads(entry.value) == {"i": i}


async def test_a_delete_is_not_undone_by_a_write_in_flight(tmp_path):
    cache, disk = _tiered(tmp_path, write_behind=True)
    await cache.set("k", {"v": 1})
    deleting = asyncio.create_task(cache.delete("k"))
    await asyncio.sleep(0)
    await deleting
    await cache.flush()
    assert disk.get("k") is None and await cache.get("k") is None
    await cache.aclose()


class _BrokenTier:
    name = "broken"

    async def get(self, key):
        raise ConnectionError("tier is down")

    async def get_many(self, keys):
        raise ConnectionError("tier is down")

    async def set(self, key, value, meta=None, *, stored_at=None):
        raise OSError("disk full")

    async def delete(self, key):
        raise ConnectionError("tier is down")

    async def delete_where(self, predicate):
        raise ConnectionError("tier is down")

    async def clear(self):
        raise ConnectionError("tier is down")

    async def entries(self):
        raise ConnectionError("tier is down")

    def stats(self):
        raise AssertionError("not used")

    async def aclose(self):
        return None


async def test_a_failing_tier_is_skipped_and_counted(tmp_path):
    disk = DiskCache(tmp_path)
    disk.set("k", orjson.dumps([1]))
    cache = TieredCache(tiers=[_BrokenTier(), AsyncDiskTier(disk)], codec=JSON)
    found = await cache.get("k")
    assert found is not None and found.value == [1]
    await cache.set("j", [2])
    written = disk.get("j")
    assert written is not None and orjson.loads(written.value) == [2]
    assert cache.counters["tier_errors"] >= 2
    await cache.aclose()


async def test_undecodable_bytes_are_a_miss_and_are_removed(tmp_path):
    cache, disk = _tiered(tmp_path)
    disk.set("k", b"\xff not json")
    assert await cache.get("k") is None
    assert cache.counters["decode_errors"] == 1 and disk.get("k") is None
    await cache.aclose()


@pytest.mark.redis
async def test_memory_disk_redis_chain_promotes_into_every_upper_tier(tmp_path, redis_prefix):
    from tests.support import REDIS_URL

    redis_tier = RedisCache(REDIS_URL, prefix=redis_prefix)
    await redis_tier.set("k", orjson.dumps({"from": "redis"}), {"m": 2})
    cache, disk = _tiered(tmp_path, extra=[redis_tier])
    found = await cache.get("k")
    assert found.tier == "redis" and found.value == {"from": "redis"}
    await cache.flush()
    assert disk.get("k").meta == {"m": 2}
    assert cache.counters["promotions"] == 1
    stats = cache.stats()
    assert list(stats) == ["memory", "disk", "redis"] and stats["redis"].hits == 1
    removed = await cache.delete_where(lambda info: info.meta.get("m") == 2)
    assert removed == ["k"]
    assert await redis_tier.get("k") is None and disk.get("k") is None
    await cache.aclose()


async def test_clear_empties_every_tier(tmp_path):
    cache, disk = _tiered(tmp_path, write_behind=True)
    for i in range(3):
        await cache.set(f"k{i}", {"i": i})
    await cache.flush()
    assert await cache.clear() == 3
    assert len(disk) == 0 and cache.get_memory("k0") is None
    assert await cache.entries() == []
    await cache.aclose()


async def test_get_many_asks_each_tier_once_for_what_is_still_missing(tmp_path):
    cache, disk = _tiered(tmp_path)
    await cache.set("in-memory", {"m": 1})
    disk.set("on-disk", orjson.dumps({"d": 1}))
    disk.set("broken", b"\xff")
    found = await cache.get_many(["in-memory", "on-disk", "broken", "absent"])
    assert {k: v.tier for k, v in found.items()} == {"in-memory": "memory", "on-disk": "disk"}
    assert cache.get_memory("on-disk") is not None
    assert cache.counters["decode_errors"] == 1
    await cache.aclose()
