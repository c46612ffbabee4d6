"""Repositories: the entity-facing API of one entity name."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from tidemark.core import (
    MAX_JSON_DEPTH,
    Counters,
    DataValidationError,
    canonical_bytes,
    exceeds_json_depth,
)

from ._ids import is_valid_id, key_of_id, new_id, validate_entity_name
from ._query import Direction, Query, run_query
from ._stamps import HybridClock
from ._strategies import KeyStrategy
from ._streams import Observation
from ._tiers import StoreTier

#: Members ``save`` manages; a save whose other members equal the stored ones changes nothing.
STAMP_FIELDS = ("updated_at", "version")
#: The deepest entity a blob can carry: a blob wraps it in two levels (name, then id), and a
#: blob is read from other processes and servers with :data:`~tidemark.core.MAX_JSON_DEPTH`.
MAX_ENTITY_DEPTH = MAX_JSON_DEPTH - 2


def _without_stamps(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k not in STAMP_FIELDS}


class RepositoryContext(Protocol):
    """What a repository works with, provided by the ``DataOrchestrator`` that made it: the key
    prefix, the store tier, the write-stamp clock, the key strategy, the counters, and per-key
    hydration, locking and query planning."""

    @property
    def prefix(self) -> str: ...

    @property
    def store(self) -> StoreTier: ...

    @property
    def hybrid_clock(self) -> HybridClock: ...

    @property
    def strategy(self) -> KeyStrategy: ...

    @property
    def counters(self) -> Counters: ...

    async def hydrate(self, key: str) -> None: ...

    def key_lock(self, key: str) -> AbstractAsyncContextManager[None]: ...

    async def query_keys(self, entity_name: str, query: Query) -> list[str]: ...


class Repository:
    """Reads and writes entities of one name; get one from ``DataOrchestrator.repo(name)``.

    Every method works from asyncio code. Reads hydrate the entity keys they need (store, then
    local, then cloud); writes go to the store tier and reach the other tiers with the next
    syncs.
    """

    def __init__(self, orchestrator: RepositoryContext, entity_name: str) -> None:
        self._orchestrator = orchestrator
        self.entity_name = validate_entity_name(entity_name)

    async def save(self, entity: Mapping[str, Any]) -> str:
        """Insert or update ``entity`` and return its id.

        A new entity (no ``id``) gets ``created_at`` (unless given), then an id in the partition
        the key strategy chooses. Every real change sets ``updated_at`` (a write stamp later than
        the version it replaces) and increments ``version``; a save that changes no other member
        writes nothing. Saving the id of a deleted entity brings it back. The input is not
        modified. Raises :class:`DataValidationError` for a malformed id, a non-JSON entity or
        one nested more than ``MAX_ENTITY_DEPTH`` (62) levels deep.
        """
        if not isinstance(entity, Mapping):
            raise DataValidationError(
                "an entity must be a JSON object", validation_errors={"$": ["not an object"]}
            )
        orchestrator = self._orchestrator
        draft = dict(entity)
        entity_id = draft.get("id")
        fresh_stamp: str | None = None
        if entity_id is None:
            # A new entity: one stamp serves as created_at (the strategy may partition by it)
            # and as updated_at.
            fresh_stamp = orchestrator.hybrid_clock.stamp()
            draft.setdefault("created_at", fresh_stamp)
            logical = orchestrator.strategy.logical_key(self.entity_name, draft)
            entity_id = new_id(logical)
            draft["id"] = entity_id
        elif not is_valid_id(entity_id):
            raise DataValidationError(
                "invalid entity id",
                validation_errors={"id": [f"{entity_id!r} is not <logical key>.<random>"]},
            )
        try:
            encoded = canonical_bytes(draft)
        except TypeError as exc:
            raise DataValidationError(
                "the entity is not JSON", validation_errors={"$": [str(exc)]}
            ) from exc
        if exceeds_json_depth(encoded, MAX_ENTITY_DEPTH):
            raise DataValidationError(
                "the entity is nested too deeply to sync",
                validation_errors={
                    "$": [f"arrays and objects nest more than {MAX_ENTITY_DEPTH} levels deep"]
                },
            )
        key = key_of_id(orchestrator.prefix, entity_id)
        await orchestrator.hydrate(key)
        store = orchestrator.store
        async with orchestrator.key_lock(key):
            current = await store.get(key, self.entity_name, entity_id)
            replaced: str | None
            if current is not None:
                draft["created_at"] = current.get("created_at", draft.get("created_at"))
                if canonical_bytes(_without_stamps(draft)) == canonical_bytes(
                    _without_stamps(current)
                ):
                    return str(entity_id)
                replaced = current.get("updated_at")
                previous_version = current.get("version")
            else:
                replaced = await store.tombstone(key, self.entity_name, entity_id)
                previous_version = 0
            if fresh_stamp is not None and current is None and replaced is None:
                draft["updated_at"] = fresh_stamp
            else:
                draft["updated_at"] = orchestrator.hybrid_clock.stamp(
                    after=replaced if isinstance(replaced, str) else None
                )
            draft.setdefault("created_at", draft["updated_at"])
            draft["version"] = (
                previous_version + 1
                if isinstance(previous_version, int) and not isinstance(previous_version, bool)
                else 1
            )
            await store.save(key, self.entity_name, draft)
        orchestrator.counters.increment("saves")
        return str(entity_id)

    async def get(self, entity_id: str) -> dict[str, Any] | None:
        """The entity (a copy), or ``None`` when absent or deleted.

        Raises :class:`DataValidationError` for a malformed id.
        """
        key = key_of_id(self._orchestrator.prefix, entity_id)
        await self._orchestrator.hydrate(key)
        return await self._orchestrator.store.get(key, self.entity_name, entity_id)

    async def delete(self, entity_id: str) -> bool:
        """Delete the entity, leaving a tombstone; ``True`` when an active entity was deleted.

        Deleting an id the replica has never seen still records the tombstone (it may exist on
        a tier that is offline), so the delete is not lost. Deleting twice changes nothing.
        """
        orchestrator = self._orchestrator
        key = key_of_id(orchestrator.prefix, entity_id)
        await orchestrator.hydrate(key)
        store = orchestrator.store
        async with orchestrator.key_lock(key):
            current = await store.get(key, self.entity_name, entity_id)
            if current is None and await store.tombstone(key, self.entity_name, entity_id):
                return False
            replaced = current.get("updated_at") if current else None
            deleted_at = orchestrator.hybrid_clock.stamp(
                after=replaced if isinstance(replaced, str) else None
            )
            await store.delete(key, self.entity_name, entity_id, deleted_at)
        orchestrator.counters.increment("deletes")
        return current is not None

    async def query(
        self,
        query: Query | None = None,
        *,
        ids: list[str] | tuple[str, ...] | None = None,
        where: Mapping[str, Any] | None = None,
        sort: list[tuple[str, Direction]] | tuple[tuple[str, Direction], ...] = (),
        scope: Any = None,
    ) -> list[dict[str, Any]]:
        """Entities matching a :class:`Query` (or the same fields as keywords), sorted.

        Reads the keys the key strategy names for the query (or the keys of ``ids``), hydrating
        each one. Raises :class:`ParameterValidationError` for a malformed query.
        """
        if query is None:
            query = Query(
                ids=tuple(ids) if ids is not None else None,
                where=dict(where or {}),
                sort=tuple(sort),
                scope=scope,
            )
        elif ids is not None or where or sort or scope is not None:
            raise TypeError("pass either a Query or keyword fields, not both")
        orchestrator = self._orchestrator
        entities: list[dict[str, Any]] = []
        for key in await orchestrator.query_keys(self.entity_name, query):
            await orchestrator.hydrate(key)
            entities.extend(await orchestrator.store.get_all(key, self.entity_name))
        return run_query(entities, query)

    def observe(self, entity_id: str) -> Observation[dict[str, Any] | None]:
        """A stream of the entity: its current value (or ``None``) first, then each real change
        (``None`` once deleted). Call from a running event loop."""
        key_of_id(self._orchestrator.prefix, entity_id)
        name = self.entity_name
        return Observation(
            self._orchestrator.store.changes.subscribe(),
            lambda event: event.entity_id == entity_id and event.entity_name == name,
            lambda: self.get(entity_id),
        )

    def observe_all(self, query: Query | None = None) -> Observation[list[dict[str, Any]]]:
        """A stream of the entities matching ``query``: the current list first, then the new
        list after each change that alters it. Call from a running event loop."""
        query = query or Query()
        name = self.entity_name
        return Observation(
            self._orchestrator.store.changes.subscribe(),
            lambda event: event.entity_name == name,
            lambda: self.query(query),
        )
