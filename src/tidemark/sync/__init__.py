"""tidemark.sync: offline-first, multi-tier entity storage and synchronisation.

An application works on its own copy of its entities through repositories
(``DataOrchestrator.repo(name)``); tidemark keeps the tiers — a fast in-memory store, a durable
local store (SQLite file or folder) and a cloud store on a tidemark server shared by many
devices — in step, reading only the entity keys (partitions) whose hashes differ. Conflicts are
resolved per entity, last writer wins under a total order (write stamp from a hybrid logical
clock, then delete before update, then content hash), so replicas always converge. A version
stamped further ahead than the allowed clock skew is quarantined and reported, never obeyed.
"""

from ._blob import Blob, stamp_problems, validate_blob
from ._cloud_tier import CloudTier
from ._folder_tier import FolderTier
from ._ids import (
    GLOBAL_LOGICAL_KEY,
    RANDOM_ID_LENGTH,
    is_valid_id,
    key_of_id,
    logical_key_of,
    new_id,
    sanitize_logical_key,
    validate_key,
)
from ._memory_tier import MemoryStore
from ._merge import BlobMerge, Conflict, QuarantinedVersion, merge_blobs, purge_tombstones
from ._metadata import EntityCounts, KeyMetadata, TierMetadata
from ._open import open_tier
from ._orchestrator import PURGE_JOB, DataOrchestrator, SyncPair
from ._query import Query, run_query
from ._repository import Repository
from ._scheduler import SyncEvent, SyncScheduler, is_transient
from ._settings import SyncSettings
from ._sqlite_tier import SqliteTier
from ._stamps import (
    DEFAULT_MAX_CLOCK_SKEW,
    HybridClock,
    format_stamp,
    normalize_stamp,
    skew_horizon,
)
from ._strategies import DateKeyStrategy, DateRange, KeyStrategy, LogicalKeyStrategy
from ._streams import Observation
from ._tier_sync import KeyConflict, StampQuarantine, SyncResult, sync_tiers
from ._tiers import ABSENT, TIER_COUNTERS, BlobTier, EntityChange, StoreTier

__all__ = [
    "ABSENT",
    "DEFAULT_MAX_CLOCK_SKEW",
    "GLOBAL_LOGICAL_KEY",
    "PURGE_JOB",
    "RANDOM_ID_LENGTH",
    "TIER_COUNTERS",
    "Blob",
    "BlobMerge",
    "BlobTier",
    "CloudTier",
    "Conflict",
    "DataOrchestrator",
    "DateKeyStrategy",
    "DateRange",
    "EntityChange",
    "EntityCounts",
    "FolderTier",
    "HybridClock",
    "KeyConflict",
    "KeyMetadata",
    "KeyStrategy",
    "LogicalKeyStrategy",
    "MemoryStore",
    "Observation",
    "QuarantinedVersion",
    "Query",
    "Repository",
    "SqliteTier",
    "StampQuarantine",
    "StoreTier",
    "SyncEvent",
    "SyncPair",
    "SyncResult",
    "SyncScheduler",
    "SyncSettings",
    "TierMetadata",
    "format_stamp",
    "is_transient",
    "is_valid_id",
    "key_of_id",
    "logical_key_of",
    "merge_blobs",
    "new_id",
    "normalize_stamp",
    "open_tier",
    "purge_tombstones",
    "run_query",
    "sanitize_logical_key",
    "skew_horizon",
    "stamp_problems",
    "sync_tiers",
    "validate_blob",
    "validate_key",
]
