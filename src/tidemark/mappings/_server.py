"""The FHIR server as a mapping source: its FUME StructureMaps and alias ConceptMap, kept current.

Thin I/O over :class:`tidemark.fhir.client.FhirClient` plus what the server layer remembers: the
StructureMaps taken with their version metadata, the ``_lastUpdated`` horizon that narrows the
next search, and the alias ConceptMap's id, version and aliases. Which source wins a key is
decided by the precedence rules, what reaches the cache by the provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tidemark.core import Counters
from tidemark.fhir.client import (
    FhirClient,
    FhirClientError,
    FhirRequestError,
    ReadResult,
    ResourceVersion,
    SearchResult,
)

from ._fume import (
    SERVER_KEY,
    concept_map_aliases,
    is_alias_concept_map,
    is_fume_mapping,
    structure_map_expression,
)
from ._log import WarnOnce, log
from ._settings import MappingsConfig
from ._types import Mapping as CachedMapping
from ._types import MappingMetadata


@dataclass(frozen=True, slots=True)
class ServerMapping:
    """A StructureMap as the server layer holds it: the mapping and its version metadata."""

    mapping: CachedMapping
    version: ResourceVersion
    name: str | None
    url: str | None


class ServerSource:
    """The FHIR server as a mapping source: the FUME StructureMaps taken (with their versions),
    the ``_lastUpdated`` horizon of the StructureMap search, and the alias ConceptMap's id,
    version and aliases.

    The ``load_*`` / ``poll_*`` / ``refresh_*`` methods raise
    :class:`~tidemark.fhir.client.FhirClientError` when the server fails; what was taken before
    the failure stays. Searches and reads are counted. One caller at a time (the provider's
    server lock).
    """

    def __init__(self, client: FhirClient, config: MappingsConfig, counters: Counters) -> None:
        self.client = client
        self.config = config
        self._counters = counters
        self._warnings = WarnOnce()
        self._structure_map_criteria = dict(config.structure_map_search)
        self._alias_criteria = dict(config.alias_search)
        self._maps: dict[str, ServerMapping] = {}
        self._maps_loaded = False
        self._maps_since: str | None = None
        self._alias_id: str | None = config.alias_concept_map_id
        self._alias_version: ResourceVersion | None = None
        self._aliases: dict[str, str] = {}

    # -- what the server holds -----------------------------------------------------------------
    def keys(self) -> set[str]:
        """Every key with a StructureMap taken."""
        return set(self._maps)

    def mapping(self, key: str) -> CachedMapping | None:
        """The mapping of the StructureMap ``key``, if taken."""
        entry = self._maps.get(key)
        return entry.mapping if entry is not None else None

    def metadata(self, mapping: CachedMapping) -> MappingMetadata:
        """The metadata of a server mapping: the StructureMap's ``meta``, name and url."""
        entry = self._maps.get(mapping.key)
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

    @property
    def alias_id(self) -> str | None:
        """The id of the alias ConceptMap in use (configured or discovered), or ``None``."""
        return self._alias_id

    @property
    def aliases(self) -> dict[str, str]:
        """The aliases of the alias ConceptMap (empty when there is none)."""
        return self._aliases

    @property
    def aliases_source(self) -> str | None:
        """The URL of the alias ConceptMap in use, or ``None``."""
        if self._alias_id is None:
            return None
        return self.resource_url("ConceptMap", self._alias_id)

    def resource_url(self, resource_type: str, id: str) -> str:
        """The URL that names a resource of this server (the ``source`` of its entries)."""
        return self.client.url(resource_type, id)

    # -- StructureMaps -------------------------------------------------------------------------
    async def load_structure_maps(self) -> set[str]:
        """Full read of the StructureMaps (deletions included); returns every key that was or
        is held, and remembers the server's time as the horizon of the next poll."""
        result = await self._search_structure_maps(None)
        fresh: dict[str, ServerMapping] = {}
        for resource in result.resources:
            entry = self._to_mapping(resource)
            if entry is not None:
                fresh[entry.mapping.key] = entry
        keys = set(self._maps) | set(fresh)
        self._maps = fresh
        self._maps_since = result.changes_since()
        self._maps_loaded = True
        return keys

    async def poll_structure_maps(self) -> set[str]:
        """The StructureMaps changed since the horizon (a full read when there is none); returns
        the keys that changed. Deletions are left to the next full read."""
        if not self._maps_loaded or self._maps_since is None:
            # Never loaded (the server was down at start-up) or the server gives no time to
            # narrow by: a full read, which also settles deletions.
            return await self.load_structure_maps()
        result = await self._search_structure_maps(self._maps_since)
        keys: set[str] = set()
        for resource in result.resources:
            id = resource.get("id")
            if not isinstance(id, str):
                continue
            entry = self._to_mapping(resource)
            if entry is not None:
                self._maps[id] = entry
                keys.add(id)
            elif self._maps.pop(id, None) is not None:
                keys.add(id)  # it stopped being a FUME mapping
        self._maps_since = result.changes_since()
        if self._maps_since is None:
            self._warnings.warn(
                "no-server-time",
                "the server reports no time with its searches; every poll reads all StructureMaps",
            )
        return keys

    async def refresh_structure_map(self, key: str) -> None:
        """Conditional read of one StructureMap with the version held; a 404/410, or a resource
        that is no longer a FUME mapping, drops it."""
        held = self._maps.get(key)
        result = await self._read("StructureMap", key, held.version if held else None)
        if result.status == 200 and result.resource is not None:
            entry = self._to_mapping(result.resource, result.version)
            if entry is not None:
                self._maps[key] = entry
            else:
                self._maps.pop(key, None)
        elif result.missing:
            self._maps.pop(key, None)

    def _to_mapping(
        self, resource: Mapping[str, Any], version: ResourceVersion | None = None
    ) -> ServerMapping | None:
        """The server mapping a StructureMap carries, or ``None`` when it is not a FUME mapping
        (or its id is not a valid key, which is logged once)."""
        id = resource.get("id")
        if not isinstance(id, str) or not is_fume_mapping(resource):
            return None
        if not SERVER_KEY.match(id):
            self._warnings.warn(
                ("server-key", id),
                "StructureMap id is not a valid mapping key; skipped",
                id=id,
                pattern=SERVER_KEY.pattern,
            )
            return None
        expression = structure_map_expression(resource)
        assert expression is not None
        name, url = resource.get("name"), resource.get("url")
        return ServerMapping(
            CachedMapping(id, expression, "text", "server", self.resource_url("StructureMap", id)),
            version or ResourceVersion.of(resource),
            name if isinstance(name, str) else None,
            url if isinstance(url, str) else None,
        )

    async def _search_structure_maps(self, since: str | None) -> SearchResult:
        """The start-up StructureMap search, narrowed by ``_lastUpdated=since`` when given.

        When the server rejects the configured criteria (400), they are dropped for good and
        every StructureMap is fetched; the FUME filter is applied client-side anyway.
        """
        while True:
            params = [
                *self._structure_map_criteria.items(),
                ("_count", str(self.config.server_page_size)),
            ]
            if since is not None:
                params.append(("_lastUpdated", since))
            try:
                result = await self.client.search("StructureMap", params)
            except FhirRequestError as exc:
                if exc.http_status == 400 and self._structure_map_criteria:
                    log.info(
                        "server rejected the StructureMap search criteria; filtering client-side",
                        criteria=self._structure_map_criteria,
                        error=str(exc),
                    )
                    self._structure_map_criteria = {}
                    continue
                raise
            self._counters.increment("searches")
            self._counters.increment("resources_received", len(result.resources))
            return result

    # -- the alias ConceptMap ------------------------------------------------------------------
    async def load_aliases(self) -> None:
        """Full read of the server aliases: an unconditional read of the configured ConceptMap,
        or the discovery search."""
        configured = self.config.alias_concept_map_id
        if configured is not None:
            result = await self._read("ConceptMap", configured, None)
            if result.status == 200 and result.resource is not None:
                self._take_alias_concept_map(result.resource, result.version)
            else:
                self._aliases, self._alias_version = {}, None
            return
        resource = await self._discover_alias_concept_map()
        if resource is None:
            self._alias_id, self._alias_version, self._aliases = None, None, {}
            return
        self._take_alias_concept_map(resource, ResourceVersion.of(resource))

    async def poll_aliases(self) -> bool:
        """Conditional read of the alias ConceptMap in use (a full read when there is none);
        returns whether the server aliases may have changed."""
        if self._alias_id is None:
            await self.load_aliases()
            return True
        result = await self._read("ConceptMap", self._alias_id, self._alias_version)
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
        self._aliases = {}
        await self.load_aliases()
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
        self._aliases = aliases
        self._alias_version = version

    async def _discover_alias_concept_map(self) -> dict[str, Any] | None:
        """Find the alias ConceptMap by search (client-side filtered by its FUME useContext).

        ``None`` when there is none, or more than one (logged once: which one would win is not
        knowable, so none does).
        """
        while True:
            try:
                result = await self.client.search("ConceptMap", list(self._alias_criteria.items()))
            except FhirRequestError as exc:
                fallback = dict(self.config.alias_search_fallback)
                if exc.http_status == 400 and self._alias_criteria != fallback:
                    log.info(
                        "server rejected the alias ConceptMap search; using the fallback search",
                        criteria=self._alias_criteria,
                        fallback=fallback,
                        error=str(exc),
                    )
                    self._alias_criteria = fallback
                    continue
                raise
            self._counters.increment("searches")
            self._counters.increment("resources_received", len(result.resources))
            break
        found = [r for r in result.resources if is_alias_concept_map(r)]
        if len(found) > 1:
            ids = sorted(str(r.get("id")) for r in found)
            self._warnings.warn(
                ("alias-ambiguous", tuple(ids)),
                "several alias ConceptMaps found; configure alias_concept_map_id to pick one",
                ids=ids,
            )
            return None
        return found[0] if found else None

    async def _read(self, resource_type: str, id: str, known: ResourceVersion | None) -> ReadResult:
        """Conditional read of one resource, counted by outcome."""
        try:
            result = await self.client.read(resource_type, id, known=known)
        except FhirClientError:
            self._counters.increment("conditional_reads_error")
            raise
        self._counters.increment(f"conditional_reads_{result.status}")
        return result
