"""tidemark.mappings: the self-healing mapping provider.

A read-only, in-process cache of mappings (text and JSON files of a folder, FUME StructureMaps
of a FHIR server) and aliases (built-ins < a server ConceptMap < ``aliases.json``) that keeps
itself aligned with its sources by stat-based file polling, conditional-read server polling and
a periodic forced resync — never by a consumer telling it what changed::

    provider = MappingProvider(MappingsConfig(folder=Path("mappings"), server_url="http://host/fhir"))
    await provider.initialize()
    provider.get_mapping("patientIn")
    async for event in provider.subscribe():
        ...
"""

from ._fume import (
    BUILT_IN_ALIASES,
    MAPPING_EXPRESSION_URL,
    concept_map_aliases,
    is_alias_concept_map,
    is_fume_mapping,
    structure_map_expression,
)
from ._provider import MappingProvider
from ._settings import MappingsConfig
from ._types import AliasEntry, Mapping, MappingEvent, MappingMetadata, SourceStatus

__all__ = [
    "BUILT_IN_ALIASES",
    "MAPPING_EXPRESSION_URL",
    "AliasEntry",
    "Mapping",
    "MappingEvent",
    "MappingMetadata",
    "MappingProvider",
    "MappingsConfig",
    "SourceStatus",
    "concept_map_aliases",
    "is_alias_concept_map",
    "is_fume_mapping",
    "structure_map_expression",
]
