"""The FHIR facade's search index: the indexer of ``fhir:`` collections and search conditions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tidemark.core import get_logger
from tidemark.fhir import search as fhir_search
from tidemark.fhir.search import KeyValue, SearchParameterSet, approximate, extract
from tidemark.store import (
    AnyOf,
    Condition,
    IndexEntry,
    IndexStatus,
    KeyContains,
    KeyEntry,
    KeyIn,
    KeyPrefix,
    Missing,
    Not,
    RangeEntry,
    RangeMatch,
    Store,
)

from ._fhir_model import COLLECTION_PREFIX

log = get_logger("fhir.index")

#: The version of what :class:`FhirIndexer` computes from a parameter set: bump it when the
#: extraction changes, so that stores reindex.
EXTRACTION_VERSION = "1"


class FhirIndexer:
    """Index entries of FHIR resources (collections ``fhir:<Type>``): every supported search
    parameter of the resource's type, evaluated with FHIRPath. Pure and thread-safe."""

    def __init__(self, parameters: SearchParameterSet) -> None:
        self.parameters = parameters
        self.fingerprint = f"fhir-search/{EXTRACTION_VERSION}:{parameters.fingerprint}"

    def entries(self, collection: str, body: Mapping[str, Any]) -> Iterator[IndexEntry]:
        """The entries of a stored resource body (stored without ``id`` and ``resourceType``)."""
        resource_type = collection.removeprefix(COLLECTION_PREFIX)
        resource = {**body, "resourceType": resource_type}
        found, _ = extract(resource, self.parameters.for_type(resource_type).values())
        for entry in found:
            if isinstance(entry, KeyValue):
                yield KeyEntry(entry.name, entry.key)
            else:
                yield RangeEntry(entry.name, entry.unit, entry.low, entry.high)


async def register_fhir_index(store: Store, parameters: SearchParameterSet) -> IndexStatus:
    """Index ``fhir:`` collections of ``store`` by ``parameters``.

    When the store indexed them with other parameters (another package, another tidemark),
    they are reindexed in the background; the returned status tells the progress.
    """
    status = await store.register_indexer(COLLECTION_PREFIX, FhirIndexer(parameters))
    log.info(
        "fhir search index",
        parameters=len(parameters),
        fingerprint=status.fingerprint,
        ready=status.ready,
    )
    return status


def store_condition(condition: fhir_search.Condition) -> Condition:
    """The store's form of a search condition (``ap`` widened here, as the store expects)."""
    if isinstance(condition, fhir_search.KeyIn):
        return KeyIn(condition.name, condition.keys)
    if isinstance(condition, fhir_search.KeyPrefix):
        return KeyPrefix(condition.name, condition.prefix)
    if isinstance(condition, fhir_search.KeyContains):
        return KeyContains(condition.name, condition.text)
    if isinstance(condition, fhir_search.Missing):
        return Missing(condition.name, condition.missing)
    if isinstance(condition, fhir_search.Not):
        return Not(store_condition(condition.condition))
    if isinstance(condition, fhir_search.AnyOf):
        return AnyOf(store_condition(c) for c in condition.conditions)
    low, high = condition.low, condition.high
    if condition.op == "ap":
        low, high = approximate(low, high)
    return RangeMatch(condition.name, condition.op, low, high, condition.unit)
