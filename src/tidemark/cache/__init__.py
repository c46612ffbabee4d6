"""tidemark.cache: caches shared by the capabilities.

- :class:`MemoryCache`: the bounded, expiring, thread-safe in-memory tier (exact LRU by entries
  and bytes, expire-after-write and expire-after-access, counters, single-flight loads).
- :class:`DiskCache`: a persistent key → bytes tier, one file per entry (optionally zstd),
  atomic writes, TTL, a total size cap with LRU eviction; damaged files are logged misses.
- :class:`RedisCache`: a key → bytes tier in Redis (asyncio) shared by many processes.
- :class:`TieredCache`: a memory front over ordered byte tiers (:class:`ByteTier`; wrap a
  :class:`DiskCache` in :class:`AsyncDiskTier`), read-through with promotion, write-through or
  write-behind.
"""

from ._disk import DiskCache, key_hash
from ._memory import CacheStats, MemoryCache, deep_sizeof, estimate_size
from ._record import EntryInfo, StoredEntry
from ._redis import RedisCache
from ._tiered import AsyncDiskTier, ByteTier, Cached, Codec, TieredCache

__all__ = [
    "AsyncDiskTier",
    "ByteTier",
    "CacheStats",
    "Cached",
    "Codec",
    "DiskCache",
    "EntryInfo",
    "MemoryCache",
    "RedisCache",
    "StoredEntry",
    "TieredCache",
    "deep_sizeof",
    "estimate_size",
    "key_hash",
]
