"""The self-healing mapping provider: a read-only cache kept in step with a folder and a server.

How it stays correct:

* Each source has its own *layer* (text files, JSON files, server StructureMaps; aliases from
  built-ins, the server ConceptMap and ``aliases.json``). Every path — polling, focused refresh,
  reload, forced resync — updates layers only, then recomputes the affected keys with the
  precedence rules (JSON file > text file > server) and applies the difference to the cache with
  :func:`tidemark.core.reconcile`, one key at a time. So server polling can never overwrite a
  file mapping, and deleting a file reveals the server mapping kept under it.
* The cache is never reset, a key is never deleted to be recreated, an unchanged entry is never
  written; every applied change is published as one :class:`MappingEvent`.
* One lock per source (files, server): a path that touches both takes the file lock, then the
  server lock. Loops, resyncs and user refreshes therefore never work on a source concurrently.
* A failing source keeps the last good cache; its outage is logged once and ends at the first
  good poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tidemark.core import (
    SYSTEM_CLOCK,
    Clock,
    Counters,
    EventStream,
    Subscription,
    content_hash,
    get_logger,
    iso_utc,
    reconcile,
)
from tidemark.fhir.client import FhirClient, FhirClientError, ResourceVersion

from ._folder import (
    FileKind,
    FileSignature,
    FolderScanner,
    LoadedFile,
    LoadReport,
    load_files,
)
from ._fume import FILE_KEY, SERVER_KEY, concept_map_aliases, is_alias_concept_map
from ._server import ServerMapping, ServerSource, WarnOnce
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

log = get_logger("mappings")

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
    "server_errors",
)
ALL_KINDS: frozenset[FileKind] = frozenset({"text", "json", "aliases"})
MAPPING_KINDS: frozenset[FileKind] = frozenset({"text", "json"})


@dataclass
class _Health:
    configured: bool
    available: bool = True
    last_success: datetime | None = None
    failing_since: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class _FileEntry:
    loaded: LoadedFile
    mapping: Mapping


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
        self._warnings = WarnOnce(log)
        self._client = client
        self._owns_client = False
        self._server: ServerSource | None = None
        self._folder = config.folder.absolute() if config.folder is not None else None
        self._scanner = (
            FolderScanner(self._folder, config.file_extension) if self._folder is not None else None
        )
        self._file_lock = asyncio.Lock()
        self._server_lock = asyncio.Lock()
        self._cache_lock = threading.Lock()
        # Source layers (bookkeeping, not the cache).
        self._text_files: dict[str, _FileEntry] = {}
        self._json_files: dict[str, _FileEntry] = {}
        self._alias_file: LoadedFile | None = None
        self._known: dict[str, FileSignature] = {}
        self._problems: dict[str, FileSignature] = {}  # file name -> version last warned about
        self._server_maps: dict[str, ServerMapping] = {}
        self._structure_maps_since: str | None = None
        self._structure_maps_loaded = False
        self._server_aliases: dict[str, str] = {}
        self._alias_id: str | None = config.alias_concept_map_id
        self._alias_version: ResourceVersion | None = None
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
        return self._alias_id

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
            self._server = ServerSource(
                self._client, self.config, self.counters, log, self._warnings
            )
        await self._resync("initialize")
        self._initialized = True
        log.info(
            "mapping provider ready",
            mappings=len(self._cache),
            aliases=len(self._aliases),
            folder=str(self._folder) if self._folder else None,
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
        if self._scanner is not None and self.config.file_poll_interval > 0:
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
            if self._scanner is not None and FILE_KEY.match(key):
                await self._refresh_files_of(key)
            if self._server is not None and SERVER_KEY.match(key):
                await self._refresh_structure_map(key)
            self._apply_mappings({key}, "refresh")
        return self.get_mapping(key)

    async def poll_files(self) -> None:
        """One file-polling tick: list the folder, read only new or changed files, detect
        deletions. (The file loop calls this; call it yourself when the loop is disabled.)"""
        if self._scanner is None:
            return
        async with self._file_lock:
            self.counters.increment("file_polls")
            outcome = await self._sync_files(full=False, kinds=ALL_KINDS)
            if outcome is None:
                return
            keys, aliases_changed = outcome
            self._apply_mappings(keys, "file-poll")
            if aliases_changed:
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
                aliases_changed = await self._poll_alias_concept_map()
                keys = await self._poll_structure_maps()
            except FhirClientError as exc:
                self._failed("server", exc)
                return
            self._succeeded("server")
            self._apply_mappings(keys, "server-poll")
            if aliases_changed:
                self._apply_aliases("server-poll")

    # -- files ---------------------------------------------------------------------------------
    async def _sync_files(
        self, *, full: bool, kinds: frozenset[FileKind]
    ) -> tuple[set[str], bool] | None:
        """Bring the file layers of ``kinds`` up to date; ``None`` when the folder failed."""
        scanner = self._scanner
        assert scanner is not None and self._folder is not None
        known = {} if full else self._known
        try:
            changes = await asyncio.to_thread(scanner.changes, known)
        except OSError as exc:
            self._failed("files", exc)
            return None
        self.counters.increment("files_stated", changes.stated)
        for name, reason in changes.skipped:
            self._warnings.warn(
                ("skipped-file", name), "mapping folder file skipped", file=name, reason=reason
            )
        changed = [f for f in changes.changed if f.kind in kinds]
        if full:
            listed = {f.name for f in changes.changed}
            removed = [n for n in self._known if n not in listed and self._kind_of(n) in kinds]
        else:
            removed = [n for n in changes.removed if self._kind_of(n) in kinds]
        report = (
            await asyncio.to_thread(load_files, changed, self.config.max_file_bytes, self._folder)
            if changed
            else LoadReport()
        )
        self._succeeded("files")
        return self._take_files(report, removed)

    async def _refresh_files_of(self, key: str) -> None:
        scanner = self._scanner
        assert scanner is not None and self._folder is not None
        if not await asyncio.to_thread(os.path.isdir, self._folder):
            self._failed("files", FileNotFoundError(f"mapping folder {self._folder} is missing"))
            return
        wanted = [scanner.listed("json", key), scanner.listed("text", key)]
        report = await asyncio.to_thread(
            load_files, wanted, self.config.max_file_bytes, self._folder
        )
        self._succeeded("files")
        gone = [listed.name for listed in report.gone]
        report.gone = []
        self._take_files(report, gone)

    def _take_files(self, report: LoadReport, removed: Iterable[str]) -> tuple[set[str], bool]:
        keys: set[str] = set()
        aliases_changed = False
        self.counters.increment(
            "files_read", len(report.loaded) + len(report.problems) + len(report.gone)
        )
        for loaded in report.loaded:
            listed = loaded.listed
            self._known[listed.name] = listed.signature
            self._problems.pop(listed.name, None)
            if listed.kind == "aliases":
                for warning in loaded.warnings:
                    self._warnings.warn(
                        ("alias-file", listed.signature, warning),
                        "aliases.json entry skipped",
                        problem=warning,
                    )
                self._alias_file = loaded
                aliases_changed = True
                continue
            mapping = Mapping(
                listed.key,
                loaded.text,
                "json" if listed.kind == "json" else "text",
                "file",
                str(listed.path),
            )
            layer = self._json_files if listed.kind == "json" else self._text_files
            layer[listed.key] = _FileEntry(loaded, mapping)
            keys.add(listed.key)
        for listed, problem in report.problems:
            self.counters.increment("file_errors")
            # One warning per version of a broken file, not one per tick while it stays broken.
            if self._problems.get(listed.name) != listed.signature:
                self._problems[listed.name] = listed.signature
                log.warning(
                    "mapping file not taken; keeping the previous value and retrying next tick",
                    file=str(listed.path),
                    problem=problem,
                )
        for name in [*removed, *(listed.name for listed in report.gone)]:
            kind_key = self._scanner.classify(name) if self._scanner else None
            self._known.pop(name, None)
            self._problems.pop(name, None)
            if not isinstance(kind_key, tuple):
                continue
            kind, key = kind_key
            if kind == "aliases":
                if self._alias_file is not None:
                    self._alias_file = None
                    aliases_changed = True
            elif (self._json_files if kind == "json" else self._text_files).pop(key, None):
                keys.add(key)
        return keys, aliases_changed

    def _kind_of(self, name: str) -> FileKind | None:
        kind_key = self._scanner.classify(name) if self._scanner else None
        return kind_key[0] if isinstance(kind_key, tuple) else None

    # -- server --------------------------------------------------------------------------------
    async def _poll_structure_maps(self) -> set[str]:
        server = self._server
        assert server is not None
        if not self._structure_maps_loaded or self._structure_maps_since is None:
            # Never loaded (the server was down at start-up) or the server gives no time to
            # narrow by: a full read, which also settles deletions.
            return await self._load_all_structure_maps()
        result = await server.search_structure_maps(self._structure_maps_since)
        keys: set[str] = set()
        for resource in result.resources:
            id = resource.get("id")
            if not isinstance(id, str):
                continue
            entry = server.to_mapping(resource)
            if entry is not None:
                self._server_maps[id] = entry
                keys.add(id)
            elif self._server_maps.pop(id, None) is not None:
                keys.add(id)  # it stopped being a FUME mapping
        self._structure_maps_since = result.changes_since()
        if self._structure_maps_since is None:
            self._warnings.warn(
                "no-server-time",
                "the server reports no time with its searches; every poll reads all StructureMaps",
            )
        return keys

    async def _load_all_structure_maps(self) -> set[str]:
        server = self._server
        assert server is not None
        result = await server.search_structure_maps(None)
        fresh: dict[str, ServerMapping] = {}
        for resource in result.resources:
            entry = server.to_mapping(resource)
            if entry is not None:
                fresh[entry.mapping.key] = entry
        keys = set(self._server_maps) | set(fresh)
        self._server_maps = fresh
        self._structure_maps_since = result.changes_since()
        self._structure_maps_loaded = True
        return keys

    async def _refresh_structure_map(self, key: str) -> None:
        server = self._server
        assert server is not None
        held = self._server_maps.get(key)
        try:
            result = await server.read_structure_map(key, held.version if held else None)
        except FhirClientError as exc:
            self._failed("server", exc)
            return
        self._succeeded("server")
        if result.status == 200 and result.resource is not None:
            entry = server.to_mapping(result.resource, result.version)
            if entry is not None:
                self._server_maps[key] = entry
            else:
                self._server_maps.pop(key, None)
        elif result.missing:
            self._server_maps.pop(key, None)

    async def _poll_alias_concept_map(self) -> bool:
        """Returns whether the server aliases may have changed."""
        server = self._server
        assert server is not None
        if self._alias_id is None:
            return await self._load_server_aliases()
        result = await server.read_alias_concept_map(self._alias_id, self._alias_version)
        if result.status == 304:
            return False
        discovered = self.config.alias_concept_map_id is None
        # A discovered ConceptMap that lost its FUME useContext is no longer the alias one.
        if (
            result.status == 200
            and result.resource is not None
            and (not discovered or is_alias_concept_map(result.resource))
        ):
            self._take_alias_concept_map(result.resource, result.version)
            return True
        # 404 / 410: the ConceptMap is gone. Forget a discovered id, then refresh fully.
        if discovered:
            log.info("alias ConceptMap is gone; searching for another", id=self._alias_id)
            self._alias_id = None
        self._alias_version = None
        self._server_aliases = {}
        await self._load_server_aliases()
        return True

    async def _load_server_aliases(self) -> bool:
        """Full read of the server aliases (discovery search, or an unconditional read of the
        configured id). Returns True (the caller recomputes and writes only on a difference)."""
        server = self._server
        assert server is not None
        configured = self.config.alias_concept_map_id
        if configured is not None:
            result = await server.read_alias_concept_map(configured, None)
            if result.status == 200 and result.resource is not None:
                self._take_alias_concept_map(result.resource, result.version)
            else:
                self._server_aliases, self._alias_version = {}, None
            return True
        resource = await server.discover_alias_concept_map()
        if resource is None:
            self._alias_id, self._alias_version, self._server_aliases = None, None, {}
            return True
        self._take_alias_concept_map(resource, ResourceVersion.of(resource))
        return True

    def _take_alias_concept_map(self, resource: dict[str, Any], version: ResourceVersion) -> None:
        id = resource.get("id")
        if isinstance(id, str):
            self._alias_id = id
        aliases, warnings = concept_map_aliases(resource)
        for warning in warnings:
            self._warnings.warn(
                ("alias-cm", self._alias_id, version, warning),
                "alias ConceptMap entry skipped",
                id=self._alias_id,
                problem=warning,
            )
        self._server_aliases = aliases
        self._alias_version = version

    # -- full reads ----------------------------------------------------------------------------
    async def _resync(
        self, trigger: Trigger, *, mappings: bool = True, aliases: bool = True
    ) -> None:
        wanted: set[FileKind] = set(MAPPING_KINDS) if mappings else set()
        if aliases:
            wanted.add("aliases")
        kinds = frozenset(wanted)
        async with self._file_lock, self._server_lock:
            keys: set[str] = set()
            if self._scanner is not None:
                outcome = await self._sync_files(full=True, kinds=kinds)
                if outcome is not None:
                    keys |= outcome[0]
            if self._server is not None:
                try:
                    if aliases:
                        await self._load_server_aliases()
                    if mappings:
                        keys |= await self._load_all_structure_maps()
                except FhirClientError as exc:
                    self._failed("server", exc)
                else:
                    self._succeeded("server")
            if mappings:
                # Final state over every key any layer or the cache knows, applied key by key.
                with self._cache_lock:
                    keys |= set(self._cache)
                keys |= set(self._text_files) | set(self._json_files) | set(self._server_maps)
                self._apply_mappings(keys, trigger)
            if aliases:
                self._apply_aliases(trigger)

    # -- applying to the cache -----------------------------------------------------------------
    def _effective(self, key: str) -> Mapping | None:
        json_file = self._json_files.get(key)
        text_file = self._text_files.get(key)
        server = self._server_maps.get(key)
        if json_file is not None and text_file is not None:
            self._warnings.warn(
                ("json-over-text", key),
                "JSON mapping file overrides the text mapping file with the same key",
                key=key,
            )
        else:
            self._warnings.forget(("json-over-text", key))
        chosen = json_file or text_file
        if chosen is not None and server is not None:
            self._warnings.warn(
                ("file-over-server", key),
                "file mapping overrides the server mapping with the same key",
                key=key,
                file=chosen.mapping.source,
                server=server.mapping.source,
            )
        else:
            self._warnings.forget(("file-over-server", key))
        if chosen is not None:
            return chosen.mapping
        return server.mapping if server is not None else None

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
        merged: dict[str, AliasEntry] = {
            key: AliasEntry(value, "built_in", "built_in")
            for key, value in self.config.built_in_aliases.items()
        }
        if self._server_aliases and self._server is not None and self._alias_id is not None:
            source = self._server.resource_url("ConceptMap", self._alias_id)
            for key, value in self._server_aliases.items():
                merged[key] = AliasEntry(value, "server", source)
        if self._alias_file is not None and self._alias_file.aliases is not None:
            source = str(self._alias_file.listed.path)
            for key, value in self._alias_file.aliases.items():
                if key in self._server_aliases:
                    self._warnings.warn(
                        ("alias-file-over-server", key),
                        "aliases.json overrides the server alias with the same key",
                        key=key,
                    )
                merged[key] = AliasEntry(value, "file", source)
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

    def _metadata(self, mapping: Mapping) -> MappingMetadata:
        if mapping.source_type == "server":
            entry = self._server_maps.get(mapping.key)
            version = entry.version if entry is not None else ResourceVersion()
            return MappingMetadata(
                mapping.key,
                "server",
                mapping.source,
                mapping.format,
                version.version_id,
                version.last_updated,
                entry.name if entry else None,
                entry.url if entry else None,
            )
        layer = self._json_files if mapping.format == "json" else self._text_files
        file_entry = layer.get(mapping.key)
        modified = None
        if file_entry is not None:
            moment = datetime.fromtimestamp(file_entry.loaded.listed.signature.mtime_ns / 1e9, UTC)
            modified = iso_utc(moment, timespec="milliseconds")
        return MappingMetadata(mapping.key, "file", mapping.source, mapping.format, None, modified)

    # -- source health -------------------------------------------------------------------------
    def _failed(self, source: str, exc: BaseException) -> None:
        health = self._health[source]
        self.counters.increment(f"{source}_errors")
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
