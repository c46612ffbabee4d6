"""The FHIR server as a mapping source: StructureMap searches and reads, the alias ConceptMap.

Thin I/O over :class:`tidemark.fhir.client.FhirClient`; what the results mean for the cache is
decided by the provider.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from tidemark.core import ComponentLogger, Counters
from tidemark.fhir.client import (
    FhirClient,
    FhirClientError,
    FhirRequestError,
    ReadResult,
    ResourceVersion,
    SearchResult,
)

from ._fume import SERVER_KEY, is_alias_concept_map, is_fume_mapping, structure_map_expression
from ._settings import MappingsConfig
from ._types import Mapping as CachedMapping


class WarnOnce:
    """Log a warning the first time a key is seen; ``forget`` lets it be warned again."""

    def __init__(self, log: ComponentLogger) -> None:
        self._log = log
        self._seen: set[Hashable] = set()

    def warn(self, once: Hashable, message: str, /, **fields: Any) -> None:
        if once not in self._seen:
            self._seen.add(once)
            self._log.warning(message, **fields)

    def forget(self, once: Hashable) -> None:
        self._seen.discard(once)


@dataclass(frozen=True, slots=True)
class ServerMapping:
    """A StructureMap as the server layer holds it: the mapping and its version metadata."""

    mapping: CachedMapping
    version: ResourceVersion
    name: str | None
    url: str | None


class ServerSource:
    """Searches and reads mapping resources on one FHIR server, counting what it does."""

    def __init__(
        self,
        client: FhirClient,
        config: MappingsConfig,
        counters: Counters,
        log: ComponentLogger,
        warnings: WarnOnce,
    ) -> None:
        self.client = client
        self.config = config
        self.counters = counters
        self.log = log
        self.warnings = warnings
        self._structure_map_criteria = dict(config.structure_map_search)
        self._alias_criteria = dict(config.alias_search)

    def resource_url(self, resource_type: str, id: str) -> str:
        """The URL that names a resource of this server (the ``source`` of its entries)."""
        return self.client.url(resource_type, id)

    # -- StructureMaps -------------------------------------------------------------------------
    def to_mapping(
        self, resource: Mapping[str, Any], version: ResourceVersion | None = None
    ) -> ServerMapping | None:
        """The server mapping a StructureMap carries, or ``None`` when it is not a FUME mapping
        (or its id is not a valid key, which is logged once)."""
        id = resource.get("id")
        if not isinstance(id, str) or not is_fume_mapping(resource):
            return None
        if not SERVER_KEY.match(id):
            self.warnings.warn(
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

    async def search_structure_maps(self, since: str | None) -> SearchResult:
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
                    self.log.info(
                        "server rejected the StructureMap search criteria; filtering client-side",
                        criteria=self._structure_map_criteria,
                        error=str(exc),
                    )
                    self._structure_map_criteria = {}
                    continue
                raise
            self.counters.increment("searches")
            self.counters.increment("resources_received", len(result.resources))
            return result

    async def read_structure_map(self, id: str, known: ResourceVersion | None) -> ReadResult:
        """Conditional read of one StructureMap (counted by outcome)."""
        return await self._read("StructureMap", id, known)

    # -- the alias ConceptMap ------------------------------------------------------------------
    async def discover_alias_concept_map(self) -> dict[str, Any] | None:
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
                    self.log.info(
                        "server rejected the alias ConceptMap search; using the fallback search",
                        criteria=self._alias_criteria,
                        fallback=fallback,
                        error=str(exc),
                    )
                    self._alias_criteria = fallback
                    continue
                raise
            self.counters.increment("searches")
            self.counters.increment("resources_received", len(result.resources))
            break
        found = [r for r in result.resources if is_alias_concept_map(r)]
        if len(found) > 1:
            ids = sorted(str(r.get("id")) for r in found)
            self.warnings.warn(
                ("alias-ambiguous", tuple(ids)),
                "several alias ConceptMaps found; configure alias_concept_map_id to pick one",
                ids=ids,
            )
            return None
        return found[0] if found else None

    async def read_alias_concept_map(self, id: str, known: ResourceVersion | None) -> ReadResult:
        """Conditional read of the alias ConceptMap (counted by outcome)."""
        return await self._read("ConceptMap", id, known)

    async def _read(self, resource_type: str, id: str, known: ResourceVersion | None) -> ReadResult:
        try:
            result = await self.client.read(resource_type, id, known=known)
        except FhirClientError:
            self.counters.increment("conditional_reads_error")
            raise
        self.counters.increment(f"conditional_reads_{result.status}")
        return result
