import threading

import pytest

from tidemark.cache import MemoryCache
from tidemark.core import ManualClock


def test_lru_eviction_by_entries_keeps_recently_used():
    cache: MemoryCache[str, int] = MemoryCache(max_entries=2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.set("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.stats().evictions == 1


def test_byte_bound_holds_and_oversize_values_are_rejected():
    cache: MemoryCache[str, bytes] = MemoryCache(max_bytes=10)
    cache.set("a", b"12345")
    cache.set("b", b"12345")
    cache.set("c", b"123")
    assert cache.current_bytes <= 10
    assert "a" not in cache
    assert cache.set("huge", b"x" * 11) is False
    assert "huge" not in cache
    assert cache.stats().rejected == 1


def test_replacing_a_value_updates_its_weight():
    cache: MemoryCache[str, str] = MemoryCache(max_bytes=100)
    cache.set("k", "x" * 40)
    cache.set("k", "x" * 10)
    assert cache.current_bytes == 10


def test_expire_after_write_with_injected_clock():
    clock = ManualClock()
    cache: MemoryCache[str, int] = MemoryCache(ttl=10, clock=clock)
    cache.set("a", 1)
    clock.advance(9.9)
    assert cache.get("a") == 1  # reads do not extend a write TTL
    clock.advance(0.2)
    assert cache.get("a") is None
    stats = cache.stats()
    assert stats.expirations == 1 and stats.hits == 1 and stats.misses == 1


def test_expire_after_access_extends_on_read():
    clock = ManualClock()
    evicted = []
    cache: MemoryCache[str, int] = MemoryCache(
        expire_after_access=5, clock=clock, on_evict=lambda k, v, why: evicted.append((k, why))
    )
    cache.set("a", 1)
    for _ in range(3):
        clock.advance(4)
        assert cache.get("a") == 1
    clock.advance(6)
    assert cache.get("a") is None
    assert evicted == [("a", "expired")]


def test_expire_sweeps_all_expired():
    clock = ManualClock()
    cache: MemoryCache[int, int] = MemoryCache(ttl=1, clock=clock)
    for i in range(5):
        cache.set(i, i)
    clock.advance(2)
    assert cache.expire() == 5
    assert len(cache) == 0


def test_invalidate_and_clear_count():
    cache: MemoryCache[str, int] = MemoryCache()
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.invalidate("a") and not cache.invalidate("a")
    assert cache.clear() == 1
    assert cache.stats().invalidations == 2


def test_get_or_load_is_single_flight():
    cache: MemoryCache[str, int] = MemoryCache()
    calls = []
    gate = threading.Event()

    def loader(key: str) -> int:
        calls.append(key)
        gate.wait(2)
        return 7

    threads = [threading.Thread(target=cache.get_or_load, args=("k", loader)) for _ in range(5)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert calls == ["k"]
    assert cache.get("k") == 7
    assert cache.stats().loads == 1


def test_loader_failure_stores_nothing():
    cache: MemoryCache[str, int] = MemoryCache()

    def boom(key: str) -> int:
        raise RuntimeError("source down")

    with pytest.raises(RuntimeError):
        cache.get_or_load("k", boom)
    assert "k" not in cache


def test_read_your_writes_under_eviction_pressure():
    cache: MemoryCache[int, int] = MemoryCache(max_entries=3)
    for i in range(100):
        cache.set(i, i)
        assert cache.get(i) == i


def test_concurrent_threads_keep_bounds():
    cache: MemoryCache[int, bytes] = MemoryCache(max_entries=50, max_bytes=400)

    def work(seed: int) -> None:
        for i in range(2000):
            key = (i * 7 + seed) % 97
            if cache.get(key) is None:
                cache.set(key, b"x" * (key % 13))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 50 and cache.current_bytes <= 400
    assert cache.current_bytes == sum(len(cache.peek(k) or b"") for k in cache)


def test_invalid_bounds_are_refused():
    with pytest.raises(ValueError):
        MemoryCache(max_entries=-1)
    with pytest.raises(ValueError):
        MemoryCache(ttl=0)


def _zipf_trace(n: int, keys: int, seed: int) -> list[int]:
    import itertools
    import random

    weights = list(itertools.accumulate(1.0 / rank for rank in range(1, keys + 1)))
    return random.Random(seed).choices(range(keys), cum_weights=weights, k=n)


def test_recency_is_exact_lru_like_cachetools_with_ttl_and_byte_limits():
    cachetools = pytest.importorskip("cachetools")
    trace = _zipf_trace(40_000, 5_000, seed=3)
    reference = cachetools.LRUCache(maxsize=500)
    ours: MemoryCache[int, bytes] = MemoryCache(max_entries=500, max_bytes=10**9, ttl=3600)
    ref_hits = our_hits = 0
    for key in trace:
        if reference.get(key) is None:
            reference[key] = b"v"
        else:
            ref_hits += 1
        if ours.get(key) is None:
            ours.set(key, b"v")
        else:
            our_hits += 1
    assert our_hits == ref_hits
    assert set(ours.keys()) == set(reference.keys())
    stats = ours.stats()
    assert stats.hits == our_hits and stats.misses == len(trace) - our_hits
    assert stats.entries == 500 and stats.bytes == 500


def test_size_evictions_are_reported_and_counted():
    evicted = []
    cache: MemoryCache[str, bytes] = MemoryCache(
        max_bytes=6, on_evict=lambda k, v, why: evicted.append((k, v, why))
    )
    cache.set("a", b"aaa")
    cache.set("b", b"bbb")
    cache.set("c", b"cc")
    assert evicted == [("a", b"aaa", "size")]
    assert cache.stats().evictions == 1 and cache.current_bytes == 5


def test_reset_stats_zeroes_counters_but_keeps_entries():
    cache: MemoryCache[str, int] = MemoryCache(max_entries=1)
    cache.set("a", 1)
    cache.get("a")
    cache.get("zz")
    cache.set("b", 2)
    cache.reset_stats()
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.entries) == (0, 0, 0, 1)
    cache.get("b")
    assert cache.stats().hits == 1


def test_ttl_and_expire_after_access_together_stop_at_the_write_deadline():
    clock = ManualClock()
    cache: MemoryCache[str, int] = MemoryCache(ttl=10, expire_after_access=4, clock=clock)
    cache.set("a", 1)
    for _ in range(2):
        clock.advance(3.5)
        assert cache.get("a") == 1  # each read extends the idle deadline...
    clock.advance(3.5)  # ...but never past written + ttl (10.5 > 10)
    assert cache.get("a") is None
    assert cache.stats().expirations == 1


def test_a_rewrite_restarts_the_ttl():
    clock = ManualClock()
    cache: MemoryCache[str, int] = MemoryCache(ttl=10, clock=clock)
    cache.set("a", 1)
    clock.advance(8)
    cache.set("a", 2)
    clock.advance(8)
    assert cache.get("a") == 2


def test_zero_entry_cache_stores_nothing():
    cache: MemoryCache[str, int] = MemoryCache(max_entries=0)
    assert cache.set("a", 1) is False
    assert cache.get("a") is None and len(cache) == 0


def test_a_subclass_override_of_get_is_kept():
    class Counting(MemoryCache[str, int]):
        calls = 0

        def get(self, key, default=None):
            Counting.calls += 1
            return super().get(key, default)

    cache = Counting()
    cache.set("a", 1)
    assert cache.get("a") == 1 and Counting.calls == 1


def test_concurrent_readers_and_writers_keep_byte_total_exact_with_ttl():
    clock = ManualClock()
    cache: MemoryCache[int, bytes] = MemoryCache(max_entries=40, max_bytes=300, ttl=5, clock=clock)
    stop = threading.Event()

    def writer(seed: int) -> None:
        for i in range(3000):
            key = (i * 11 + seed) % 90
            cache.set(key, b"y" * (key % 17))

    def reader() -> None:
        while not stop.is_set():
            for key in range(90):
                cache.get(key)

    def ticker() -> None:
        while not stop.is_set():
            clock.advance(0.01)

    readers = [threading.Thread(target=reader) for _ in range(2)] + [
        threading.Thread(target=ticker)
    ]
    writers = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert len(cache) <= 40 and cache.current_bytes <= 300
    cache.expire()  # the clock is stopped now: what is left is live and readable
    assert cache.current_bytes == sum(len(cache.peek(k)) for k in cache)


def test_deep_sizeof_counts_nested_containers_and_their_items():
    import sys

    from tidemark.cache import deep_sizeof

    leaf = "x" * 100
    inner_list: list[object] = [leaf, 1, 2.5, None]
    inner_tuple = (leaf,)
    inner_dict = {"c": inner_tuple}
    value = {"a": inner_list, "b": inner_dict}
    expected = (
        sys.getsizeof(value)
        + sys.getsizeof("a")
        + sys.getsizeof("b")
        + sys.getsizeof(inner_list)
        + sys.getsizeof(leaf) * 2
        + sys.getsizeof(1)
        + sys.getsizeof(2.5)
        + sys.getsizeof(None)
        + sys.getsizeof(inner_dict)
        + sys.getsizeof("c")
        + sys.getsizeof(inner_tuple)
    )
    assert deep_sizeof(value) == expected
    assert deep_sizeof(b"abc") == sys.getsizeof(b"abc")
    assert deep_sizeof({1, 2}) == sys.getsizeof({1, 2}) + 2 * sys.getsizeof(1)
