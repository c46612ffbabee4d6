"""The self-healing mapping provider: a read-only cache kept in step with a folder and a server.

How it stays correct:

* Each source has its own layer (:class:`FolderSource` for the folder, :class:`ServerSource` for
  the server) holding what it last took from its source. Every path — polling, focused refresh,
  reload, forced resync — updates layers only, then recomputes the affected keys with the
  precedence rules of :mod:`._precedence` (JSON file > text file > server; aliases built-ins <
  ConceptMap < ``aliases.json``) and applies the difference to the cache with
  :func:`tidemark.core.reconcile`, one key at a time. So server polling can never overwrite a
  file mapping, and deleting a file reveals the server mapping kept under it.
* The cache is never reset, a key is never deleted to be recreated, an unchanged entry is never
  written; every applied change is published as one :class:`MappingEvent`.
* One lock per source (files, server): a path that touches both takes the file lock, then the
  server lock. Loops, resyncs and user refreshes therefore never work on a source concurrently.
* A layer raises when its source fails; the provider then keeps the last good cache, logs the
  outage once and ends it at the first good poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from tidemark.core import (
    SYSTEM_CLOCK,
    Clock,
    Counters,
    EventStream,
    Subscription,
    content_hash,
    reconcile,
)
from tidemark.fhir.client import FhirClient, FhirClientError

from ._folder import ALL_KINDS, MAPPING_KINDS, FileKind, FolderRead, FolderSource, Touched
from ._fume import FILE_KEY, SERVER_KEY
from ._log import WarnOnce, log
from ._precedence import MAPPING_RULES, Override, effective_aliases, effective_mapping
from ._server import ServerSource
from ._settings import MappingsConfig
from ._types import (
    AliasEntry,
    Mapping,
    MappingAction,
    MappingEvent,
    MappingMetadata,
    SourceStatus,
    Trigger,
)

COUNTERS = (
    "file_polls",
    "server_polls",
    "forced_resyncs",
    "files_stated",
    "files_read",
    "searches",
    "resources_received",
    "conditional_reads_200",
    "conditional_reads_304",
    "conditional_reads_404",
    "conditional_reads_410",
    "conditional_reads_error",
    "cache_writes",
    "file_errors",
    "folder_errors",
    "server_errors",
)

#: The counter of failed polls of each source.
_SOURCE_ERRORS = {"files": "folder_errors", "server": "server_errors"}


@dataclass
class _Health:
    configured: bool
    available: bool = True
    last_success: datetime | None = None
    failing_since: datetime | None = None
    last_error: str | None = None


class MappingProvider:
    """An in-process, read-only cache of mappings and aliases that keeps itself aligned with a
    mapping folder and a FHIR server (see :class:`MappingsConfig`).

    Use it from one asyncio event loop: ``await initialize()`` loads everything and starts
    change tracking; the ``get_*`` methods answer from memory (thread-safe, never I/O);
    ``reload_*`` / ``refresh_mapping`` re-read the real sources on demand; ``subscribe()``
    streams one event per applied cache change. Nothing accepts a value from the caller: the
    sources are the only truth. ``await close()`` when done.
    """

    def __init__(
        self,
        config: MappingsConfig,
        *,
        client: FhirClient | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        #: Polls, files stat'ed and read, searches, conditional reads by outcome, cache writes.
        self.counters = Counters(*COUNTERS)
        self._clock = clock
        self._events: EventStream[MappingEvent] = EventStream()
        self._overrides = WarnOnce()  # one warning per override of one source by another
        self._client = client
        self._owns_client = False
        # The source layers (what each source last gave, not the cache).
        self._files = (
            FolderSource(
                config.folder.absolute(),
                config.file_extension,
                config.max_file_bytes,
                self.counters,
            )
            if config.folder is not None
            else None
        )
        self._server: ServerSource | None = None  # needs the client: made by initialize()
        self._file_lock = asyncio.Lock()
        self._server_lock = asyncio.Lock()
        self._cache_lock = threading.Lock()
        # The cache.
        self._cache: dict[str, Mapping] = {}
        self._aliases: dict[str, AliasEntry] = {}
        self._health = {
            "files": _Health(configured=config.folder is not None),
            "server": _Health(configured=config.server_url is not None or client is not None),
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._initialized = False
        self._closed = False

    # -- reads (from memory) -------------------------------------------------------------------
    def get_mapping(self, key: str) -> Mapping | None:
        """The cached mapping of ``key``, or ``None``."""
        with self._cache_lock:
            return self._cache.get(key)

    def get_mappings(self) -> list[Mapping]:
        """Every cached mapping, by key."""
        with self._cache_lock:
            return [self._cache[key] for key in sorted(self._cache)]

    def get_mapping_keys(self) -> list[str]:
        """Every cached mapping key, sorted."""
        with self._cache_lock:
            return sorted(self._cache)

    def get_mappings_metadata(self) -> list[MappingMetadata]:
        """Key, source type, source (file path or resource URL) and version of every mapping."""
        with self._cache_lock:
            mappings = [self._cache[key] for key in sorted(self._cache)]
        return [self._metadata(mapping) for mapping in mappings]

    def get_aliases(self) -> dict[str, str]:
        """The resolved aliases (a copy): built-ins < server ConceptMap < ``aliases.json``."""
        with self._cache_lock:
            return {key: entry.value for key, entry in sorted(self._aliases.items())}

    def get_aliases_with_metadata(self) -> dict[str, AliasEntry]:
        """The resolved aliases with the source of each (a copy)."""
        with self._cache_lock:
            return dict(sorted(self._aliases.items()))

    def get_alias_resource_id(self) -> str | None:
        """The id of the alias ConceptMap in use (configured or discovered), or ``None``."""
        if self._server is None:
            return self.config.alias_concept_map_id
        return self._server.alias_id

    def status(self) -> dict[str, SourceStatus]:
        """Health of the ``files`` and ``server`` sources."""
        return {
            name: SourceStatus(
                name,
                health.configured,
                health.available,
                health.last_success,
                health.failing_since,
                health.last_error,
            )
            for name, health in self._health.items()
        }

    def subscribe(self, maxsize: int = 10_000) -> Subscription[MappingEvent]:
        """An async iterator of every cache change applied from now on (needs a running loop).

        A subscriber that falls more than ``maxsize`` events behind gets ``EventsDropped`` and
        should re-read the state with the ``get_*`` methods.
        """
        return self._events.subscribe(maxsize)

    # -- lifecycle -----------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Load every source, record the version of every server resource (so the first
        refresh is already conditional) and, unless ``start_tracking`` is off, start change
        tracking. A source that is down is logged and retried by the loops; it does not fail
        start-up. Calling it again does nothing."""
        if self._closed:
            raise RuntimeError("the provider is closed")
        if self._initialized:
            return
        if self._client is None and self.config.server_url is not None:
            self._client = FhirClient(
                self.config.server_url,
                token=self.config.server_token,
                timeout=self.config.server_timeout,
                retries=self.config.server_retries,
            )
            self._owns_client = True
        if self._client is not None:
            self._server = ServerSource(self._client, self.config, self.counters)
        await self._resync("initialize")
        self._initialized = True
        log.info(
            "mapping provider ready",
            mappings=len(self._cache),
            aliases=len(self._aliases),
            folder=str(self._files.folder) if self._files else None,
            server=self._client.base_url if self._client else None,
        )
        if self.config.start_tracking:
            self.start_change_tracking()

    def start_change_tracking(self) -> None:
        """Start the polling loops and the forced resync (those whose interval is not 0).
        Idempotent; needs a running event loop."""
        if self._tasks or self._closed:
            return
        loops: list[tuple[str, float, Callable[[], Awaitable[None]]]] = []
        if self._files is not None and self.config.file_poll_interval > 0:
            loops.append(("file-poll", self.config.file_poll_interval, self.poll_files))
        if self._server is not None and self.config.server_poll_interval > 0:
            loops.append(("server-poll", self.config.server_poll_interval, self.poll_server))
        if self.config.forced_resync_interval > 0:
            loops.append(("forced-resync", self.config.forced_resync_interval, self.forced_resync))
        self._tasks = [
            asyncio.create_task(self._loop(name, interval, tick), name=f"mappings:{name}")
            for name, interval, tick in loops
        ]

    async def stop_change_tracking(self) -> None:
        """Stop the loops (a tick in progress is cancelled at its next I/O; nothing half-applied
        reaches the cache)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop tracking and release the HTTP client (if the provider created it)."""
        self._closed = True
        await self.stop_change_tracking()
        if self._owns_client and self._client is not None:
            await self._client.close()

    async def __aenter__(self) -> MappingProvider:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _loop(self, name: str, interval: float, tick: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await tick()
            except Exception as exc:  # a bug, not a source failure: keep the loop alive
                log.error("tracking tick failed", loop=name, exc_info=exc)

    # -- refresh triggers ----------------------------------------------------------------------
    async def reload_mappings(self) -> None:
        """Full refresh of the mappings: re-read every mapping file and every server
        StructureMap, then apply the differences key by key (deletions included)."""
        await self._resync("reload", aliases=False)

    async def reload_aliases(self) -> None:
        """Full refresh of the aliases from every source; replaces the alias object only if the
        result differs."""
        await self._resync("reload", mappings=False)

    async def forced_resync(self) -> None:
        """Full read of every source, final state computed in memory, then applied one key at a
        time: changed entries updated, missing ones deleted, unchanged ones untouched."""
        self.counters.increment("forced_resyncs")
        await self._resync("forced-resync")

    async def refresh_mapping(self, key: str) -> Mapping | None:
        """Re-fetch one key from its real sources (its files, and a conditional read of the
        StructureMap with the cached version) and apply it only if different. Returns the
        cached mapping afterwards."""
        async with self._file_lock, self._server_lock:
            if self._files is not None and FILE_KEY.match(key):
                await self._take_files(self._files.read_key(key))
            if self._server is not None and SERVER_KEY.match(key):
                try:
                    await self._server.refresh_structure_map(key)
                except FhirClientError as exc:
                    self._failed("server", exc)
                else:
                    self._succeeded("server")
            self._apply_mappings({key}, "refresh")
        return self.get_mapping(key)

    async def poll_files(self) -> None:
        """One file-polling tick: list the folder, read only new or changed files, detect
        deletions. (The file loop calls this; call it yourself when the loop is disabled.)"""
        if self._files is None:
            return
        async with self._file_lock:
            self.counters.increment("file_polls")
            touched = await self._take_files(self._files.read_changes(full=False, kinds=ALL_KINDS))
            if touched is None:
                return
            self._apply_mappings(touched.keys, "file-poll")
            if touched.aliases_changed:
                self._apply_aliases("file-poll")

    async def poll_server(self) -> None:
        """One server-polling tick: conditional read of the alias ConceptMap, then the start-up
        StructureMap search narrowed with ``_lastUpdated`` from the server's own time of the
        previous search. (Deletions are left to the forced resync.)"""
        if self._server is None:
            return
        async with self._server_lock:
            self.counters.increment("server_polls")
            try:
                aliases_changed = await self._server.poll_aliases()
                keys = await self._server.poll_structure_maps()
            except FhirClientError as exc:
                self._failed("server", exc)
                return
            self._succeeded("server")
            self._apply_mappings(keys, "server-poll")
            if aliases_changed:
                self._apply_aliases("server-poll")

    # -- full reads ----------------------------------------------------------------------------
    async def _resync(
        self, trigger: Trigger, *, mappings: bool = True, aliases: bool = True
    ) -> None:
        wanted: set[FileKind] = set(MAPPING_KINDS) if mappings else set()
        if aliases:
            wanted.add("aliases")
        kinds = frozenset(wanted)
        files, server = self._files, self._server
        async with self._file_lock, self._server_lock:
            keys: set[str] = set()
            if files is not None:
                touched = await self._take_files(files.read_changes(full=True, kinds=kinds))
                if touched is not None:
                    keys |= touched.keys
            if server is not None:
                try:
                    if aliases:
                        await server.load_aliases()
                    if mappings:
                        keys |= await server.load_structure_maps()
                except FhirClientError as exc:
                    self._failed("server", exc)
                else:
                    self._succeeded("server")
            if mappings:
                # Final state over every key any layer or the cache knows, applied key by key.
                with self._cache_lock:
                    keys |= set(self._cache)
                if files is not None:
                    keys |= files.keys()
                if server is not None:
                    keys |= server.keys()
                self._apply_mappings(keys, trigger)
            if aliases:
                self._apply_aliases(trigger)

    async def _take_files(self, read: Awaitable[FolderRead]) -> Touched | None:
        """Finish a read of the folder and take it into the file layer; ``None`` when the folder
        failed (the layer and the cache stay as they were)."""
        assert self._files is not None
        try:
            done = await read
        except OSError as exc:
            self._failed("files", exc)
            return None
        self._succeeded("files")
        return self._files.take(done)

    # -- applying to the cache -----------------------------------------------------------------
    def _effective(self, key: str) -> Mapping | None:
        files, server = self._files, self._server
        mapping, overrides = effective_mapping(
            key,
            json_file=files.json_mapping(key) if files is not None else None,
            text_file=files.text_mapping(key) if files is not None else None,
            server=server.mapping(key) if server is not None else None,
        )
        self._warn(overrides)
        # An override that ended may be warned again when it comes back.
        for rule in MAPPING_RULES:
            if all(override.rule != rule for override in overrides):
                self._overrides.forget((rule, key))
        return mapping

    def _apply_mappings(self, keys: Iterable[str], trigger: Trigger) -> None:
        keys = set(keys)
        if not keys:
            return
        desired = {key: m for key in keys if (m := self._effective(key)) is not None}
        events: list[MappingEvent] = []
        now = self._clock.now()
        with self._cache_lock:
            current = {key: self._cache[key] for key in keys if key in self._cache}
            plan = reconcile(desired, current, same=Mapping.same_as)
            for key, mapping in plan.creates:
                self._cache[key] = mapping
                events.append(self._mapping_event("created", mapping, trigger, now))
            for key, mapping in plan.updates:
                self._cache[key] = mapping
                events.append(self._mapping_event("updated", mapping, trigger, now))
            for key in plan.deletes:
                removed = self._cache.pop(key)
                events.append(self._mapping_event("deleted", removed, trigger, now))
        self._publish(events)

    @staticmethod
    def _mapping_event(
        action: MappingAction, mapping: Mapping, trigger: Trigger, now: datetime
    ) -> MappingEvent:
        return MappingEvent(
            kind="mapping",
            action=action,
            trigger=trigger,
            at=now,
            key=mapping.key,
            source_type=mapping.source_type,
            source=mapping.source,
            text_hash=None if action == "deleted" else content_hash(mapping.text),
        )

    def _desired_aliases(self) -> dict[str, AliasEntry]:
        files, server = self._files, self._server
        merged, overrides = effective_aliases(
            built_in=self.config.built_in_aliases,
            server=server.aliases if server is not None else {},
            server_source=server.aliases_source if server is not None else None,
            file=files.aliases if files is not None else None,
            file_source=files.aliases_source if files is not None else None,
        )
        self._warn(overrides)
        return merged

    def _apply_aliases(self, trigger: Trigger) -> None:
        desired = self._desired_aliases()
        with self._cache_lock:
            current = self._aliases
            if desired == current:
                return
            plan = reconcile(desired, current)
            self._aliases = desired
        self._publish(
            [
                MappingEvent(
                    kind="aliases",
                    action="replaced",
                    trigger=trigger,
                    at=self._clock.now(),
                    added=tuple(k for k, _ in plan.creates),
                    changed=tuple(k for k, _ in plan.updates),
                    removed=tuple(plan.deletes),
                )
            ]
        )

    def _publish(self, events: list[MappingEvent]) -> None:
        if not events:
            return
        self.counters.increment("cache_writes", len(events))
        for event in events:
            log.debug(
                "cache change",
                kind=event.kind,
                action=event.action,
                key=event.key,
                trigger=event.trigger,
            )
            self._events.publish(event)

    def _warn(self, overrides: Iterable[Override]) -> None:
        for override in overrides:
            self._overrides.warn((override.rule, override.key), override.message, **override.fields)

    def _metadata(self, mapping: Mapping) -> MappingMetadata:
        if mapping.source_type == "server" and self._server is not None:
            return self._server.metadata(mapping)
        if mapping.source_type == "file" and self._files is not None:
            return self._files.metadata(mapping)
        return MappingMetadata(mapping.key, mapping.source_type, mapping.source, mapping.format)

    # -- source health -------------------------------------------------------------------------
    def _failed(self, source: str, exc: BaseException) -> None:
        health = self._health[source]
        self.counters.increment(_SOURCE_ERRORS[source])
        health.last_error = str(exc)
        if health.available:
            health.available = False
            health.failing_since = self._clock.now()
            log.warning(
                "source unavailable; keeping the last good cache",
                source=source,
                error=str(exc),
            )

    def _succeeded(self, source: str) -> None:
        health = self._health[source]
        now = self._clock.now()
        if not health.available:
            log.info(
                "source recovered",
                source=source,
                outage_seconds=round((now - health.failing_since).total_seconds(), 3)
                if health.failing_since
                else None,
            )
        health.available = True
        health.failing_since = None
        health.last_success = now
