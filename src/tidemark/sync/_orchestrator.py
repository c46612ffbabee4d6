"""The orchestrator: tiers, repositories, hydration, scheduled syncs and tombstone purge."""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tidemark.core import SYSTEM_CLOCK, Clock, Counters, EventStream, canonical_hash, get_logger

from ._ids import is_valid_id, key_of_id, validate_key
from ._memory_tier import MemoryStore
from ._merge import merge_blobs, purge_tombstones
from ._metadata import KeyMetadata, TierMetadata
from ._query import Query
from ._repository import Repository
from ._scheduler import SyncEvent, SyncScheduler, is_transient
from ._settings import SyncSettings
from ._stamps import HybridClock
from ._strategies import KeyStrategy
from ._tier_sync import KeyConflict, StampQuarantine, SyncResult, sync_tiers
from ._tiers import ABSENT, BlobTier, StoreTier

_log = get_logger("sync")

#: Name of the tombstone purge job.
PURGE_JOB = "purge-tombstones"
_HYDRATE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class SyncPair:
    """A scheduled directional sync: ``source`` -> ``target`` every ``interval`` seconds.

    ``two_way`` decides what happens to keys only the target holds: copied to the source (the
    local <-> cloud pair: the durable local tier receives what other devices wrote) or left to
    hydration (the store <-> local pair: the store is a working set filled on access, so it does
    not load every key of the local tier).
    """

    name: str
    source: BlobTier
    target: BlobTier
    two_way: bool
    interval: float


