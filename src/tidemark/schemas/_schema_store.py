"""The schema store: memory → disk (→ Redis) → package source, converting on demand."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aioredis

from tidemark.cache import (
    AsyncDiskTier,
    ByteTier,
    Cached,
    CacheStats,
    DiskCache,
    EntryInfo,
    MemoryCache,
    RedisCache,
    TieredCache,
    deep_sizeof,
)
from tidemark.core import (
    SYSTEM_CLOCK,
    Clock,
    CorruptDataError,
    Counters,
    canonical_bytes,
    content_hash,
    get_logger,
)
from tidemark.fhir.packages import FhirPackage, PackageSet, ResourceEntry
from tidemark.fhir.schema import (
    ConversionError,
    FHIRSchema,
    SchemaResolver,
    Terminology,
    ValidationResult,
    Validator,
    convert,
    schema_dependencies,
)

from ._schema_metadata import SchemaMetadata, schema_key, split_canonical
from ._schema_tiers import SCHEMA_CODEC, TieredSchemaStorage, metadata_of, schema_memory_cache
from ._settings import StorageSettings
from ._stats import merge_persisted_stats

_log = get_logger("schemas")

Outcome = Literal["converted", "reused", "failed"]
#: ``progress(done, total, canonical_url, outcome)`` after each definition.
ProgressCallback = Callable[[int, int, str, Outcome], None]

# How long an unknown URL is remembered as unknown (validators ask for the same unknown
# extensions over and over; a schema stored meanwhile clears it at once).
_UNKNOWN_TTL = 30.0


@dataclass
class ConversionReport:
    """What converting one package did: counts, failures by URL, wall time, stored bytes."""

    package: str
    total: int = 0
    converted: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    size_bytes: int = 0


@dataclass(frozen=True)
class StoreStats:
    """Counters of a store: per tier (``memory``, ``disk``, ``redis``) and of the store itself
    (``conversions``, ``reused``, ``source_changes``, ``invalidations``...)."""

    tiers: dict[str, CacheStats]
    counters: dict[str, int]
    pending_writes: int


def _package_set(packages: PackageSet | FhirPackage | Iterable[FhirPackage] | None) -> PackageSet:
    if packages is None:
        return PackageSet()
    if isinstance(packages, PackageSet):
        return packages
    if isinstance(packages, FhirPackage):
        return PackageSet([packages])
    return PackageSet(packages)


_Source = tuple[FhirPackage, ResourceEntry]


class SchemaStore:
    """Converted FHIRSchemas by canonical URL, resolved memory → disk → Redis → packages.

    It holds its tiers: :attr:`storage`, a :class:`TieredSchemaStorage` over :attr:`cache`
    (the :attr:`memory`, :attr:`disk` and :attr:`redis` tiers the settings ask for), and
    follows the :class:`SchemaStorage` protocol by delegating to it.

    * Lazy: nothing is read until asked for; a schema missing from every tier is converted
      from the packages (``packages``) on demand, once even when many tasks and threads ask
      at the same time, and stored in every tier (disk and Redis written behind when
      ``settings.write_behind``; :meth:`aclose` waits for them).
    * Never converts an unchanged definition twice, across restarts too: a schema found in
      a persistent tier is reused when its source hash still matches the package's
      definition (a file hash first, then the canonical hash).
    * A definition that changed is converted again, and every schema that depends on it
      (transitively) is dropped from memory; :attr:`generation` moves on, so
      :meth:`validator` builds a fresh validator. :meth:`refresh` checks every stored
      schema against the packages at once.

    Its async methods belong to one event loop. :meth:`resolver` gives the synchronous
    resolver the FHIRSchema validator needs; call the validator from worker threads (as
    :meth:`validate` does) so that misses can be resolved on the loop.
    """

    def __init__(
        self,
        settings: StorageSettings | None = None,
        *,
        packages: PackageSet | FhirPackage | Iterable[FhirPackage] | None = None,
        redis: aioredis.Redis | str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        converter: Callable[[Mapping[str, Any]], FHIRSchema] = convert,
    ) -> None:
        self.settings = settings or StorageSettings()
        config = self.settings
        self.memory: MemoryCache[str, Cached[FHIRSchema]] | None = (
            schema_memory_cache(
                max_entries=config.max_entries,
                max_bytes=config.memory_limit_bytes,
                ttl=config.ttl_seconds,
                clock=clock,
            )
            if config.uses_memory
            else None
        )
        tiers: list[ByteTier] = []
        self.disk: DiskCache | None = None
        if config.uses_disk:
            assert config.disk_cache_dir is not None
            self.disk = DiskCache(
                config.disk_cache_dir,
                max_bytes=config.max_disk_bytes,
                ttl=config.ttl_seconds,
                compress=config.enable_compression,
                clock=clock,
            )
            tiers.append(AsyncDiskTier(self.disk))
        self.redis: RedisCache | None = None
        redis_source = redis if redis is not None else config.redis_url
        if redis_source is not None:
            self.redis = RedisCache(
                redis_source,
                prefix=config.redis_prefix,
                ttl=config.ttl_seconds,
                compress=config.enable_compression,
                clock=clock,
            )
            tiers.append(self.redis)
        self.cache: TieredCache[FHIRSchema] = TieredCache(
            tiers=tiers,
            codec=SCHEMA_CODEC,
            memory=self.memory,
            write_behind=config.write_behind,
            clock=clock,
        )
        self.storage = TieredSchemaStorage(self.cache)
        self.packages = _package_set(packages)
        self.counters = Counters(
            "conversions",
            "reused",
            "conversion_failures",
            "source_changes",
            "invalidations",
        )
        self.generation = 0
        self._clock = clock
        self._converter = converter
        self._inflight: dict[str, asyncio.Future[tuple[FHIRSchema, SchemaMetadata] | None]] = {}
        self._unknown: MemoryCache[str, bool] = MemoryCache(10_000, ttl=_UNKNOWN_TTL, clock=clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._validator: tuple[int, Validator] | None = None
        self._validator_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(
        cls,
        path: str | Path | None = None,
        *,
        packages: PackageSet | FhirPackage | Iterable[FhirPackage] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **overrides: Any,
    ) -> SchemaStore:
        """A store configured by the ``[storage]`` table of ``path`` (see
        :meth:`StorageSettings.load`: environment overrides apply, then ``overrides``)."""
        return cls(StorageSettings.load(path, **overrides), packages=packages, clock=clock)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cache!r}>"

    async def __aenter__(self) -> SchemaStore:
        self._bind_loop()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- sources -----------------------------------------------------------------------------
    def add_packages(self, packages: FhirPackage | Iterable[FhirPackage] | PackageSet) -> None:
        """Add packages to the sources (after the existing ones in precedence)."""
        items = (
            packages.packages
            if isinstance(packages, PackageSet)
            else [packages]
            if isinstance(packages, FhirPackage)
            else list(packages)
        )
        for package in items:
            self.packages.add(package)
        self._unknown.clear()

    async def use_packages(
        self, packages: PackageSet | FhirPackage | Iterable[FhirPackage]
    ) -> list[str]:
        """Replace the sources and :meth:`refresh` against them; returns the changed keys."""
        self.packages = _package_set(packages)
        self._unknown.clear()
        return await self.refresh()

    def _source(self, key: str) -> _Source | None:
        return self.packages.find(key)

    def key_for(self, url: str) -> str:
        """The storage key a request for ``url`` (or ``url|version``) resolves to."""
        if "|" in url:
            return url
        found = self.packages.find(url)
        if found is not None:
            entry = found[1]
            return schema_key(entry.url or url, entry.version)
        return self.storage.key_for(url)

    # -- resolution --------------------------------------------------------------------------
    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            self._loop = loop
        return loop

    def get_memory(self, url: str) -> FHIRSchema | None:
        """The schema for ``url`` if the memory tier holds it (no I/O). Thread-safe."""
        cached = self.cache.get_memory(self.key_for(url))
        return None if cached is None else cached.value

    async def get(self, url: str) -> FHIRSchema | None:
        """The schema for ``url`` (or ``url|version``), or ``None`` when no tier and no package
        has it. Raises :class:`~tidemark.fhir.schema.ConversionError` for a definition that
        cannot be converted."""
        cached = self.cache.get_memory(self.key_for(url))
        if cached is not None:
            return cached.value
        found = await self._get_entry(url, memory_checked=True)
        return None if found is None else found[0]

    async def get_entry(self, url: str) -> tuple[FHIRSchema, SchemaMetadata] | None:
        """The schema and its metadata for ``url`` (see :meth:`get`)."""
        return await self._get_entry(url, memory_checked=False)

    async def _get_entry(
        self, url: str, *, memory_checked: bool
    ) -> tuple[FHIRSchema, SchemaMetadata] | None:
        self._bind_loop()
        key = self.key_for(url)
        cached = None if memory_checked else self.cache.get_memory(key)
        if cached is not None:
            metadata = metadata_of(cached.meta)
            if metadata is not None:
                return cached.value, metadata
        if self._unknown.get(key):
            return None
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._resolve(key, url))
            self._inflight[key] = future
            future.add_done_callback(lambda _done: self._inflight.pop(key, None))
        # Shielded: one caller giving up must not cancel the resolution the others wait for.
        return await asyncio.shield(future)

    async def _resolve(self, key: str, url: str) -> tuple[FHIRSchema, SchemaMetadata] | None:
        source = self._source(key)
        looked_up = key
        if source is None and "|" not in url and key == url:
            key = await self.storage.resolve_key(url)
        found = await self._ensure(key, source, memory_checked=key == looked_up)
        if found is None:
            self._unknown.set(key, True)
            return None
        return found[0], found[1]

    async def _ensure(
        self,
        key: str,
        source: _Source | None,
        cached: Cached[FHIRSchema] | None = None,
        *,
        memory_checked: bool = False,
        searched: bool = False,
        verify_content: bool = False,
    ) -> tuple[FHIRSchema, SchemaMetadata, Outcome] | None:
        """Find ``key`` in the tiers and make sure it matches its source (converting when it
        does not, or when no tier has it). ``searched``: the caller already looked in every
        tier and found ``cached``. ``verify_content``: also convert again when the cached
        schema no longer has the content hash recorded at its conversion (or has none)."""
        if cached is None and not searched:
            cached = await self.cache.get(key, memory=not memory_checked)
        previous = None if cached is None else await self.storage.unpack(key, cached)
        if source is None:
            return None if previous is None else (previous[0], previous[1], "reused")
        old = None if previous is None else previous[1]
        if (
            verify_content
            and previous is not None
            and not content_intact(previous[0], previous[1].schema_hash)
        ):
            # Edited (or stored before content hashes were recorded): never trusted again.
            _log.warning(
                "cached schema does not match its recorded content hash; converting it again",
                key=key,
            )
            old = None
        try:
            fresh = await asyncio.to_thread(self._check_and_convert, old, *source)
        except (ConversionError, CorruptDataError):
            self.counters.increment("conversion_failures")
            raise
        if fresh is None:
            assert previous is not None
            self.counters.increment("reused")
            return previous[0], previous[1], "reused"
        schema, metadata, encoded = fresh
        await self._store_converted(schema, metadata, encoded, replaced=old)
        return schema, metadata, "converted"

    def _check_and_convert(
        self, old: SchemaMetadata | None, package: FhirPackage, entry: ResourceEntry
    ) -> tuple[FHIRSchema, SchemaMetadata, bytes] | None:
        """``None`` when ``old`` still describes the package's definition, else a fresh
        conversion. Blocking (file read, hashing, conversion): runs in a worker thread."""
        raw = package.raw_bytes(entry)
        file_hash = content_hash(raw)
        if old is not None:
            if old.source_file_hash == file_hash:
                return None
            if package.source_hash(entry) == old.source_hash:
                return None  # same definition, laid out differently
        definition = package.resource(entry)
        source_hash = content_hash(canonical_bytes(definition))
        started = time.perf_counter()
        schema = self._converter(definition)
        seconds = time.perf_counter() - started
        encoded = canonical_bytes(schema)
        url = definition.get("url") if isinstance(definition.get("url"), str) else entry.url
        version = definition.get("version")
        metadata = SchemaMetadata(
            canonical_url=url or entry.filename,
            version=version if isinstance(version, str) and version else None,
            source_hash=source_hash,
            conversion_time=self._clock.now(),
            dependencies=tuple(schema_dependencies(schema)),
            size_bytes=len(encoded),
            package=package.manifest.package_id,
            conversion_seconds=round(seconds, 6),
            source_file_hash=file_hash,
        )
        metadata = dataclasses.replace(metadata, schema_hash=content_hash(encoded))
        # Measured once here, so that loading it later (from disk) need not walk it again.
        footprint = deep_sizeof(schema) + deep_sizeof(metadata.to_dict())
        return schema, dataclasses.replace(metadata, memory_bytes=footprint), encoded

    async def _store_converted(
        self,
        schema: FHIRSchema,
        metadata: SchemaMetadata,
        encoded: bytes,
        *,
        replaced: SchemaMetadata | None,
    ) -> None:
        self.counters.increment("conversions")
        await self.storage.store(metadata.key, schema, metadata, encoded=encoded)
        self._unknown.invalidate(metadata.key)
        self._unknown.invalidate(metadata.canonical_url)
        _log.debug("schema converted", key=metadata.key, seconds=metadata.conversion_seconds)
        if replaced is not None:
            self.counters.increment("source_changes")
            _log.info("definition changed; schema converted again", key=metadata.key)
            await self.invalidate_dependents([metadata.canonical_url])

    async def store(self, url: str, schema: FHIRSchema, metadata: SchemaMetadata) -> None:
        """Store a schema converted elsewhere (dependents of a replaced one leave memory)."""
        previous = self.cache.get_memory(metadata.key)
        await self.storage.store(url, schema, metadata)
        self._unknown.invalidate(metadata.key)
        self._unknown.invalidate(metadata.canonical_url)
        if previous is not None and previous.meta.get("source_hash") != metadata.source_hash:
            await self.invalidate_dependents([metadata.canonical_url])

    async def get_many(self, urls: Iterable[str]) -> dict[str, FHIRSchema]:
        """The schemas found for ``urls`` (by requested URL). Much faster than one :meth:`get`
        per URL when they come from disk: each tier is read once, in one worker thread, and
        the sources are checked in one more."""
        self._bind_loop()
        keys = {url: self.key_for(url) for url in urls}
        found = await self.cache.get_many(set(keys.values()))
        checks: list[tuple[str, Mapping[str, Any], _Source]] = []
        for key, cached in found.items():
            source = self._source(key)
            if cached.tier != "memory" and source is not None:
                checks.append((key, cached.meta, source))
        stale = await asyncio.to_thread(self._stale_keys, checks)
        self.counters.increment("reused", len(checks) - len(stale))
        results = {key: cached.value for key, cached in found.items() if key not in stale}
        for url, key in keys.items():
            if key not in results:
                schema = await self.get(url)
                if schema is not None:
                    results[key] = schema
        return {url: results[key] for url, key in keys.items() if key in results}

    def _stale_keys(self, checks: Sequence[tuple[str, Mapping[str, Any], _Source]]) -> set[str]:
        """The keys whose stored metadata no longer matches their package's definition."""
        stale = set()
        for key, meta, (package, entry) in checks:
            if content_hash(package.raw_bytes(entry)) == meta.get("source_file_hash"):
                continue
            if package.source_hash(entry) != meta.get("source_hash"):
                stale.add(key)
        return stale

    # -- packages ----------------------------------------------------------------------------
    async def convert_package(
        self, package: FhirPackage, *, progress: ProgressCallback | None = None
    ) -> ConversionReport:
        """Make sure every StructureDefinition of ``package`` is converted and stored.

        Definitions whose schema is already stored with the same source hash, and whose stored
        content still has the hash recorded at its conversion, are reused, not converted; an
        edited schema (or one stored without a content hash) is converted again. Failures are
        reported, not raised. The package joins the sources.
        """
        self._bind_loop()
        self.add_packages(package)
        entries = [e for e in package.structure_definitions() if e.url]
        report = ConversionReport(package.manifest.package_id, total=len(entries))
        started = time.perf_counter()
        keys = [schema_key(e.url or "", e.version) for e in entries]
        known = await self.cache.get_many(keys)
        for done, (key, entry) in enumerate(zip(keys, entries, strict=True), start=1):
            outcome: Outcome
            try:
                found = await self._ensure(
                    key, (package, entry), known.get(key), searched=True, verify_content=True
                )
            except (ConversionError, CorruptDataError) as exc:
                report.failed[key] = str(exc)
                outcome = "failed"
            else:
                assert found is not None
                outcome = found[2]
                report.size_bytes += found[1].size_bytes
                if outcome == "converted":
                    report.converted += 1
                else:
                    report.reused += 1
            if progress is not None:
                progress(done, report.total, key, outcome)
        report.seconds = time.perf_counter() - started
        return report

    async def save(self, urls: Iterable[str]) -> tuple[list[SchemaMetadata], list[str]]:
        """Resolve each URL (converting when needed) and write it through to the persistent
        tiers now. Returns the saved metadata and the URLs that were not found."""
        saved, missing = [], []
        for url in urls:
            found = await self.get_entry(url)
            if found is None:
                missing.append(url)
                continue
            schema, metadata = found
            await self.cache.set(metadata.key, schema, metadata.to_dict())
            saved.append(metadata)
        await self.cache.flush()
        return saved, missing

    async def refresh(self) -> list[str]:
        """Check every stored schema against the packages; convert again those whose
        definition changed (and drop their dependents from memory). Returns their keys."""
        checks: list[tuple[str, Mapping[str, Any], _Source]] = []
        for metadata in await self.list():
            source = self._source(metadata.key)
            if source is not None:
                checks.append((metadata.key, metadata.to_dict(), source))
        stale = sorted(await asyncio.to_thread(self._stale_keys, checks))
        for key in stale:
            source = self._source(key)
            assert source is not None
            await self._ensure(key, source)
        return stale

    # -- invalidation ------------------------------------------------------------------------
    async def invalidate_dependents(self, urls: Iterable[str]) -> list[str]:
        """Drop from memory every schema depending on ``urls``, directly or transitively.

        Their stored copies stay valid (a FHIRSchema is converted from its own differential);
        what combines schemas, such as a validator's base chains, is rebuilt because
        :attr:`generation` moves on. Returns the keys dropped.
        """
        dependents: dict[str, set[str]] = {}
        canonical_of: dict[str, str] = {}
        for info in await self.cache.entries():
            metadata = metadata_of(info.meta)
            if metadata is None:
                continue
            canonical_of[info.key] = metadata.canonical_url
            for dependency in metadata.dependencies:
                dependents.setdefault(split_canonical(dependency)[0], set()).add(info.key)
        queue = [split_canonical(url)[0] for url in urls]
        doomed: set[str] = set()
        while queue:
            for key in dependents.get(queue.pop(), ()):
                if key not in doomed:
                    doomed.add(key)
                    queue.append(canonical_of[key])
        if self.memory is not None:
            for key in doomed:
                self.memory.invalidate(key)
        self._next_generation()
        self.counters.increment("invalidations", len(doomed))
        return sorted(doomed)

    def _next_generation(self) -> None:
        with self._validator_lock:
            self.generation += 1
            self._validator = None
        self._unknown.clear()

    async def remove(self, url: str) -> bool:
        """Remove ``url``'s schema from every tier; its dependents leave memory."""
        removed = await self.storage.remove(url)
        if removed:
            await self.invalidate_dependents([url])
        return removed

    async def clear_where(
        self,
        *,
        url_prefix: str | None = None,
        older_than: float | None = None,
        package: str | None = None,
    ) -> list[str]:
        """Remove the schemas matching every given filter (all of them when none is given):
        canonical URL starting with ``url_prefix``, converted more than ``older_than``
        seconds ago, from package ``package`` (``name`` or ``name#version``). Returns the
        keys removed."""
        cutoff = None if older_than is None else self._clock.now() - timedelta(seconds=older_than)

        def wanted(info: EntryInfo) -> bool:
            metadata = metadata_of(info.meta)
            if metadata is None:
                return True  # unusable entries are never worth keeping
            return _matches(metadata, url_prefix, cutoff, package)

        removed = await self.storage.remove_where(wanted)
        if removed:
            await self.invalidate_dependents([split_canonical(k)[0] for k in removed])
        return removed

    async def clear(self) -> None:
        """Remove every schema from every tier."""
        await self.storage.clear()
        self._next_generation()

    async def load(self, url: str) -> tuple[FHIRSchema, SchemaMetadata] | None:
        """The schema and metadata the tiers hold for ``url`` or ``url|version``, or ``None``
        (never converts; see :meth:`get_entry`)."""
        return await self.storage.load(url)

    async def list(self) -> builtins.list[SchemaMetadata]:
        """Metadata of every stored schema, one per key, sorted by key."""
        return await self.storage.list()

    def size(self) -> int:
        """Schemas held: the count of the fullest tier (memory may hold a subset)."""
        return self.storage.size()

    # -- validation --------------------------------------------------------------------------
    def resolver(self) -> SchemaResolver:
        """A synchronous resolver (canonical URL → FHIRSchema or ``None``) for the validator.

        Memory hits are answered in the calling thread; anything else is resolved on this
        store's event loop, so call the resolver from a worker thread, never from the loop's
        own thread (that raises ``RuntimeError``). A definition that fails to convert
        resolves to ``None`` (and is logged).
        """
        loop = self._bind_loop()

        def resolve(url: str) -> FHIRSchema | None:
            found = self.get_memory(url)
            if found is not None:
                return found
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                raise RuntimeError(
                    "the schema resolver was called on the store's event loop; run the "
                    "validator in a worker thread (SchemaStore.validate does)"
                )
            try:
                return asyncio.run_coroutine_threadsafe(self.get(url), loop).result()
            except (ConversionError, CorruptDataError) as exc:
                _log.warning("schema unavailable to the validator", url=url, error=str(exc))
                return None

        return resolve

    def validator(self) -> Validator:
        """A validator over this store, rebuilt whenever :attr:`generation` moves on."""
        with self._validator_lock:
            if self._validator is None or self._validator[0] != self.generation:
                terminology = Terminology(self.packages.resource)
                validator = Validator(self.resolver(), terminology=terminology)
                self._validator = (self.generation, validator)
            return self._validator[1]

    async def validate(self, resource: Any, *, profiles: Sequence[str] = ()) -> ValidationResult:
        """Validate ``resource`` against its type, ``meta.profile`` and ``profiles``, resolving
        schemas through this store (the validation itself runs in a worker thread)."""
        validator = self.validator()
        return await asyncio.to_thread(validator.validate, resource, profiles=profiles)

    # -- counters and closing ----------------------------------------------------------------
    def stats(self) -> StoreStats:
        """This process's counters: per tier and of the store."""
        return StoreStats(self.cache.stats(), self.counters.snapshot(), self.cache.pending)

    async def aclose(self) -> None:
        """Flush pending writes, add this run's counters to the disk cache's lifetime
        statistics, and release the tiers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.storage.aclose()
        if self.disk is not None:
            stats = self.stats()
            await asyncio.to_thread(
                merge_persisted_stats, self.disk.root, stats.tiers, stats.counters
            )


def content_intact(schema: FHIRSchema, schema_hash: object) -> bool:
    """Whether a schema still has the content hash recorded when it was converted (``False``
    when none was recorded)."""
    return isinstance(schema_hash, str) and content_hash(canonical_bytes(schema)) == schema_hash


def _matches(
    metadata: SchemaMetadata,
    url_prefix: str | None,
    cutoff: datetime | None,
    package: str | None,
) -> bool:
    if url_prefix is not None and not metadata.canonical_url.startswith(url_prefix):
        return False
    if cutoff is not None and metadata.conversion_time >= cutoff:
        return False
    if package is not None:
        own = metadata.package or ""
        if own != package and own.split("#", 1)[0] != package:
            return False
    return True
