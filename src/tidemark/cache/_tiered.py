"""Tiers composed: a memory front over ordered byte tiers (disk, Redis), read-through with
promotion, and writes through to every tier or behind, in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from tidemark.core import SYSTEM_CLOCK, Clock, Counters, get_logger

from ._disk import DiskCache
from ._memory import CacheStats, MemoryCache
from ._record import EntryInfo, StoredEntry

_log = get_logger("cache.tiered")

V = TypeVar("V")

MEMORY = "memory"
PENDING = "pending"


@runtime_checkable
class ByteTier(Protocol):
    """An async key → bytes tier (what :class:`TieredCache` composes). Must not raise for a
    damaged entry (that is a miss); may raise when the backend itself fails."""

    name: str

    async def get(self, key: str) -> StoredEntry | None: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, StoredEntry]: ...

    async def set(
        self,
        key: str,
        value: bytes,
        meta: Mapping[str, Any] | None = None,
        *,
        stored_at: datetime | None = None,
    ) -> bool: ...

    async def delete(self, key: str) -> bool: ...

    async def delete_where(self, predicate: Callable[[EntryInfo], bool]) -> int: ...

    async def clear(self) -> int: ...

    async def entries(self) -> list[EntryInfo]: ...

    def stats(self) -> CacheStats: ...

    async def aclose(self) -> None: ...


class AsyncDiskTier:
    """A :class:`DiskCache` behind the async :class:`ByteTier` protocol: each call runs in a
    worker thread, so the event loop never waits on the file system."""

    def __init__(self, disk: DiskCache) -> None:
        self.disk = disk
        self.name = disk.name

    def __repr__(self) -> str:
        return f"<AsyncDiskTier {self.disk!r}>"

    async def get(self, key: str) -> StoredEntry | None:
        return await asyncio.to_thread(self.disk.get, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, StoredEntry]:
        return await asyncio.to_thread(self.disk.get_many, list(keys))

    async def set(
        self,
        key: str,
        value: bytes,
        meta: Mapping[str, Any] | None = None,
        *,
        stored_at: datetime | None = None,
    ) -> bool:
        return await asyncio.to_thread(self.disk.set, key, value, meta, stored_at=stored_at)

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self.disk.delete, key)

    async def delete_where(self, predicate: Callable[[EntryInfo], bool]) -> int:
        return await asyncio.to_thread(self.disk.delete_where, predicate)

    async def clear(self) -> int:
        return await asyncio.to_thread(self.disk.clear)

    async def entries(self) -> list[EntryInfo]:
        return self.disk.entries()

    def stats(self) -> CacheStats:
        return self.disk.stats()

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Codec(Generic[V]):
    """How values cross from the memory front (objects) to the byte tiers (bytes).

    ``decode`` must raise ``ValueError`` (or a subclass) for bytes it cannot read.
    """

    encode: Callable[[V], bytes]
    decode: Callable[[bytes], V]


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    """A value found in a :class:`TieredCache`, with its metadata and where it was found."""

    value: V
    meta: Mapping[str, Any]
    stored_at: datetime
    tier: str

    def moved(self, tier: str) -> Cached[V]:
        """The same entry as held by ``tier`` (cheaper than ``dataclasses.replace``)."""
        return Cached(self.value, self.meta, self.stored_at, tier)


@dataclass(slots=True)
class _Pending:
    cached: Cached[Any]
    data: bytes
    targets: tuple[ByteTier, ...]


class TieredCache(Generic[V]):
    """A memory front (optional) over ordered byte tiers, e.g. memory → disk → Redis.

    * ``get`` looks in memory, then in writes still pending, then in each tier in order; a hit
      in a lower tier is promoted to memory at once and, in the background, to the tiers above.
    * ``set`` stores in memory at once; the byte tiers are written before ``set`` returns, or
      with ``write_behind`` by a background task (pending writes are readable meanwhile, and
      :meth:`flush` / :meth:`aclose` wait for them). A failing tier is logged and counted
      (``counters["tier_errors"]``); it never fails a read.
    * Deletions and writes of the byte tiers are serialised, so a delete is never undone by a
      write still in flight.

    The async methods belong to one event loop. :meth:`get_memory` is synchronous and
    thread-safe: it lets worker threads read the memory front without the loop.
    """

    def __init__(
        self,
        *,
        tiers: Sequence[ByteTier] = (),
        codec: Codec[V],
        memory: MemoryCache[str, Cached[V]] | None = None,
        write_behind: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.memory = memory
        self.tiers = tuple(tiers)
        self.codec = codec
        self.write_behind = write_behind
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._write_lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.counters = Counters("promotions", "writes", "tier_errors", "decode_errors")

    def __repr__(self) -> str:
        names = [MEMORY] if self.memory is not None else []
        names += [tier.name for tier in self.tiers]
        return f"<TieredCache {' → '.join(names)}>"

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    # -- reading -----------------------------------------------------------------------------
    def get_memory(self, key: str) -> Cached[V] | None:
        """The memory front's entry for ``key`` (counted as a memory hit or miss). Thread-safe."""
        if self.memory is None:
            return None
        found: Cached[V] | None = self.memory.get(key)
        return found

    async def get(self, key: str, *, memory: bool = True) -> Cached[V] | None:
        """The value under ``key`` from the first tier that has it, or ``None``.

        ``memory=False`` skips the memory front, for a caller that just asked
        :meth:`get_memory` (so one lookup is not counted as two misses).
        """
        found = self.get_memory(key) if memory else None
        if found is not None:
            return found
        pending = self._pending.get(key)
        if pending is not None:
            return pending.cached.moved(PENDING)
        for depth, tier in enumerate(self.tiers):
            try:
                entry = await tier.get(key)
            except Exception as exc:  # a tier that is down is skipped, not fatal
                self._tier_failed(tier, "get", key, exc)
                continue
            if entry is None:
                continue
            cached = await self._decoded(tier, key, entry)
            if cached is None:
                continue
            self._promote(key, cached, entry.value, self.tiers[:depth])
            return cached
        return None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Cached[V]]:
        """The values found among ``keys``: like :meth:`get` for each, but each tier is asked
        once for everything still missing (one worker-thread call, one Redis round trip)."""
        found: dict[str, Cached[V]] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            hit = self.get_memory(key)
            pending = self._pending.get(key) if hit is None else None
            if hit is not None:
                found[key] = hit
            elif pending is not None:
                found[key] = pending.cached.moved(PENDING)
            else:
                missing.append(key)
        for depth, tier in enumerate(self.tiers):
            if not missing:
                break
            try:
                entries = await tier.get_many(missing)
            except Exception as exc:  # a tier that is down is skipped, not fatal
                self._tier_failed(tier, "get_many", f"{len(missing)} keys", exc)
                continue
            for key, entry in entries.items():
                cached = await self._decoded(tier, key, entry)
                if cached is not None:
                    self._promote(key, cached, entry.value, self.tiers[:depth])
                    found[key] = cached
            missing = [key for key in missing if key not in found]
        return found

    async def _decoded(self, tier: ByteTier, key: str, entry: StoredEntry) -> Cached[V] | None:
        try:
            value = self.codec.decode(entry.value)
        except ValueError as exc:
            _log.warning("undecodable cache entry removed", tier=tier.name, key=key, error=str(exc))
            self.counters.increment("decode_errors")
            await self._delete_from(tier, key)
            return None
        return Cached(value, entry.meta, entry.stored_at, tier.name)

    def _promote(
        self, key: str, cached: Cached[V], data: bytes, upper: tuple[ByteTier, ...]
    ) -> None:
        if self.memory is not None:
            self.memory.set(key, cached.moved(MEMORY))
        if upper:
            self.counters.increment("promotions")
            self._enqueue(key, cached.moved(PENDING), data, upper)

    # -- writing -----------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: V,
        meta: Mapping[str, Any] | None = None,
        *,
        data: bytes | None = None,
    ) -> Cached[V]:
        """Store ``value`` with JSON-able ``meta`` in every tier (see the class docstring).

        ``data``: ``codec.encode(value)`` when the caller already has it.
        """
        cached = Cached(value, dict(meta or {}), self._clock.now(), MEMORY)
        if self.memory is not None:
            self.memory.set(key, cached)
        if self.tiers:
            if data is None:
                data = self.codec.encode(value)
            if self.write_behind:
                self._enqueue(key, cached.moved(PENDING), data, self.tiers)
            else:
                async with self._lock():
                    await self._write(key, data, cached, self.tiers)
        return cached

    def _enqueue(
        self, key: str, cached: Cached[V], data: bytes, targets: tuple[ByteTier, ...]
    ) -> None:
        # Promotions always go this way, whatever ``write_behind``: a read never waits for them.
        self._pending.pop(key, None)
        self._pending[key] = _Pending(cached, data, targets)
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain_forever())

    async def _write(
        self,
        key: str,
        data: bytes,
        cached: Cached[Any],
        targets: Sequence[ByteTier],
    ) -> None:
        # Caller holds the write lock.
        for tier in targets:
            try:
                await tier.set(key, data, cached.meta, stored_at=cached.stored_at)
                self.counters.increment("writes")
            except Exception as exc:  # a full disk or a lost Redis must not lose the others
                self._tier_failed(tier, "set", key, exc)

    async def _drain_once(self) -> None:
        while self._pending:
            key = next(iter(self._pending))
            item = self._pending[key]
            async with self._lock():
                if self._pending.get(key) is not item:
                    continue  # replaced or deleted while we waited
                await self._write(key, item.data, item.cached, item.targets)
                if self._pending.get(key) is item:
                    del self._pending[key]

    async def _drain_forever(self) -> None:
        assert self._wake is not None
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            await self._drain_once()

    @property
    def pending(self) -> int:
        """How many writes are waiting for the background writer."""
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until every pending write has reached its tiers."""
        await self._drain_once()

    # -- removing ----------------------------------------------------------------------------
    async def _delete_from(self, tier: ByteTier, key: str) -> bool:
        try:
            return await tier.delete(key)
        except Exception as exc:
            self._tier_failed(tier, "delete", key, exc)
            return False

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from every tier; True if any tier had it."""
        found = self.memory.invalidate(key) if self.memory is not None else False
        found = self._pending.pop(key, None) is not None or found
        async with self._lock():
            for tier in self.tiers:
                found = await self._delete_from(tier, key) or found
        return found

    def _memory_infos(self) -> list[EntryInfo]:
        if self.memory is None:
            return []
        infos = []
        for key in self.memory:
            cached: Cached[V] | None = self.memory.peek(key)
            if cached is not None:
                infos.append(EntryInfo(key, cached.meta, cached.stored_at, 0, tier=MEMORY))
        return infos

    def _pending_infos(self) -> list[EntryInfo]:
        return [
            EntryInfo(key, item.cached.meta, item.cached.stored_at, len(item.data), tier=PENDING)
            for key, item in list(self._pending.items())
        ]

    async def delete_where(self, predicate: Callable[[EntryInfo], bool]) -> list[str]:
        """Remove, from every tier, each entry for which ``predicate(info)`` is true.

        Returns the keys removed (from any tier), sorted.
        """
        removed: dict[str, None] = {}
        for info in self._memory_infos() + self._pending_infos():
            if predicate(info):
                removed[info.key] = None
                if self.memory is not None:
                    self.memory.invalidate(info.key)
                self._pending.pop(info.key, None)
        async with self._lock():
            for tier in self.tiers:
                try:
                    listed = await tier.entries()
                except Exception as exc:
                    self._tier_failed(tier, "entries", "*", exc)
                    continue
                for info in listed:
                    if predicate(info) and await self._delete_from(tier, info.key):
                        removed[info.key] = None
        return sorted(removed)

    async def clear(self) -> int:
        """Empty every tier; returns how many distinct keys were known before."""
        keys = {info.key for info in await self.entries()}
        if self.memory is not None:
            self.memory.clear()
        self._pending.clear()
        async with self._lock():
            for tier in self.tiers:
                try:
                    await tier.clear()
                except Exception as exc:
                    self._tier_failed(tier, "clear", "*", exc)
        return len(keys)

    # -- listing and counters ----------------------------------------------------------------
    async def entries(self) -> list[EntryInfo]:
        """Every entry of every tier (memory and pending writes included), tier by tier."""
        infos = self._memory_infos() + self._pending_infos()
        for tier in self.tiers:
            try:
                infos.extend(await tier.entries())
            except Exception as exc:
                self._tier_failed(tier, "entries", "*", exc)
        return infos

    def stats(self) -> dict[str, CacheStats]:
        """Each tier's counters by tier name (``memory`` first when present)."""
        result: dict[str, CacheStats] = {}
        if self.memory is not None:
            result[MEMORY] = self.memory.stats()
        for tier in self.tiers:
            result[tier.name] = tier.stats()
        return result

    def _tier_failed(self, tier: ByteTier, operation: str, key: str, exc: Exception) -> None:
        self.counters.increment("tier_errors")
        _log.warning(
            "cache tier failed", tier=tier.name, operation=operation, key=key, error=repr(exc)
        )

    async def aclose(self) -> None:
        """Flush pending writes, stop the background writer and close the tiers. Idempotent."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
        for tier in self.tiers:
            await tier.aclose()
