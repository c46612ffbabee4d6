"""A bounded, expiring, thread-safe in-memory cache (least-recently-used eviction)."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from tidemark.core import SYSTEM_CLOCK, Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING: Any = object()


def estimate_size(value: object) -> int:
    """A byte estimate for cache weighing: exact for bytes and text, JSON length otherwise."""
    if type(value) is bytes:
        return len(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return sys.getsizeof(value)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache's counters and size."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    loads: int
    rejected: int
    entries: int
    bytes: int

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """All counters plus ``hit_rate`` as a plain dict (for JSON and tables)."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hit_rate, 6),
            "evictions": self.evictions,
            "expirations": self.expirations,
            "invalidations": self.invalidations,
            "loads": self.loads,
            "rejected": self.rejected,
            "entries": self.entries,
            "bytes": self.bytes,
        }


# An entry is a list [value, size, written, expires] rather than an object: building a list is
# several times cheaper than instantiating a class, and ``set`` is on the miss path.
_Entry = list[Any]
_VALUE, _SIZE, _WRITTEN, _EXPIRES = 0, 1, 2, 3


_NEVER = float("inf")


def _count_value(counter: itertools.count[int]) -> int:
    # The next value an itertools.count would return, without advancing it.
    return int(repr(counter)[6:-1])


