"""Tier metadata: per entity key the hash of its blob, its newest stamp and its counts.

Metadata is a pure function of a tier's content: two tiers holding the same blobs have equal
metadata, equal ``updated_at`` and equal ``root_hash``, which is what lets a sync stop at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tidemark.core import CorruptDataError, canonical_hash

from ._blob import Blob
from ._ids import DELETED_MEMBER, is_valid_entity_name, is_valid_key
from ._stamps import normalize_stamp


@dataclass(frozen=True, slots=True)
class EntityCounts:
    """How many active entities and tombstones one entity name has in a blob."""

    count: int = 0
    deleted_count: int = 0

    def to_json(self) -> dict[str, int]:
        """``{"count": …, "deleted_count": …}``."""
        return {"count": self.count, "deleted_count": self.deleted_count}


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    """Metadata of one entity key: ``hash`` of the blob's canonical bytes (tombstones included),
    ``updated_at`` (the newest stamp in the blob; ``None`` for an empty one) and counts by entity
    name."""

    hash: str
    updated_at: str | None
    entities: Mapping[str, EntityCounts]

    @classmethod
    def of(cls, blob: Blob, blob_hash: str | None = None) -> KeyMetadata:
        """Compute the metadata of a normalized ``blob`` (pass ``blob_hash`` when already known)."""
        counts: dict[str, list[int]] = {}
        newest = ""
        for name, members in blob.items():
            if name == DELETED_MEMBER:
                continue
            counts.setdefault(name, [0, 0])[0] = len(members)
            for entity in members.values():
                stamp = normalize_stamp(entity.get("updated_at"))
                newest = max(newest, stamp)
        for name, deleted in blob.get(DELETED_MEMBER, {}).items():
            counts.setdefault(name, [0, 0])[1] = len(deleted)
            for deleted_at in deleted.values():
                stamp = normalize_stamp(deleted_at)
                newest = max(newest, stamp)
        return cls(
            hash=blob_hash if blob_hash is not None else canonical_hash(blob),
            updated_at=newest or None,
            entities=MappingProxyType(
                {name: EntityCounts(c[0], c[1]) for name, c in sorted(counts.items())}
            ),
        )

    def count(self, entity_name: str) -> int:
        """Active entities of ``entity_name`` under this key."""
        counts = self.entities.get(entity_name)
        return counts.count if counts else 0

    def deleted_count(self) -> int:
        """Tombstones of every entity name under this key."""
        return sum(c.deleted_count for c in self.entities.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``{"hash", "updated_at", "entities": {name: counts}}``."""
        return {
            "hash": self.hash,
            "updated_at": self.updated_at,
            "entities": {name: c.to_json() for name, c in self.entities.items()},
        }

    @classmethod
    def from_json(cls, value: Any) -> KeyMetadata:
        """Parse the JSON form. Raises :class:`CorruptDataError` when it is malformed."""
        try:
            if not isinstance(value, Mapping):
                raise TypeError("not an object")
            digest = value["hash"]
            updated_at = value.get("updated_at")
            entities = value.get("entities", {})
            if not isinstance(digest, str) or not digest:
                raise TypeError("hash must be a non-empty string")
            if updated_at is not None and not isinstance(updated_at, str):
                raise TypeError("updated_at must be a string or null")
            if not isinstance(entities, Mapping):
                raise TypeError("entities must be an object")
            parsed: dict[str, EntityCounts] = {}
            for name, counts in sorted(entities.items()):
                if not is_valid_entity_name(name) or not isinstance(counts, Mapping):
                    raise TypeError(f"bad counts for entity name {name!r}")
                count, deleted = counts.get("count", 0), counts.get("deleted_count", 0)
                if not (_is_count(count) and _is_count(deleted)):
                    raise TypeError(f"bad counts for entity name {name!r}")
                parsed[name] = EntityCounts(count, deleted)
        except (KeyError, TypeError) as exc:
            raise CorruptDataError(f"malformed key metadata: {exc}") from exc
        return cls(digest, updated_at, MappingProxyType(parsed))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class TierMetadata(Mapping[str, KeyMetadata]):
    """The metadata of a whole tier: a read-only mapping entity key -> :class:`KeyMetadata`, plus
    ``updated_at`` (newest key stamp) and ``root_hash`` (hash over every key and key hash).

    Comparing two tiers needs only the keys and their hashes; the counts of a key are parsed on
    first access (:meth:`from_rows`), so reading the metadata of a large tier stays cheap.
    """

    __slots__ = ("_entries", "_hashes", "_parse", "_raw", "_root_hash", "_stamps", "_updated_at")

    def __init__(self, keys: Mapping[str, KeyMetadata] | None = None) -> None:
        self._entries: dict[str, KeyMetadata] = dict(keys or {})
        self._hashes = {key: meta.hash for key, meta in self._entries.items()}
        self._stamps = {key: meta.updated_at for key, meta in self._entries.items()}
        self._raw: Mapping[str, Any] = {}
        self._parse: Callable[[Any], Mapping[str, EntityCounts]] | None = None
        self._root_hash: str | None = None
        self._updated_at: str | None = None

    @classmethod
    def from_rows(
        cls,
        rows: Mapping[str, tuple[str, str | None, Any]],
        parse_counts: Callable[[Any], Mapping[str, EntityCounts]],
    ) -> TierMetadata:
        """Metadata from ``{key: (hash, updated_at, raw counts)}``; ``parse_counts(raw)`` runs
        only for keys whose :class:`KeyMetadata` is asked for."""
        made = cls()
        made._hashes = {key: row[0] for key, row in rows.items()}
        made._stamps = {key: row[1] for key, row in rows.items()}
        made._raw = {key: row[2] for key, row in rows.items()}
        made._parse = parse_counts
        return made

    def __getitem__(self, key: str) -> KeyMetadata:
        entry = self._entries.get(key)
        if entry is None:
            digest = self._hashes[key]
            assert self._parse is not None
            entry = KeyMetadata(digest, self._stamps[key], self._parse(self._raw[key]))
            self._entries[key] = entry
        return entry

    def __contains__(self, key: object) -> bool:
        return key in self._hashes

    def __iter__(self) -> Iterator[str]:
        return iter(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def __repr__(self) -> str:
        return f"TierMetadata(keys={len(self)}, updated_at={self.updated_at!r})"

    @property
    def updated_at(self) -> str | None:
        """The newest stamp of any key (``None`` for an empty tier)."""
        if self._updated_at is None:
            stamps = [stamp for stamp in self._stamps.values() if stamp]
            self._updated_at = max(stamps) if stamps else ""
        return self._updated_at or None

    @property
    def root_hash(self) -> str:
        """Hash of ``{key: key hash}`` for every key: equal exactly when the tiers hold equal blobs."""
        if self._root_hash is None:
            self._root_hash = canonical_hash(self._hashes)
        return self._root_hash

    def hash_of(self, key: str) -> str | None:
        """The hash of ``key``'s blob, ``None`` when the tier does not hold the key."""
        return self._hashes.get(key)

    def same_content(self, other: TierMetadata) -> bool:
        """True when both tiers hold the same blobs (equal ``updated_at`` and ``root_hash``)."""
        return self.updated_at == other.updated_at and self.root_hash == other.root_hash

    def to_json(self) -> dict[str, Any]:
        """``{"updated_at", "root_hash", "keys": {key: key metadata}}``."""
        return {
            "updated_at": self.updated_at,
            "root_hash": self.root_hash,
            "keys": {key: self[key].to_json() for key in sorted(self._hashes)},
        }

    @classmethod
    def from_json(cls, value: Any) -> TierMetadata:
        """Parse :meth:`to_json`'s form. Raises :class:`CorruptDataError` when malformed."""
        if not isinstance(value, Mapping) or not isinstance(value.get("keys", {}), Mapping):
            raise CorruptDataError("malformed tier metadata: expected {'keys': {...}}")
        keys: dict[str, KeyMetadata] = {}
        for key, meta in value.get("keys", {}).items():
            if not is_valid_key(key):
                raise CorruptDataError(f"malformed tier metadata: invalid key {key!r}")
            keys[key] = KeyMetadata.from_json(meta)
        return cls(keys)
