"""The in-memory store tier: the fast primary tier of an orchestrator (also a blob tier)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson

from tidemark.core import (
    Counters,
    DataValidationError,
    EventStream,
    canonical_bytes,
    content_hash,
)

from ._blob import Blob, is_empty, validate_blob
from ._ids import DELETED_MEMBER, is_valid_id, validate_entity_name, validate_key
from ._metadata import KeyMetadata, TierMetadata
from ._tiers import TIER_COUNTERS, EntityChange, precondition_holds


def _copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


class MemoryStore:
    """Blobs in memory, with per-entity access and a change stream. Thread-safe.

    Everything handed in is copied and everything handed out is a copy, so callers can never
    mutate stored state behind the store's back. Metadata of a key is recomputed lazily, once
    per burst of writes.
    """

    def __init__(self, name: str = "store") -> None:
        self._name = name
        self._counters = Counters(*TIER_COUNTERS)
        self._changes: EventStream[EntityChange] = EventStream()
        self._lock = threading.RLock()
        self._blobs: dict[str, Blob] = {}
        self._meta: dict[str, KeyMetadata] = {}
        self._dirty: set[str] = set()
        self._snapshot: TierMetadata | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def changes(self) -> EventStream[EntityChange]:
        return self._changes

    def holds(self, key: str) -> bool:
        with self._lock:
            return key in self._blobs

    # -- blob tier --------------------------------------------------------------------------

    async def load(self, key: str) -> Blob | None:
        with self._lock:
            blob = self._blobs.get(key)
            if blob is None:
                return None
            self._counters.increment("blobs_read")
            copied: Blob = _copy(blob)
            return copied

    async def store(self, key: str, blob: Blob, *, if_hash: str | None = None) -> bool:
        validate_key(key)
        data = canonical_bytes(validate_blob(blob))
        new_hash = content_hash(data)
        new: Blob = orjson.loads(data)
        with self._lock:
            current = self._current_hash(key)
            if not precondition_holds(if_hash, current):
                self._counters.increment("preconditions_failed")
                return False
            if current == new_hash:
                return True
            old = self._blobs.get(key, {})
            if is_empty(new):
                self._drop(key)
                self._counters.increment("blobs_cleared")
            else:
                self._blobs[key] = new
                self._meta[key] = KeyMetadata.of(new, new_hash)
                self._dirty.discard(key)
                self._snapshot = None
                self._counters.increment("blobs_written")
            events = _diff(key, old, new)
        for event in events:
            self._changes.publish(event)
        return True

    async def clear(self, key: str, *, if_hash: str | None = None) -> bool:
        with self._lock:
            current = self._current_hash(key)
            if not precondition_holds(if_hash, current):
                self._counters.increment("preconditions_failed")
                return False
            old = self._blobs.get(key)
            if old is None:
                return True
            self._drop(key)
            self._counters.increment("blobs_cleared")
            events = _diff(key, old, {})
        for event in events:
            self._changes.publish(event)
        return True

    async def load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        return [await self.load(key) for key in keys]

    async def store_many(self, writes: Sequence[tuple[str, Blob, str | None]]) -> list[bool]:
        return [await self.store(key, blob, if_hash=if_hash) for key, blob, if_hash in writes]

    async def metadata(self) -> TierMetadata:
        with self._lock:
            self._counters.increment("metadata_reads")
            for key in self._dirty:
                self._meta[key] = KeyMetadata.of(self._blobs[key])
            self._dirty.clear()
            if self._snapshot is None:
                self._snapshot = TierMetadata(self._meta)
            return self._snapshot

    async def close(self) -> None:
        return None

    # -- per entity ---------------------------------------------------------------------------

    async def get(self, key: str, entity_name: str, entity_id: str) -> dict[str, Any] | None:
        with self._lock:
            entity = self._blobs.get(key, {}).get(entity_name, {}).get(entity_id)
            return None if entity is None else _copy(entity)

    async def get_all(self, key: str, entity_name: str) -> list[dict[str, Any]]:
        with self._lock:
            members = self._blobs.get(key, {}).get(entity_name, {})
            return [_copy(entity) for entity in members.values()]

    async def tombstone(self, key: str, entity_name: str, entity_id: str) -> str | None:
        with self._lock:
            deleted: str | None = (
                self._blobs.get(key, {}).get(DELETED_MEMBER, {}).get(entity_name, {}).get(entity_id)
            )
            return deleted

    async def save(self, key: str, entity_name: str, entity: dict[str, Any]) -> None:
        validate_key(key)
        validate_entity_name(entity_name)
        entity_id = entity.get("id")
        if not is_valid_id(entity_id):
            raise DataValidationError(
                "invalid entity id", validation_errors={"id": [f"{entity_id!r} is not an id"]}
            )
        assert isinstance(entity_id, str)
        try:
            owned: dict[str, Any] = orjson.loads(canonical_bytes(entity))
        except TypeError as exc:
            raise DataValidationError(
                "the entity is not JSON", validation_errors={"$": [str(exc)]}
            ) from exc
        with self._lock:
            blob = self._blobs.setdefault(key, {})
            blob.setdefault(entity_name, {})[entity_id] = owned
            _remove_tombstone(blob, entity_name, entity_id)
            self._touch(key)
        self._changes.publish(EntityChange(key, entity_name, entity_id, _copy(owned)))

    async def delete(self, key: str, entity_name: str, entity_id: str, deleted_at: str) -> None:
        validate_key(key)
        validate_entity_name(entity_name)
        with self._lock:
            blob = self._blobs.setdefault(key, {})
            members = blob.get(entity_name, {})
            was_live = members.pop(entity_id, None) is not None
            if not members:
                blob.pop(entity_name, None)
            blob.setdefault(DELETED_MEMBER, {}).setdefault(entity_name, {})[entity_id] = deleted_at
            self._touch(key)
        if was_live:
            self._changes.publish(EntityChange(key, entity_name, entity_id, None))

    # -- internals ------------------------------------------------------------------------------

    def _current_hash(self, key: str) -> str | None:
        if key not in self._blobs:
            return None
        if key in self._dirty:
            self._meta[key] = KeyMetadata.of(self._blobs[key])
            self._dirty.discard(key)
        return self._meta[key].hash

    def _touch(self, key: str) -> None:
        self._dirty.add(key)
        self._snapshot = None
        self._counters.increment("entities_written")

    def _drop(self, key: str) -> None:
        self._blobs.pop(key, None)
        self._meta.pop(key, None)
        self._dirty.discard(key)
        self._snapshot = None


def _remove_tombstone(blob: Blob, entity_name: str, entity_id: str) -> None:
    deleted = blob.get(DELETED_MEMBER)
    if not deleted or entity_name not in deleted:
        return
    deleted[entity_name].pop(entity_id, None)
    if not deleted[entity_name]:
        del deleted[entity_name]
    if not deleted:
        del blob[DELETED_MEMBER]


def _diff(key: str, old: Blob, new: Blob) -> list[EntityChange]:
    events: list[EntityChange] = []
    names = {n for n in old if n != DELETED_MEMBER} | {n for n in new if n != DELETED_MEMBER}
    for name in sorted(names):
        before, after = old.get(name, {}), new.get(name, {})
        for entity_id in sorted(set(before) | set(after)):
            was, now = before.get(entity_id), after.get(entity_id)
            if was is None and now is None:
                continue
            if was is not None and now is not None and canonical_bytes(was) == canonical_bytes(now):
                continue
            events.append(EntityChange(key, name, entity_id, None if now is None else _copy(now)))
    return events
