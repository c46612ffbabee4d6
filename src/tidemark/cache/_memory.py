"""A bounded, expiring, thread-safe in-memory cache (least-recently-used eviction)."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
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


_CONTAINERS = (dict, list, tuple)


def deep_sizeof(value: object) -> int:
    """Bytes a JSON-like value really occupies in this process (``sys.getsizeof`` summed over
    dicts, lists, tuples, other mappings and sets, and everything in them). Shared objects are
    counted at each occurrence, so the figure is an upper bound: use it as ``getsizeof`` when a
    byte limit must hold for real memory.
    """
    getsizeof = sys.getsizeof
    total = getsizeof(value)
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        children: Iterable[Any]
        if kind is dict:
            total += sum(map(getsizeof, item))  # the keys (map/sum: no Python-level loop)
            children = item.values()
        elif kind is list or kind is tuple:
            children = item
        elif isinstance(item, Mapping):
            total += sum(map(getsizeof, item.keys()))
            children = list(item.values())
        elif isinstance(item, set | frozenset):
            children = item
        else:
            continue
        total += sum(map(getsizeof, children))
        stack.extend([child for child in children if not isinstance(child, _ATOMS)])
    return total


_ATOMS = (str, int, float, bytes, type(None))


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache's counters and size. ``corrupt`` counts damaged entries a
    persistent tier found, logged and dropped (always 0 in memory)."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    loads: int
    rejected: int
    entries: int
    bytes: int
    corrupt: int = 0

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
            "corrupt": self.corrupt,
        }


# An entry is a tuple (value, size), (value, size, expires) under ttl alone, or a list
# [value, size, expires, written] under expire_after_access (whose reads move the deadline).
# Building a tuple is cheaper than instantiating a class, and tuples of atoms drop out of the
# cyclic GC. A ``set`` always installs a fresh entry, so a lock-free reader holding the old one
# never sees a half-replaced entry, and its deadline refresh on a stale list is harmless.
_Entry = tuple[Any, ...] | list[Any]
_VALUE, _SIZE, _EXPIRES = 0, 1, 2
# Slots of the mutable totals list shared by the hot paths and the methods.
_BYTES, _EVICTIONS = 0, 1

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
    admission filter), unless it was too large to store at all. Recency is exact LRU.
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
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._data: OrderedDict[K, _Entry] = OrderedDict()
        self._totals = [0, 0]  # [_BYTES, _EVICTIONS], mutated only under the lock
        self._hit_count = itertools.count()
        self._miss_count = itertools.count()
        self._hits_base = self._misses_base = 0
        self._expirations = self._invalidations = self._loads = self._rejected = 0
        self._load_locks: dict[K, threading.Lock] = {}
        self._fast_get = self._build_get()
        self._fast_set = self._build_set()
        # The hot paths are closures over local references: no attribute lookups and no tests
        # of features that are off. Installing them on the instance also skips the method
        # indirection; a subclass that overrides get/set keeps its override.
        if type(self).get is MemoryCache.get:
            setattr(self, "get", self._fast_get)  # noqa: B010
        if type(self).set is MemoryCache.set:
            setattr(self, "set", self._fast_set)  # noqa: B010

    # -- the hot paths -----------------------------------------------------------------------
    # ``get`` takes no lock: under the GIL each OrderedDict operation is atomic, a concurrent
    # eviction between the lookup and ``move_to_end`` only raises KeyError (ignored), and
    # hit/miss counts go through ``itertools.count`` whose ``next`` is atomic. Every mutation of
    # the entries and of the totals happens under the lock, so the bounds are exact.
    def _build_get(self) -> Callable[[K, Any], Any]:
        lookup = self._data.get
        touch = self._data.move_to_end
        hits = self._hit_count
        misses = self._miss_count
        if not self._expiring:

            def get(key: K, default: Any = None) -> Any:
                entry = lookup(key)
                if entry is None:
                    next(misses)
                    return default
                try:
                    touch(key)
                except KeyError:
                    pass
                next(hits)
                return entry[0]

            return get

        now_fn = self._now
        expire_one = self._expire_one
        if self.expire_after_access is None:

            def get_ttl(key: K, default: Any = None) -> Any:
                entry = lookup(key)
                if entry is None:
                    next(misses)
                    return default
                if entry[2] <= now_fn():
                    expire_one(key, entry)
                    next(misses)
                    return default
                try:
                    touch(key)
                except KeyError:
                    pass
                next(hits)
                return entry[0]

            return get_ttl

        ttl = self.ttl
        access = self.expire_after_access

        def get_idle(key: K, default: Any = None) -> Any:
            entry = lookup(key)
            if entry is None:
                next(misses)
                return default
            now = now_fn()
            if entry[2] <= now:
                expire_one(key, entry)
                next(misses)
                return default
            deadline = now + access
            entry[2] = deadline if ttl is None else min(entry[3] + ttl, deadline)  # type: ignore[index]
            try:
                touch(key)
            except KeyError:
                pass
            next(hits)
            return entry[0]

        return get_idle

    def _build_set(self) -> Callable[[K, V], bool]:
        data = self._data
        lookup = data.get
        touch = data.move_to_end
        pop_oldest = data.popitem
        acquire = self._lock.acquire
        release = self._lock.release
        totals = self._totals
        weigh = self._weigh
        sizeof = self._getsizeof
        default_sizer = sizeof is estimate_size
        entry_cap = sys.maxsize if self.max_entries is None else self.max_entries
        byte_cap = _NEVER if self.max_bytes is None else self.max_bytes
        ttl = self.ttl
        access = self.expire_after_access
        now_fn = self._now
        reject = self._reject
        notify = self._notify if self._on_evict is not None else None

        if entry_cap == 0:

            def refuse(key: K, value: V) -> bool:
                reject(key)
                return False

            return refuse

        def set_(key: K, value: V) -> bool:
            if weigh:
                # Inlined fast path of estimate_size for the common bytes value.
                size = len(value) if default_sizer and type(value) is bytes else sizeof(value)  # type: ignore[arg-type]
                if size > byte_cap:
                    reject(key)
                    return False
            else:
                size = 0
            entry: _Entry
            if access is not None:
                now = now_fn()
                deadline = now + access
                entry = [value, size, deadline if ttl is None else min(now + ttl, deadline), now]
            elif ttl is not None:
                entry = (value, size, now_fn() + ttl)
            else:
                entry = (value, size)
            evicted: list[tuple[K, _Entry]] | None = None
            acquire()
            try:
                old = lookup(key)
                data[key] = entry
                if old is None:
                    total = totals[0] + size
                else:
                    touch(key)
                    total = totals[0] + size - old[1]
                if len(data) > entry_cap or total > byte_cap:
                    # The new entry is the most recent, so it goes last (if ever: it fits).
                    evicted = []
                    while True:
                        item = pop_oldest(False)
                        total -= item[1][1]
                        evicted.append(item)
                        if len(data) <= entry_cap and total <= byte_cap:
                            break
                    totals[1] += len(evicted)
                totals[0] = total
            finally:
                release()
            if evicted is not None and notify is not None:
                notify(evicted, "size")
            return True

        return set_

    # -- reading ---------------------------------------------------------------------------
    def get(self, key: K, default: Any = None) -> Any:
        """The cached value, or ``default`` when absent or expired (counted as a miss).

        Lock-free; refreshes recency (and the deadline under ``expire_after_access``).
        """
        return self._fast_get(key, default)

    def _expire_one(self, key: K, entry: _Entry) -> None:
        with self._lock:
            if self._data.get(key) is not entry:
                return
            del self._data[key]
            self._totals[_BYTES] -= entry[_SIZE]
            self._expirations += 1
        if self._on_evict is not None:
            self._on_evict(key, entry[_VALUE], "expired")

    def _live(self, entry: _Entry | None) -> bool:
        return entry is not None and (not self._expiring or entry[_EXPIRES] > self._now())

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` holds an unexpired value (does not count as a hit or refresh recency)."""
        with self._lock:
            return self._live(self._data.get(key))  # type: ignore[arg-type]

    def peek(self, key: K, default: Any = None) -> Any:
        """Like :meth:`get` but without touching recency or counters."""
        with self._lock:
            entry = self._data.get(key)
            return entry[_VALUE] if entry is not None and self._live(entry) else default

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
            return self._totals[_BYTES]

    # -- writing ---------------------------------------------------------------------------
    def set(self, key: K, value: V) -> bool:
        """Store ``value`` under ``key`` (replacing any previous value). False if too large.

        Evicts least recently used entries until both bounds hold; the new entry is never the
        one evicted (unless ``max_entries`` is 0).
        """
        return self._fast_set(key, value)

    def _reject(self, key: K) -> None:
        with self._lock:
            self._rejected += 1
            old = self._data.pop(key, None)
            if old is not None:
                self._totals[_BYTES] -= old[_SIZE]
                self._invalidations += 1
        if old is not None:
            self._notify([(key, old)], "invalidated")

    def _notify(self, entries: list[tuple[K, _Entry]], reason: str) -> None:
        if self._on_evict is not None:
            for key, entry in entries:
                self._on_evict(key, entry[_VALUE], reason)

    def _drop(self, doomed: list[tuple[K, _Entry]]) -> None:
        # Caller holds the lock.
        for key, entry in doomed:
            del self._data[key]
            self._totals[_BYTES] -= entry[_SIZE]

    def invalidate(self, key: K) -> bool:
        """Remove ``key``; True if it was present."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return False
            self._drop([(key, entry)])
            self._invalidations += 1
        self._notify([(key, entry)], "invalidated")
        return True

    def invalidate_where(self, predicate: Callable[[K], bool]) -> int:
        """Remove every key for which ``predicate(key)`` is true; returns how many."""
        with self._lock:
            doomed = [(k, e) for k, e in self._data.items() if predicate(k)]
            self._drop(doomed)
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
            doomed = [(k, e) for k, e in self._data.items() if e[_EXPIRES] <= now]
            self._drop(doomed)
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
                hits=_count_value(self._hit_count) - self._hits_base,
                misses=_count_value(self._miss_count) - self._misses_base,
                evictions=self._totals[_EVICTIONS],
                expirations=self._expirations,
                invalidations=self._invalidations,
                loads=self._loads,
                rejected=self._rejected,
                entries=len(self._data),
                bytes=self._totals[_BYTES],
            )

    def reset_stats(self) -> None:
        """Zero the counters (entries are kept)."""
        # The hot paths hold the counter objects, so they are never replaced: resetting moves
        # the baseline instead.
        with self._lock:
            self._hits_base = _count_value(self._hit_count)
            self._misses_base = _count_value(self._miss_count)
            self._totals[_EVICTIONS] = 0
            self._expirations = self._invalidations = self._loads = self._rejected = 0
