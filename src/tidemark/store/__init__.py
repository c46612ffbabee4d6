"""tidemark.store: the change-tracked document store.

Ed-Fi resources (natural keys, references, identity cascades) and generic collections (the FHIR
facade, the sync server) in one store on SQLite or PostgreSQL. Every document carries
representation stamps (``ContentVersion``/``IdentityVersion`` from one global change-version
sequence, and their timestamps); every change appends a journal row and keeps the previous
representation in history; every delete leaves a tombstone; no-op writes allocate nothing. A
search index (entries from indexers per collection prefix, written with each document) answers
query-field filters and searches with index lookups.
"""

from ._index import (
    AnyOf,
    Condition,
    IndexEntry,
    Indexer,
    IndexOrder,
    IndexStatus,
    KeyContains,
    KeyEntry,
    KeyIn,
    KeyPrefix,
    Missing,
    Not,
    RangeEntry,
    RangeMatch,
)
from ._model import (
    DescriptorReferenceSpec,
    ReferenceSpec,
    ResourceModel,
    ResourceSpec,
    descriptor_uri,
    load_model,
    referential_id,
)
from ._paths import JsonPath, parse_path
from ._query_fields import QueryField
from ._store import Store, open_store
from ._types import (
    ChangeVersions,
    Cursor,
    DeleteDocument,
    HistoryEntry,
    KeyChange,
    Page,
    PutDocument,
    SearchAfter,
    StoredDocument,
    Tombstone,
    Unmatched,
    WriteOutcome,
    stamp_text,
)

__all__ = [
    "AnyOf",
    "ChangeVersions",
    "Condition",
    "Cursor",
    "DeleteDocument",
    "DescriptorReferenceSpec",
    "HistoryEntry",
    "IndexEntry",
    "IndexOrder",
    "IndexStatus",
    "Indexer",
    "JsonPath",
    "KeyChange",
    "KeyContains",
    "KeyEntry",
    "KeyIn",
    "KeyPrefix",
    "Missing",
    "Not",
    "Page",
    "PutDocument",
    "QueryField",
    "RangeEntry",
    "RangeMatch",
    "ReferenceSpec",
    "ResourceModel",
    "ResourceSpec",
    "SearchAfter",
    "Store",
    "StoredDocument",
    "Tombstone",
    "Unmatched",
    "WriteOutcome",
    "descriptor_uri",
    "load_model",
    "open_store",
    "parse_path",
    "referential_id",
    "stamp_text",
]