class DataOrchestrator:
    """Tiers (store, optional local, optional cloud), repositories and their syncs.

    Build one with :meth:`load`; use it from one event loop; close it with :meth:`close` (or
    ``async with``), which flushes the store to the local tier and closes every tier.

    Scheduled jobs: ``store->local`` (every ``store_interval``), ``local->cloud`` (every
    ``cloud_interval``; ``store->cloud`` when there is no local tier) and ``purge-tombstones``.
    Their events arrive on :attr:`events`; figures on :attr:`counters`.

    A version stamped more than ``settings.max_clock_skew`` ahead of the local clock (or not
    stamped with a date-time), met in a sync or a hydration, is quarantined: it never wins, the
    tier holding it is rewritten without it, and a ``version_quarantined`` event carries it.
    """

    def __init__(
        self,
        *,
        prefix: str,
        store: StoreTier,
        local: BlobTier | None,
        cloud: BlobTier | None,
        strategy: KeyStrategy,
        settings: SyncSettings,
        clock: Clock,
        rng: random.Random | None,
    ) -> None:
        self.prefix = validate_key(prefix)
        self.store = store
        self.local = local
        self.cloud = cloud
        self.strategy = strategy
        self.settings = settings
        self.hybrid_clock = HybridClock(clock, max_skew=settings.max_clock_skew)
        self._clock = clock
        self.events: EventStream[SyncEvent] = EventStream()
        self.counters = Counters(
            "saves",
            "deletes",
            "hydrations",
            "hydration_misses",
            "hydration_failures",
            "conflicts_resolved",
            "tombstones_purged",
            "versions_quarantined",
        )
        self.scheduler = SyncScheduler(
            events=self.events,
            counters=self.counters,
            retry_base=settings.retry_base,
            retry_max=settings.retry_max,
            rng=rng,
        )
        self._lower: list[BlobTier] = [tier for tier in (local, cloud) if tier is not None]
        self._repos: dict[str, Repository] = {}
        self._absent: set[str] = set()
        self._hydrating: dict[str, asyncio.Future[None]] = {}
        self._key_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._unavailable_until: dict[str, float] = {}
        self._last_metadata: dict[str, TierMetadata] = {}
        self._closed = False
        self.pairs: list[SyncPair] = []
        if local is not None:
            self.pairs.append(
                SyncPair("store->local", store, local, False, settings.store_interval)
            )
            if cloud is not None:
                self.pairs.append(
                    SyncPair("local->cloud", local, cloud, True, settings.cloud_interval)
                )
        elif cloud is not None:
            self.pairs.append(
                SyncPair("store->cloud", store, cloud, False, settings.cloud_interval)
            )
        for pair in self.pairs:
            self.scheduler.add(pair.name, self._job(pair), pair.interval)
        if self._lower:
            self.scheduler.add(PURGE_JOB, self.purge_tombstones, settings.purge_interval)

    @classmethod
    async def load(
        cls,
        *,
        prefix: str,
        store: StoreTier | None = None,
        local: BlobTier | None = None,
        cloud: BlobTier | None = None,
        strategy: KeyStrategy | None = None,
        settings: SyncSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
        start: bool = True,
        rng: random.Random | None = None,
    ) -> DataOrchestrator:
        """Assemble an orchestrator over its tiers and start its scheduler.

        ``prefix`` starts every entity key (``app`` -> ``app.global``). ``store`` defaults to a
        :class:`MemoryStore`; ``strategy`` to the global :class:`KeyStrategy`. With ``start``
        (default) the periodic syncs run and, with ``settings.initial_sync``, every sync is
        requested at once (a cloud that is down is retried with backoff; loading never waits
        for it). ``start=False`` runs syncs only through :meth:`sync_now`.
        """
        orchestrator = cls(
            prefix=prefix,
            store=store or MemoryStore(),
            local=local,
            cloud=cloud,
            strategy=strategy or KeyStrategy(),
            settings=settings or SyncSettings(),
            clock=clock,
            rng=rng,
        )
        if local is not None:
            with contextlib.suppress(Exception):
                orchestrator._last_metadata["local"] = await local.metadata()
        if start:
            orchestrator.scheduler.start()
            if orchestrator.settings.initial_sync:
                for pair in orchestrator.pairs:
                    orchestrator.scheduler.trigger(pair.name)
        _log.info(
            "orchestrator loaded",
            prefix=prefix,
            tiers=[orchestrator.store.name, *(t.name for t in orchestrator._lower)],
            jobs=orchestrator.scheduler.jobs,
        )
        return orchestrator

    def repo(self, entity_name: str) -> Repository:
        """The repository of ``entity_name`` (one instance per name)."""
        repository = self._repos.get(entity_name)
        if repository is None:
            repository = self._repos[entity_name] = Repository(self, entity_name)
        return repository

    async def sync_now(self, job: str | None = None) -> list[Any]:
        """Run one job now (``store->local``, ``local->cloud``, ``store->cloud``,
        ``purge-tombstones``) and return its result in a list.

        Without ``job``, run a full round: every pair from the store up to the cloud, then back
        down (``store->local``, ``local->cloud``, ``store->local``), so that what the cloud
        brought reaches the store too. Raises the first error; a transient one stays scheduled
        for retry. Works whether or not the scheduler was started."""
        if job is not None:
            names = [job]
        else:
            upward = [pair.name for pair in self.pairs]
            names = upward + upward[-2::-1]
        results = []
        for name in names:
            if self.scheduler.started:
                results.append(await self.scheduler.run(name))
            else:
                results.append(await self.scheduler.execute(name))
        return results

    async def flush(self) -> SyncResult | None:
        """Write the store's changes to the local tier now (``None`` without a local tier)."""
        if self.local is None:
            return None
        result: SyncResult = (await self.sync_now("store->local"))[0]
        return result

    async def purge_tombstones(self) -> int:
        """Remove tombstones older than the retention window from every tier, for keys every
        tier holds identically (so every tier has seen them); returns how many were removed.

        Keys that differ somewhere are left for the syncs first. A replica that stays offline
        longer than the retention window may bring back an entity deleted meanwhile.
        """
        tiers: list[BlobTier] = [self.store, *self._lower]
        metas = [await tier.metadata() for tier in tiers]
        before = self.hybrid_clock.horizon(self.settings.tombstone_retention)
        durable = self._lower or [self.store]
        removed_total = 0
        for key in sorted(set().union(*(meta.keys() for meta in metas))):
            holders = [(t, m[key]) for t, m in zip(tiers, metas, strict=True) if key in m]
            if any(key not in metas[tiers.index(t)] for t in durable):
                continue
            if len({meta.hash for _, meta in holders}) != 1 or not holders[0][1].deleted_count():
                continue
            expected = holders[0][1].hash
            blob = await durable[0].load(key)
            if blob is None or canonical_hash(blob) != expected:
                continue
            purged, removed = purge_tombstones(blob, before)
            if not removed:
                continue
            # The shared tier first: if a later write fails, the merge's expiry rule finishes
            # the purge on the next sync instead of copying the tombstone back.
            for tier, meta in reversed(holders):
                if not await tier.store(key, purged, if_hash=meta.hash):
                    break
            removed_total += removed
        if removed_total:
            self.counters.increment("tombstones_purged", removed_total)
            _log.info("tombstones purged", removed=removed_total, before=before)
        return removed_total

    async def close(self) -> None:
        """Stop the scheduler, flush the store to the local tier, close every tier. Idempotent.

        If the flush fails the error is raised and the tiers stay open: call again to retry.
        """
        if self._closed:
            return
        await self.scheduler.stop()
        if self.local is not None:
            try:
                await self.scheduler.execute("store->local")
            except Exception as exc:
                # The store's changes exist nowhere else: stay open so the caller can retry.
                _log.error("final flush to the local tier failed", error=str(exc))
                raise
        self._closed = True
        for tier in (self.store, *self._lower):
            with contextlib.suppress(Exception):
                await tier.close()

    async def __aenter__(self) -> DataOrchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- used by repositories -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def key_lock(self, key: str) -> AsyncIterator[None]:
        """Serializes read-modify-write cycles of repositories on one entity key."""
        lock = self._key_locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._key_locks[key] = lock
        async with lock:
            yield

    async def hydrate(self, key: str) -> None:
        """Make sure the store holds ``key`` if any tier does: load it from the local tier, else
        from the cloud. A tier that fails is skipped (logged); the key is then tried again on
        the next access."""
        if self.store.holds(key) or key in self._absent or not self._lower:
            return
        pending = self._hydrating.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._hydrate(key))
            self._hydrating[key] = pending
            pending.add_done_callback(lambda _: self._hydrating.pop(key, None))
        await asyncio.shield(pending)

    async def query_keys(self, entity_name: str, query: Query) -> list[str]:
        """The entity keys a query reads: the keys of its ``ids``, else the strategy's choice
        among the keys any tier is known to hold."""
        if query.ids is not None:
            return sorted({key_of_id(self.prefix, i) for i in query.ids if is_valid_id(i)})
        known: dict[str, KeyMetadata] = {}
        if self.cloud is not None and "cloud" in self._last_metadata:
            known.update(self._last_metadata["cloud"])
        if self.local is not None:
            try:
                self._last_metadata["local"] = await self.local.metadata()
            except Exception as exc:
                _log.warning("local metadata unavailable for a query", error=str(exc))
            known.update(self._last_metadata.get("local", {}))
        known.update(await self.store.metadata())
        return self.strategy.query_keys(self.prefix, entity_name, query.scope, known)

    # -- internals ------------------------------------------------------------------------------

    async def _hydrate(self, key: str) -> None:
        complete = True
        for tier in self._lower:
            if self._unavailable_until.get(tier.name, 0.0) > self._clock.monotonic():
                complete = False
                continue
            try:
                blob = await tier.load(key)
            except Exception as exc:
                complete = False
                self.counters.increment("hydration_failures")
                if is_transient(exc):
                    self._unavailable_until[tier.name] = (
                        self._clock.monotonic() + self.settings.retry_base
                    )
                _log.warning("hydration from tier failed", tier=tier.name, key=key, error=str(exc))
                continue
            if blob is None:
                continue
            await self._merge_into(self.store, key, blob, tier.name)
            if tier is not self._lower[0]:
                # Found in the cloud: keep a durable copy locally as well.
                with contextlib.suppress(Exception):
                    await self._merge_into(self._lower[0], key, blob, tier.name)
            self.counters.increment("hydrations")
            _log.debug("key hydrated", key=key, tier=tier.name)
            return
        if complete:
            self._absent.add(key)
            self.counters.increment("hydration_misses")

    async def _merge_into(
        self, tier: BlobTier, key: str, blob: dict[str, Any], origin: str
    ) -> None:
        for _ in range(_HYDRATE_ATTEMPTS):
            current = await tier.load(key)
            merge = merge_blobs(current, blob, not_after=self.hybrid_clock.not_after())
            for version in merge.quarantined:
                self._quarantined(
                    "hydrate",
                    StampQuarantine(
                        key,
                        tier.name if version.side == "a" else origin,
                        version.entity_name,
                        version.entity_id,
                        version.stamp,
                        version.fault,
                        version.version,
                    ),
                )
            if not merge.changed_a:
                return
            expected = canonical_hash(current) if current is not None else ABSENT
            if await tier.store(key, merge.blob, if_hash=expected):
                return

    def _quarantined(self, job: str, found: StampQuarantine) -> None:
        self.counters.increment("versions_quarantined")
        self.events.publish(SyncEvent("version_quarantined", job, quarantine=found))

    def _job(self, pair: SyncPair) -> Any:
        async def run() -> SyncResult:
            return await self._sync_pair(pair)

        return run

    async def _sync_pair(self, pair: SyncPair) -> SyncResult:
        def conflict(found: KeyConflict) -> None:
            self.counters.increment("conflicts_resolved")
            self.events.publish(SyncEvent("conflict_resolved", pair.name, conflict=found))

        result = await sync_tiers(
            pair.source,
            pair.target,
            two_way=pair.two_way,
            expired_before=self.hybrid_clock.horizon(self.settings.tombstone_retention),
            batch_size=self.settings.batch_size,
            on_conflict=conflict,
            not_after=self.hybrid_clock.not_after(),
            on_quarantine=lambda found: self._quarantined(pair.name, found),
        )
        for tier, meta in (
            (pair.source, result.source_metadata),
            (pair.target, result.target_metadata),
        ):
            if meta is not None and tier is not self.store:
                self._last_metadata["cloud" if tier is self.cloud else "local"] = meta
        written_below = [
            key
            for tier, keys in (
                (pair.source, result.written_source),
                (pair.target, result.written_target),
            )
            if tier is not self.store
            for key in keys
        ]
        if written_below:
            # Keys that were absent everywhere may exist now.
            self._absent.difference_update(written_below)
        return result
