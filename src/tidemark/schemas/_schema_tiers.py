"""The async ``SchemaStorage`` protocol and its implementations over the cache tiers."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
import redis.asyncio as aioredis

from tidemark.cache import (
    AsyncDiskTier,
    Cached,
    Codec,
    DiskCache,
    EntryInfo,
    MemoryCache,
    RedisCache,
    TieredCache,
    deep_sizeof,
)
from tidemark.core import SYSTEM_CLOCK, Clock, CorruptDataError, canonical_bytes, get_logger
from tidemark.fhir.schema import FHIRSchema

from ._schema_metadata import SchemaMetadata, split_canonical

_log = get_logger("schemas")


@runtime_checkable
class SchemaStorage(Protocol):
    """Where converted schemas are kept, keyed by canonical URL (``url`` or ``url|version``).

    ``load`` of a plain URL finds the version stored last. ``size`` is the number of schemas
    held (without I/O). Implementations are safe for concurrent tasks of one event loop.
    """

    async def store(self, url: str, schema: FHIRSchema, metadata: SchemaMetadata) -> None: ...

    async def load(self, url: str) -> tuple[FHIRSchema, SchemaMetadata] | None: ...

    async def remove(self, url: str) -> bool: ...

    async def list(self) -> builtins.list[SchemaMetadata]: ...

    async def clear(self) -> None: ...

    def size(self) -> int: ...


def _decode_schema(data: bytes) -> FHIRSchema:
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a stored schema must be a JSON object")
    return value


#: Schemas cross to the byte tiers as canonical JSON.
SCHEMA_CODEC: Codec[FHIRSchema] = Codec(encode=canonical_bytes, decode=_decode_schema)

_EMPTY_CACHED: Cached[FHIRSchema] = Cached({}, {}, datetime.now(UTC), "memory")
# What a memory entry costs besides the schema and its metadata: the Cached record, its
# datetime and the cache's own bookkeeping (an OrderedDict node and an entry tuple).
_ENTRY_OVERHEAD = (
    sys.getsizeof(_EMPTY_CACHED) + sys.getsizeof(_EMPTY_CACHED.stored_at) + 2 * 64 + 100
)


def schema_entry_size(cached: Cached[FHIRSchema]) -> int:
    """Bytes a memory-tier entry occupies: the schema and its metadata (``memory_bytes``,
    measured at conversion, else measured now) and the entry's bookkeeping."""
    measured = cached.meta.get("memory_bytes")
    if isinstance(measured, int) and measured > 0:
        return measured + _ENTRY_OVERHEAD
    return deep_sizeof(cached.value) + deep_sizeof(cached.meta) + _ENTRY_OVERHEAD


