"""The directional sync of two tiers, A -> B: compare metadata, read only differing keys, merge,
write B, then write A only where A has not changed meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tidemark.core import canonical_hash, get_logger, partition_keys

from ._blob import Blob
from ._merge import BlobMerge, ConflictReason, merge_blobs
from ._metadata import TierMetadata
from ._stamps import StampFault
from ._tiers import ABSENT, BlobTier

_log = get_logger("sync")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyConflict:
    """A conflict resolved by a sync: ``winner`` is the name of the tier whose version won."""

    key: str
    entity_name: str
    entity_id: str
    winner: str
    reason: ConflictReason


@dataclass(frozen=True, slots=True)
class StampQuarantine:
    """A version a sync set aside because its stamp cannot be trusted (see
    :func:`~tidemark.sync.merge_blobs`): ``tier`` held it under ``key``; ``version`` is the
    entity (or the tombstone's stamp) as it was, for the application to inspect or re-save."""

    key: str
    tier: str
    entity_name: str
    entity_id: str
    stamp: Any
    fault: StampFault
    version: Any


@dataclass(slots=True)
class SyncResult:
    """What one directional sync did.

    ``copied_to_target`` / ``copied_to_source`` count keys held by one side only and copied to
    the other; ``left_for_hydration`` counts keys only the target holds that a one-way sync left
    alone; ``merged`` counts keys both held with different hashes. ``deferred`` lists keys not
    written because a side changed during the sync (they are retried by the next sync).
    ``quarantined`` lists versions set aside for untrustworthy stamps.
    """

    source: str
    target: str
    noop: bool = False
    keys_compared: int = 0
    copied_to_target: int = 0
    copied_to_source: int = 0
    left_for_hydration: int = 0
    merged: int = 0
    blobs_read: int = 0
    written_source: list[str] = field(default_factory=list)
    written_target: list[str] = field(default_factory=list)
    entities_changed: int = 0
    conflicts: list[KeyConflict] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    quarantined: list[StampQuarantine] = field(default_factory=list)
    expired_dropped: int = 0
    duration: float = 0.0
    source_metadata: TierMetadata | None = field(default=None, repr=False)
    target_metadata: TierMetadata | None = field(default=None, repr=False)

    def counts(self) -> dict[str, Any]:
        """The figures as plain JSON (for events and logs)."""
        return {
            "source": self.source,
            "target": self.target,
            "noop": self.noop,
            "keys_compared": self.keys_compared,
            "copied_to_target": self.copied_to_target,
            "copied_to_source": self.copied_to_source,
            "left_for_hydration": self.left_for_hydration,
            "merged": self.merged,
            "blobs_read": self.blobs_read,
            "written_source": len(self.written_source),
            "written_target": len(self.written_target),
            "entities_changed": self.entities_changed,
            "conflicts": len(self.conflicts),
            "deferred": len(self.deferred),
            "quarantined": len(self.quarantined),
            "expired_dropped": self.expired_dropped,
            "duration_ms": round(self.duration * 1000, 3),
        }


@dataclass(slots=True)
class _KeyWork:
    key: str
    blob_a: Blob | None = None
    blob_b: Blob | None = None
    hash_a: str | None = None
    hash_b: str | None = None
    merge: BlobMerge | None = None
    deferred: bool = False


async def sync_tiers(
    source: BlobTier,
    target: BlobTier,
    *,
    two_way: bool = True,
    expired_before: str | None = None,
    batch_size: int = 256,
    on_conflict: Callable[[KeyConflict], None] | None = None,
    not_after: str | None = None,
    on_quarantine: Callable[[StampQuarantine], None] | None = None,
) -> SyncResult:
    """Bring ``target`` (B) in step with ``source`` (A), and A with B where they differ.

    1. Read both metadata; equal ``updated_at`` and root hash: stop (nothing is read).
    2. Keys only in A are copied to B; keys only in B are copied to A when ``two_way``, else left
       for hydration; keys in both with different hashes are merged. Only these blobs are read.
    3. Merge entity by entity (:func:`merge_blobs`, newest wins under a total order).
    4. Write B's changed blobs (each conditional on the hash that was read); re-read A's metadata
       and write A's changed blobs only for keys A has not changed since (the stale-overwrite
       guard); a key that fails either check is deferred to the next sync.
    5. Idempotent: a second run over unchanged tiers writes nothing.

    With ``not_after`` (a stamp: the local clock plus the allowed skew) versions stamped later
    or not stamped with a date-time are quarantined: they never win, the tier holding them is
    rewritten without them, and each is reported in ``result.quarantined``, to
    ``on_quarantine`` and in a warning naming the key, tier, entity and stamp.

    Keys are processed in batches of ``batch_size`` (one ``load_many`` / ``store_many`` per tier
    and batch). Tier errors propagate (keys already written stay written; a rerun resumes).
    """
    started = time.perf_counter()
    meta_a, meta_b = await asyncio.gather(source.metadata(), target.metadata())
    result = SyncResult(source.name, target.name, source_metadata=meta_a, target_metadata=meta_b)
    if meta_a.same_content(meta_b):
        result.noop = True
        result.keys_compared = len(meta_a)
        result.duration = time.perf_counter() - started
        return result
    parts = partition_keys(meta_a.keys(), meta_b.keys())
    result.keys_compared = len(parts.only_a) + len(parts.only_b) + len(parts.both)
    work = list(parts.only_a)
    result.copied_to_target = len(parts.only_a)
    if two_way:
        work += parts.only_b
        result.copied_to_source = len(parts.only_b)
    else:
        result.left_for_hydration = len(parts.only_b)
    differing = [key for key in parts.both if meta_a.hash_of(key) != meta_b.hash_of(key)]
    result.merged = len(differing)
    work = sorted(work + differing)
    for offset in range(0, len(work), max(1, batch_size)):
        batch = [_KeyWork(key) for key in work[offset : offset + max(1, batch_size)]]
        await _sync_batch(
            source=source,
            target=target,
            meta_a=meta_a,
            meta_b=meta_b,
            batch=batch,
            result=result,
            expired_before=expired_before,
            not_after=not_after,
        )
        for item in batch:
            if item.merge is None:
                continue
            for version in item.merge.quarantined:
                found = StampQuarantine(
                    item.key,
                    source.name if version.side == "a" else target.name,
                    version.entity_name,
                    version.entity_id,
                    version.stamp,
                    version.fault,
                    version.version,
                )
                result.quarantined.append(found)
                _log.warning(
                    "version quarantined: its stamp cannot be trusted",
                    key=found.key,
                    tier=found.tier,
                    entity=found.entity_name,
                    id=found.entity_id,
                    stamp=str(found.stamp),
                    fault=found.fault,
                )
                if on_quarantine is not None:
                    on_quarantine(found)
            result.entities_changed += item.merge.changes_a + item.merge.changes_b
            result.expired_dropped += item.merge.expired_dropped
            if item.deferred:
                result.deferred.append(item.key)
                continue
            for conflict in item.merge.conflicts:
                winner = source.name if conflict.winner == "a" else target.name
                resolved = KeyConflict(
                    item.key, conflict.entity_name, conflict.entity_id, winner, conflict.reason
                )
                result.conflicts.append(resolved)
                if on_conflict is not None:
                    on_conflict(resolved)
    result.duration = time.perf_counter() - started
    _log.info("sync finished", **result.counts())
    return result


async def _sync_batch(
    *,
    source: BlobTier,
    target: BlobTier,
    meta_a: TierMetadata,
    meta_b: TierMetadata,
    batch: Sequence[_KeyWork],
    result: SyncResult,
    expired_before: str | None,
    not_after: str | None,
) -> None:
    in_a = [item for item in batch if item.key in meta_a]
    in_b = [item for item in batch if item.key in meta_b]
    blobs_a, blobs_b = await asyncio.gather(
        source.load_many([item.key for item in in_a]),
        target.load_many([item.key for item in in_b]),
    )
    for item, loaded in zip(in_a, blobs_a, strict=True):
        item.blob_a = loaded
    for item, loaded in zip(in_b, blobs_b, strict=True):
        item.blob_b = loaded
    for item in batch:
        result.blobs_read += (item.blob_a is not None) + (item.blob_b is not None)
        # The hash of what was actually read is the version the writes are conditional on.
        item.hash_a = canonical_hash(item.blob_a) if item.blob_a is not None else None
        item.hash_b = canonical_hash(item.blob_b) if item.blob_b is not None else None
        item.merge = merge_blobs(
            item.blob_a, item.blob_b, expired_before=expired_before, not_after=not_after
        )

    to_b = [item for item in batch if item.merge and item.merge.changed_b]
    if to_b:
        stored = await target.store_many(
            [(item.key, _merged(item), item.hash_b or ABSENT) for item in to_b]
        )
        for item, ok in zip(to_b, stored, strict=True):
            if ok:
                result.written_target.append(item.key)
            else:
                item.deferred = True
                _log.info("key changed during sync; deferred", tier=target.name, key=item.key)

    to_a = [item for item in batch if item.merge and item.merge.changed_a]
    if not to_a:
        return
    # The stale-overwrite guard: re-read A and write only keys A has not changed since.
    fresh_a = await source.metadata()
    unchanged = []
    for item in to_a:
        if fresh_a.hash_of(item.key) == item.hash_a:
            unchanged.append(item)
        else:
            item.deferred = True
            _log.info("source changed during sync; deferred", tier=source.name, key=item.key)
    if not unchanged:
        return
    stored = await source.store_many(
        [(item.key, _merged(item), item.hash_a or ABSENT) for item in unchanged]
    )
    for item, ok in zip(unchanged, stored, strict=True):
        if ok:
            result.written_source.append(item.key)
        else:
            item.deferred = True
            _log.info("key changed during sync; deferred", tier=source.name, key=item.key)


def _merged(item: _KeyWork) -> Blob:
    assert item.merge is not None
    return item.merge.blob
