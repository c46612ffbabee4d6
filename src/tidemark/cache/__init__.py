"""tidemark.cache: caches shared by the capabilities.

``MemoryCache`` is the bounded, expiring, thread-safe in-memory tier (LRU by entries and bytes,
expire-after-write and expire-after-access, counters).
"""

from ._memory import CacheStats, MemoryCache, estimate_size

__all__ = ["CacheStats", "MemoryCache", "estimate_size"]
