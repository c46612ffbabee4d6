"""A shared key → bytes cache tier in Redis (redis-py asyncio), for many processes at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tidemark.core import SYSTEM_CLOCK, Clock, CorruptDataError, get_logger

from ._memory import CacheStats
from ._record import EntryInfo, Record, StoredEntry, decode_value, encode_value

_log = get_logger("cache.redis")

_GLOB = re.compile(r"([*?\[\]\\])")
_VALUE, _RECORD = b"v", b"r"


class RedisCache:
    """Entries as Redis hashes ``<prefix><key>`` holding the value and its integrity record.

    * ``prefix`` keeps this cache's keys apart from everything else in the database; listing
      and clearing touch only keys under it.
    * ``ttl`` (seconds) becomes a Redis expiry on each entry; there is no size cap here (use
      the server's ``maxmemory`` policy for that).
    * ``compress`` stores values zstd-compressed when that makes them smaller.

    A damaged entry is a logged miss and is deleted. Counters are this process's own;
    ``stats().entries`` is the count seen by the last :meth:`entries` call (and this process's
    writes since), since counting a shared keyspace exactly needs a scan. Use from one event
    loop; :meth:`aclose` releases the connection pool if this cache created it.
    """

    def __init__(
        self,
        client: aioredis.Redis | str,
        *,
        prefix: str = "tidemark:cache:",
        ttl: float | None = None,
        compress: bool = False,
        compression_level: int = 3,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "redis",
    ) -> None:
        if not prefix:
            raise ValueError("a Redis cache needs a non-empty key prefix")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        self._owns_client = isinstance(client, str)
        self.client: aioredis.Redis = (
            aioredis.Redis.from_url(client) if isinstance(client, str) else client
        )
        self.prefix = prefix
        self.ttl = ttl
        self.compress = compress
        self.compression_level = compression_level
        self.name = name
        self._clock = clock
        self._counts = dict.fromkeys(("hits", "misses", "invalidations", "corrupt"), 0)
        self._known_entries = 0
        self._known_bytes = 0

    def __repr__(self) -> str:
        return f"<RedisCache prefix={self.prefix!r}>"

    def _redis_key(self, key: str) -> bytes:
        return (self.prefix + key).encode("utf-8")

    async def get(self, key: str) -> StoredEntry | None:
        """The entry under ``key``, or ``None`` (absent, expired or damaged)."""
        raw = await self.client.hmget(self._redis_key(key), [_VALUE, _RECORD])
        return await self._decode(key, raw[0], raw[1])

    async def _decode(self, key: str, stored: Any, record_bytes: Any) -> StoredEntry | None:
        if not isinstance(stored, bytes) or not isinstance(record_bytes, bytes):
            self._counts["misses"] += 1
            return None
        try:
            record = Record.from_json(record_bytes)
            if record.key != key:
                raise CorruptDataError(f"record is for another key ({record.key!r})")
            value = decode_value(stored, record)
        except CorruptDataError as exc:
            await self._drop_corrupt(key, str(exc))
            self._counts["misses"] += 1
            return None
        self._counts["hits"] += 1
        return StoredEntry(key, value, record.meta, record.stored_datetime)

    async def get_many(self, keys: Iterable[str]) -> dict[str, StoredEntry]:
        """The entries found among ``keys``, read in one round trip."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for key in wanted:
                pipe.hmget(self._redis_key(key), [_VALUE, _RECORD])
            replies = await pipe.execute()
        found = {}
        for key, reply in zip(wanted, replies, strict=True):
            entry = await self._decode(key, reply[0], reply[1])
            if entry is not None:
                found[key] = entry
        return found

    async def set(
        self,
        key: str,
        value: bytes,
        meta: Mapping[str, Any] | None = None,
        *,
        stored_at: datetime | None = None,
    ) -> bool:
        """Store ``value`` and JSON-able ``meta`` under ``key`` (replacing it); always True.

        ``stored_at`` (default now) is when the value was first stored: the ttl runs from it.
        """
        now = self._clock.now().timestamp()
        born = now if stored_at is None else min(now, stored_at.timestamp())
        stored, record = encode_value(
            key, value, meta or {}, born, compress=self.compress, level=self.compression_level
        )
        name = self._redis_key(key)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(name)
            pipe.hset(name, mapping={_VALUE: stored, _RECORD: record.to_json()})
            if self.ttl is not None:
                pipe.pexpire(name, max(1, int((self.ttl - (now - born)) * 1000)))
            replies = await pipe.execute()
        if not replies[0]:
            self._known_entries += 1
        return True

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        removed = bool(await self.client.delete(self._redis_key(key)))
        if removed:
            self._counts["invalidations"] += 1
            self._known_entries = max(0, self._known_entries - 1)
        return removed

    async def _drop_corrupt(self, key: str, reason: str) -> None:
        _log.warning("corrupt cache entry removed", tier=self.name, key=key, reason=reason)
        self._counts["corrupt"] += 1
        try:
            await self.client.delete(self._redis_key(key))
        except RedisError as exc:
            _log.warning("cannot remove corrupt entry", key=key, error=str(exc))

    async def _keys(self) -> list[bytes]:
        pattern = _GLOB.sub(r"\\\1", self.prefix) + "*"
        return [k async for k in self.client.scan_iter(match=pattern, count=500)]

    async def entries(self) -> list[EntryInfo]:
        """Every entry under the prefix (one scan; damaged ones are removed and skipped)."""
        names = await self._keys()
        infos: list[EntryInfo] = []
        total = 0
        for start in range(0, len(names), 500):
            batch = names[start : start + 500]
            async with self.client.pipeline(transaction=False) as pipe:
                for name in batch:
                    pipe.hget(name, _RECORD)
                    pipe.memory_usage(name)
                replies = await pipe.execute()
            for index, name in enumerate(batch):
                record_bytes, usage = replies[2 * index], replies[2 * index + 1]
                if record_bytes is None:
                    continue  # expired or deleted during the scan
                key = name.decode("utf-8", "replace")[len(self.prefix) :]
                try:
                    record = Record.from_json(record_bytes)
                except CorruptDataError as exc:
                    await self._drop_corrupt(key, str(exc))
                    continue
                size = int(usage) if usage else record.stored_bytes + len(record_bytes)
                total += size
                infos.append(
                    EntryInfo(record.key, record.meta, record.stored_datetime, size, tier=self.name)
                )
        self._known_entries, self._known_bytes = len(infos), total
        return infos

    async def delete_where(self, predicate: Callable[[EntryInfo], bool]) -> int:
        """Remove every entry for which ``predicate(info)`` is true; returns how many."""
        removed = 0
        for info in await self.entries():
            if predicate(info) and await self.delete(info.key):
                removed += 1
        return removed

    async def clear(self) -> int:
        """Remove every key under the prefix; returns how many."""
        names = await self._keys()
        removed = 0
        for start in range(0, len(names), 500):
            removed += int(await self.client.delete(*names[start : start + 500]))
        self._counts["invalidations"] += removed
        self._known_entries = self._known_bytes = 0
        return removed

    def stats(self) -> CacheStats:
        """This process's counters; entries/bytes as of the last listing."""
        return CacheStats(
            hits=self._counts["hits"],
            misses=self._counts["misses"],
            evictions=0,
            expirations=0,
            invalidations=self._counts["invalidations"],
            loads=0,
            rejected=0,
            entries=self._known_entries,
            bytes=self._known_bytes,
            corrupt=self._counts["corrupt"],
        )

    async def aclose(self) -> None:
        """Close the connection pool when this cache created the client."""
        if self._owns_client:
            await self.client.aclose()
