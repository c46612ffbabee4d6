"""The tier protocols: a bulk blob tier, and the store tier that adds per-entity access.

Every tier holds normalized blobs by entity key and keeps their metadata in step with them: a
``store`` or ``clear`` updates the key's metadata in the same step, so a tier's metadata never
describes a blob it does not hold.

Writes take an optional precondition ``if_hash``: ``None`` writes unconditionally, :data:`ABSENT`
writes only if the tier does not hold the key, any other value only if the key's current hash
equals it. A failed precondition returns ``False`` and changes nothing; this is how a sync never
overwrites a change it has not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from tidemark.core import Counters, EventStream

from ._blob import Blob
from ._metadata import TierMetadata

#: ``if_hash`` value meaning "only if the tier does not hold the key".
ABSENT: Final = ""

#: Counters every tier keeps (read them with ``tier.counters.snapshot()``).
TIER_COUNTERS: Final = (
    "blobs_read",
    "blobs_written",
    "blobs_cleared",
    "metadata_reads",
    "preconditions_failed",
    "corrupt_quarantined",
)


def precondition_holds(if_hash: str | None, current_hash: str | None) -> bool:
    """Whether a write conditioned on ``if_hash`` may proceed when the key's hash is
    ``current_hash`` (``None``: the tier does not hold the key)."""
    if if_hash is None:
        return True
    return (current_hash or ABSENT) == if_hash


@runtime_checkable
class BlobTier(Protocol):
    """A tier that stores whole blobs by entity key (local file, folder, cloud).

    Implementations are safe to call concurrently from one event loop; methods raise
    :class:`tidemark.core.SourceUnavailableError` (transient) when the tier cannot be reached.
    """

    @property
    def name(self) -> str:
        """A short name for logs and events (``local``, ``cloud`` …)."""
        ...

    @property
    def counters(self) -> Counters:
        """Read-only counters (:data:`TIER_COUNTERS`)."""
        ...

    async def load(self, key: str) -> Blob | None:
        """The blob of ``key`` (a copy the caller may mutate), ``None`` when absent."""
        ...

    async def store(self, key: str, blob: Blob, *, if_hash: str | None = None) -> bool:
        """Replace the blob of ``key`` atomically; ``False`` when ``if_hash`` does not hold.

        An empty blob clears the key. Storing bytes equal to the current ones writes nothing.
        Raises :class:`tidemark.core.DataValidationError` for a malformed blob.
        """
        ...

    async def clear(self, key: str, *, if_hash: str | None = None) -> bool:
        """Remove ``key``; ``False`` when ``if_hash`` does not hold. Clearing an absent key is
        a successful no-op."""
        ...

    async def load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        """:meth:`load` for several keys at once, results in the same order (one round trip or
        one worker call where the tier can)."""
        ...

    async def store_many(self, writes: Sequence[tuple[str, Blob, str | None]]) -> list[bool]:
        """:meth:`store` for several ``(key, blob, if_hash)`` at once, results in order; each
        write is atomic and checks its own precondition."""
        ...

    async def metadata(self) -> TierMetadata:
        """The metadata of every key the tier holds."""
        ...

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class EntityChange:
    """An entity of a store tier changed: ``entity`` is its new value, ``None`` once deleted."""

    key: str
    entity_name: str
    entity_id: str
    entity: dict[str, Any] | None


@runtime_checkable
class StoreTier(BlobTier, Protocol):
    """The fast primary tier: a blob tier with per-entity reads and writes and a change stream.

    Per-entity writes do not take preconditions: the caller (a repository) is the only writer of
    the entities it touches; syncs use the conditional blob writes.
    """

    @property
    def changes(self) -> EventStream[EntityChange]:
        """Every real change of an entity, whatever wrote it (a save, a sync, a hydration)."""
        ...

    def holds(self, key: str) -> bool:
        """True when the store holds ``key`` (it was hydrated or written)."""
        ...

    async def get(self, key: str, entity_name: str, entity_id: str) -> dict[str, Any] | None:
        """A copy of the active entity, ``None`` when absent or deleted."""
        ...

    async def get_all(self, key: str, entity_name: str) -> list[dict[str, Any]]:
        """Copies of every active entity of ``entity_name`` under ``key``."""
        ...

    async def tombstone(self, key: str, entity_name: str, entity_id: str) -> str | None:
        """The ``deleted_at`` stamp of a deleted entity, ``None`` when not deleted."""
        ...

    async def save(self, key: str, entity_name: str, entity: dict[str, Any]) -> None:
        """Insert or replace one entity (removing its tombstone, if any)."""
        ...

    async def delete(self, key: str, entity_name: str, entity_id: str, deleted_at: str) -> None:
        """Replace the entity (if any) by a tombstone stamped ``deleted_at``."""
        ...