def schema_memory_cache(
    *,
    max_entries: int | None,
    max_bytes: int | None,
    ttl: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> MemoryCache[str, Cached[FHIRSchema]]:
    """A memory tier for schemas whose byte limit counts their real in-memory footprint."""
    return MemoryCache(
        max_entries, max_bytes=max_bytes, ttl=ttl, getsizeof=schema_entry_size, clock=clock
    )


class TieredSchemaStorage:
    """A :class:`SchemaStorage` over a :class:`~tidemark.cache.TieredCache` of schemas.

    Entries are keyed ``url|version``; a plain URL resolves to the version stored (or found)
    last. Returned schemas are shared with the cache: do not modify them.
    """

    def __init__(self, cache: TieredCache[FHIRSchema]) -> None:
        self.cache = cache
        self._aliases: dict[str, str] = {}
        self._aliases_listed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cache!r}>"

    def key_for(self, url: str) -> str:
        """The key ``url`` resolves to: itself when it names a version, else the key of the
        version this storage stored or found last (no I/O)."""
        return url if "|" in url else self._aliases.get(url, url)

    async def resolve_key(self, url: str) -> str:
        """:meth:`key_for`, after learning every stored key once (the first time a plain URL
        is asked for), so that a schema stored by another process is found too."""
        if "|" not in url and not self._aliases_listed:
            await self._list_aliases()
        return self.key_for(url)

    def _remember(self, metadata: SchemaMetadata) -> None:
        self._aliases[metadata.canonical_url] = metadata.key

    def _forget(self, key: str) -> None:
        canonical, _ = split_canonical(key)
        if self._aliases.get(canonical) == key:
            del self._aliases[canonical]

    async def _list_aliases(self) -> None:
        # A plain URL unknown to this process: learn every stored key once (the disk index
        # is in memory; Redis needs one scan), newest conversion winning.
        self._aliases_listed = True
        newest_first = sorted(await self.list(), key=lambda m: m.conversion_time, reverse=True)
        for metadata in newest_first:
            self._aliases.setdefault(metadata.canonical_url, metadata.key)

    async def store(
        self,
        url: str,
        schema: FHIRSchema,
        metadata: SchemaMetadata,
        *,
        encoded: bytes | None = None,
    ) -> None:
        """Store ``schema`` under ``metadata.key``; ``url`` must be its URL or key.
        ``encoded``: the schema's canonical JSON when the caller already has it."""
        if url not in (metadata.canonical_url, metadata.key):
            raise ValueError(f"{url!r} is not the URL of the metadata ({metadata.key!r})")
        await self.cache.set(metadata.key, schema, metadata.to_dict(), data=encoded)
        self._remember(metadata)

    async def load(self, url: str) -> tuple[FHIRSchema, SchemaMetadata] | None:
        """The schema and metadata stored for ``url`` or ``url|version``, or ``None``."""
        key = self.key_for(url)
        cached = await self.cache.get(key)
        if cached is None and "|" not in url and not self._aliases_listed:
            await self._list_aliases()
            if self.key_for(url) != key:
                key = self.key_for(url)
                cached = await self.cache.get(key)
        return None if cached is None else await self.unpack(key, cached)

    async def unpack(
        self, key: str, cached: Cached[FHIRSchema]
    ) -> tuple[FHIRSchema, SchemaMetadata] | None:
        """The schema and metadata of an entry read from :attr:`cache` under ``key``; an
        entry whose metadata is unusable is removed (logged) and gives ``None``."""
        try:
            metadata = SchemaMetadata.from_dict(cached.meta)
        except CorruptDataError as exc:
            _log.warning("schema with unusable metadata removed", key=key, reason=str(exc))
            await self.cache.delete(key)
            return None
        self._aliases.setdefault(metadata.canonical_url, metadata.key)
        return cached.value, metadata

    async def remove(self, url: str) -> bool:
        """Remove the schema stored for ``url`` (every tier); True if there was one."""
        key = self.key_for(url)
        removed = await self.cache.delete(key)
        self._forget(key)
        return removed

    async def remove_where(self, wanted: Callable[[EntryInfo], bool]) -> list[str]:
        """Remove, from every tier, each schema for which ``wanted(info)`` is true; returns
        the keys removed, sorted."""
        removed = await self.cache.delete_where(wanted)
        for key in removed:
            self._forget(key)
        return removed

    async def list(self) -> builtins.list[SchemaMetadata]:
        """Metadata of every stored schema, one per key, sorted by key."""
        seen: dict[str, SchemaMetadata] = {}
        for info in await self.cache.entries():
            if info.key in seen:
                continue
            try:
                seen[info.key] = SchemaMetadata.from_dict(info.meta)
            except CorruptDataError as exc:
                _log.warning("skipping entry with unusable metadata", key=info.key, reason=str(exc))
        return [seen[key] for key in sorted(seen)]

    async def clear(self) -> None:
        """Remove every schema from every tier."""
        await self.cache.clear()
        self._aliases.clear()
        self._aliases_listed = False

    def size(self) -> int:
        """Schemas held: the count of the fullest tier (memory may hold a subset)."""
        counts = [stats.entries for stats in self.cache.stats().values()]
        return max(counts, default=0) + self.cache.pending

    async def aclose(self) -> None:
        """Flush pending writes and release the tiers."""
        await self.cache.aclose()

    async def __aenter__(self) -> TieredSchemaStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class MemorySchemaStorage(TieredSchemaStorage):
    """Schemas in a bounded memory tier only (lost on restart)."""

    def __init__(
        self,
        *,
        max_entries: int | None = 1000,
        max_bytes: int | None = 256 * 1024 * 1024,
        ttl: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        memory = schema_memory_cache(
            max_entries=max_entries, max_bytes=max_bytes, ttl=ttl, clock=clock
        )
        super().__init__(TieredCache(codec=SCHEMA_CODEC, memory=memory, clock=clock))


class DiskSchemaStorage(TieredSchemaStorage):
    """Schemas on disk only (:class:`~tidemark.cache.DiskCache`), persistent across restarts."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_bytes: int | None = None,
        ttl: float | None = None,
        compress: bool = True,
        write_behind: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.disk = DiskCache(root, max_bytes=max_bytes, ttl=ttl, compress=compress, clock=clock)
        super().__init__(
            TieredCache(
                tiers=[AsyncDiskTier(self.disk)],
                codec=SCHEMA_CODEC,
                write_behind=write_behind,
                clock=clock,
            )
        )


class RedisSchemaStorage(TieredSchemaStorage):
    """Schemas in Redis under ``prefix``, shared by every process that uses the same prefix."""

    def __init__(
        self,
        client: aioredis.Redis | str,
        *,
        prefix: str = "tidemark:schemas:",
        ttl: float | None = None,
        compress: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.redis = RedisCache(client, prefix=prefix, ttl=ttl, compress=compress, clock=clock)
        super().__init__(TieredCache(tiers=[self.redis], codec=SCHEMA_CODEC, clock=clock))


def metadata_of(meta: Mapping[str, Any]) -> SchemaMetadata | None:
    """Parse stored metadata, ``None`` when unusable (helper for listings and predicates)."""
    try:
        return SchemaMetadata.from_dict(meta)
    except CorruptDataError:
        return None