class MemoryCache(Generic[K, V]):
    """Least-recently-used cache bounded by entry count and/or bytes, with optional expiry.

    * ``max_entries`` / ``max_bytes``: bounds (``None`` = unbounded); the least recently used
      entries are evicted first. Sizes come from ``getsizeof`` (default :func:`estimate_size`);
      a value larger than ``max_bytes`` on its own is not stored (``set`` returns False).
    * ``ttl`` (expire after write) and ``expire_after_access``, in seconds, read from ``clock``.
    * ``on_evict(key, value, reason)`` is called outside the lock with reason ``"size"``,
      ``"expired"`` or ``"invalidated"``.

    Every method is thread-safe. A fresh ``set`` is always readable by the next ``get`` (no
    admission filter), unless it was too large to store at all.
    """

    def __init__(
        self,
        max_entries: int | None = None,
        *,
        max_bytes: int | None = None,
        ttl: float | None = None,
        expire_after_access: float | None = None,
        getsizeof: Callable[[V], int] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_evict: Callable[[K, V, str], None] | None = None,
    ) -> None:
        if max_entries is not None and max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        for name, seconds in (("ttl", ttl), ("expire_after_access", expire_after_access)):
            if seconds is not None and seconds <= 0:
                raise ValueError(f"{name} must be > 0 seconds")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.expire_after_access = expire_after_access
        self._getsizeof: Callable[[V], int] = getsizeof or estimate_size
        self._weigh = max_bytes is not None or getsizeof is not None
        self._clock = clock
        self._now: Callable[[], float] = (
            time.monotonic if clock is SYSTEM_CLOCK else clock.monotonic
        )
        self._expiring = ttl is not None or expire_after_access is not None
        self._first_lifetime = min(ttl or _NEVER, expire_after_access or _NEVER)
        self._entry_cap: float = sys.maxsize if max_entries is None else max_entries
        self._byte_cap: float = _NEVER if max_bytes is None else max_bytes
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._data: OrderedDict[K, _Entry] = OrderedDict()
        self._bytes = 0
        self._hit_count = itertools.count()
        self._miss_count = itertools.count()
        self._evictions = self._expirations = 0
        self._invalidations = self._loads = self._rejected = 0
        self._load_locks: dict[K, threading.Lock] = {}

    # -- reading ---------------------------------------------------------------------------
    # ``get`` takes no lock: under the GIL each OrderedDict operation is atomic, a concurrent
    # eviction between ``get`` and ``move_to_end`` only raises KeyError (ignored), and hit/miss
    # counts go through ``itertools.count`` whose ``next`` is atomic. Every mutation of the
    # entries and of the byte total happens under the lock, so the bounds are exact.
    def get(self, key: K, default: Any = None) -> Any:
        """The cached value, or ``default`` when absent or expired (counted as a miss)."""
        entry = self._data.get(key)
        if entry is None:
            next(self._miss_count)
            return default
        if self._expiring:
            now = self._now()
            if entry[3] <= now:
                self._expire_one(key, entry)
                next(self._miss_count)
                return default
            if self.expire_after_access is not None:
                entry[3] = self._deadline(entry[2], now)
        try:
            self._data.move_to_end(key)
        except KeyError:
            pass
        next(self._hit_count)
        return entry[0]

    def _expire_one(self, key: K, entry: _Entry) -> None:
        with self._lock:
            if self._data.get(key) is not entry:
                return
            del self._data[key]
            self._bytes -= entry[1]
            self._expirations += 1
        if self._on_evict is not None:
            self._on_evict(key, entry[0], "expired")

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` holds an unexpired value (does not count as a hit or refresh recency)."""
        with self._lock:
            entry = self._data.get(key)  # type: ignore[arg-type]
            return entry is not None and (not self._expiring or entry[3] > self._now())

    def peek(self, key: K, default: Any = None) -> Any:
        """Like :meth:`get` but without touching recency or counters."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None or (self._expiring and entry[3] <= self._now()):
                return default
            return entry[0]

    def keys(self) -> list[K]:
        """A snapshot of the keys, least recently used first (expired ones included until swept)."""
        with self._lock:
            return list(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    @property
    def current_bytes(self) -> int:
        """Sum of the sizes of the stored entries (0 unless weighing is on)."""
        with self._lock:
            return self._bytes

    # -- writing ---------------------------------------------------------------------------
    def _deadline(self, written: float, now: float) -> float:
        deadline = _NEVER
        if self.ttl is not None:
            deadline = written + self.ttl
        if self.expire_after_access is not None:
            deadline = min(deadline, now + self.expire_after_access)
        return deadline

    def set(self, key: K, value: V) -> bool:
        """Store ``value`` under ``key`` (replacing any previous value). False if too large."""
        size = self._getsizeof(value) if self._weigh else 0
        if size > self._byte_cap or self._entry_cap == 0:
            self._reject(key)
            return False
        if self._expiring:
            now = self._now()
            expires = now + self._first_lifetime
        else:
            now = 0.0
            expires = _NEVER
        evicted: list[tuple[K, _Entry]] | None = None
        with self._lock:
            data = self._data
            old = data.get(key)
            if old is None:
                data[key] = [value, size, now, expires]
            else:
                self._bytes -= old[1]
                old[:] = (value, size, now, expires)
                data.move_to_end(key)
            self._bytes += size
            if len(data) > self._entry_cap or self._bytes > self._byte_cap:
                evicted = self._shrink()
        if evicted and self._on_evict is not None:
            self._notify(evicted, "size")
        return True

    def _reject(self, key: K) -> None:
        with self._lock:
            self._rejected += 1
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
                self._invalidations += 1
        if old is not None:
            self._notify([(key, old)], "invalidated")

    def _shrink(self) -> list[tuple[K, _Entry]]:
        # Caller holds the lock. Evict least recently used entries until both bounds hold.
        data = self._data
        evicted: list[tuple[K, _Entry]] = []
        while len(data) > self._entry_cap or self._bytes > self._byte_cap:
            key, entry = data.popitem(last=False)
            self._bytes -= entry[1]
            evicted.append((key, entry))
        self._evictions += len(evicted)
        return evicted

    def _notify(self, entries: list[tuple[K, _Entry]], reason: str) -> None:
        if self._on_evict is not None:
            for key, entry in entries:
                self._on_evict(key, entry[0], reason)

    def invalidate(self, key: K) -> bool:
        """Remove ``key``; True if it was present."""
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return False
            self._bytes -= entry[1]
            self._invalidations += 1
        self._notify([(key, entry)], "invalidated")
        return True

    def invalidate_where(self, predicate: Callable[[K], bool]) -> int:
        """Remove every key for which ``predicate(key)`` is true; returns how many."""
        with self._lock:
            doomed = [(k, e) for k, e in self._data.items() if predicate(k)]
            for key, entry in doomed:
                del self._data[key]
                self._bytes -= entry[1]
            self._invalidations += len(doomed)
        self._notify(doomed, "invalidated")
        return len(doomed)

    def clear(self) -> int:
        """Remove everything; returns how many entries were dropped."""
        return self.invalidate_where(lambda _key: True)

    def expire(self) -> int:
        """Drop every expired entry now (expiry is otherwise lazy); returns how many."""
        if not self._expiring:
            return 0
        with self._lock:
            now = self._now()
            doomed = [(k, e) for k, e in self._data.items() if e[3] <= now]
            for key, entry in doomed:
                del self._data[key]
                self._bytes -= entry[1]
            self._expirations += len(doomed)
        self._notify(doomed, "expired")
        return len(doomed)

    def get_or_load(self, key: K, loader: Callable[[K], V]) -> V:
        """The cached value, or ``loader(key)`` stored and returned.

        Concurrent callers for one key wait for a single load (single flight). Exceptions from
        ``loader`` propagate and nothing is stored.
        """
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        with self._lock:
            key_lock = self._load_locks.setdefault(key, threading.Lock())
        with key_lock:
            value = self.peek(key, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            try:
                value = loader(key)
                with self._lock:
                    self._loads += 1
                self.set(key, value)
            finally:
                with self._lock:
                    self._load_locks.pop(key, None)
            return value

    # -- counters --------------------------------------------------------------------------
    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(
                hits=_count_value(self._hit_count),
                misses=_count_value(self._miss_count),
                evictions=self._evictions,
                expirations=self._expirations,
                invalidations=self._invalidations,
                loads=self._loads,
                rejected=self._rejected,
                entries=len(self._data),
                bytes=self._bytes,
            )

    def reset_stats(self) -> None:
        """Zero the counters (entries are kept)."""
        with self._lock:
            self._hit_count = itertools.count()
            self._miss_count = itertools.count()
            self._evictions = self._expirations = 0
            self._invalidations = self._loads = self._rejected = 0
