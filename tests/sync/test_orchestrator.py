import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support import async_wait_until
from tidemark.core import ManualClock, SourceUnavailableError, UnauthorizedError
from tidemark.sync import (
    PURGE_JOB,
    DataOrchestrator,
    FolderTier,
    MemoryStore,
    SqliteTier,
    SyncSettings,
    key_of_id,
)

from ._faults import FlakyTier, present

FAST = SyncSettings(store_interval=0.02, cloud_interval=0.05, retry_base=0.01, retry_max=0.05)


@pytest.fixture
def clock():
    return ManualClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


async def device(cloud, clock, **kwargs):
    return await DataOrchestrator.load(
        prefix="app", local=MemoryStore("local"), cloud=cloud, clock=clock, start=False, **kwargs
    )


async def full_round(*devices):
    for _ in range(2):
        for each in devices:
            await each.sync_now()


async def test_the_scheduler_writes_the_store_to_local_periodically(tmp_path):
    local = SqliteTier(tmp_path / "local.db")
    orchestrator = await DataOrchestrator.load(prefix="app", local=local, settings=FAST)
    entity_id = await orchestrator.repo("Note").save({"title": "a"})

    async def in_local():
        blob = await local.load("app.global")
        return blob is not None and entity_id in blob["Note"]

    await async_wait_until(in_local, message="store -> local sync")
    await orchestrator.close()


async def test_close_flushes_the_store_and_a_new_session_reads_it_back(tmp_path):
    first = await DataOrchestrator.load(prefix="app", local=FolderTier(tmp_path), start=False)
    entity_id = await first.repo("Note").save({"title": "kept"})
    await first.close()
    second = await DataOrchestrator.load(prefix="app", local=FolderTier(tmp_path), start=False)
    assert present(await second.repo("Note").get(entity_id))["title"] == "kept"
    await second.close()


async def test_two_devices_converge_through_a_shared_cloud(clock):
    cloud = MemoryStore("cloud")
    one, two = await device(cloud, clock), await device(cloud, clock)
    a = await one.repo("Note").save({"title": "from one"})
    b = await two.repo("Note").save({"title": "from two"})
    await full_round(one, two)
    for each in (one, two):
        titles = sorted(n["title"] for n in await each.repo("Note").query())
        assert titles == ["from one", "from two"]
    assert (await two.repo("Note").get(a))["title"] == "from one"
    assert (await one.repo("Note").get(b))["title"] == "from two"
    await one.close()
    await two.close()


@pytest.mark.parametrize("delete_first", [True, False])
async def test_delete_versus_update_race_the_later_write_wins_in_both_orders(clock, delete_first):
    cloud = MemoryStore("cloud")
    one, two = await device(cloud, clock), await device(cloud, clock)
    entity_id = await one.repo("Note").save({"title": "v1"})
    await full_round(one, two)
    original = await two.repo("Note").get(entity_id)
    if delete_first:
        await one.repo("Note").delete(entity_id)
        clock.advance(1)
        await two.repo("Note").save({**original, "title": "edited later"})
    else:
        await two.repo("Note").save({**original, "title": "edited"})
        clock.advance(1)
        await one.repo("Note").delete(entity_id)
    await full_round(one, two)
    expected = {"title": "edited later"} if delete_first else None
    for each in (one, two):
        got = await each.repo("Note").get(entity_id)
        assert (got and {"title": got["title"]}) == expected
    await one.close()
    await two.close()


async def test_identical_timestamps_with_different_content_converge(clock):
    cloud = MemoryStore("cloud")
    one, two = await device(cloud, clock), await device(cloud, clock)
    entity_id = await one.repo("Note").save({"title": "v1"})
    await full_round(one, two)
    clock.advance(1)
    await one.repo("Note").save({**(await one.repo("Note").get(entity_id)), "title": "one"})
    await two.repo("Note").save({**(await two.repo("Note").get(entity_id)), "title": "two"})
    stamp_one = (await one.repo("Note").get(entity_id))["updated_at"]
    stamp_two = (await two.repo("Note").get(entity_id))["updated_at"]
    assert stamp_one == stamp_two  # a true tie
    conflicts: list[Any] = []
    for each in (one, two):  # whichever device meets the other's version first reports it
        each.events.add_listener(
            lambda e: conflicts.append(e) if e.kind == "conflict_resolved" else None
        )
    await full_round(one, two)
    got_one, got_two = await one.repo("Note").get(entity_id), await two.repo("Note").get(entity_id)
    assert got_one == got_two
    assert got_one["title"] in ("one", "two")
    assert {e.conflict.reason for e in conflicts} == {"same-stamp"}
    await one.close()
    await two.close()


async def test_a_delete_wins_an_exact_tie_with_an_update(clock):
    cloud = MemoryStore("cloud")
    one, two = await device(cloud, clock), await device(cloud, clock)
    entity_id = await one.repo("Note").save({"title": "v1"})
    await full_round(one, two)
    clock.advance(1)
    await one.repo("Note").delete(entity_id)
    await two.repo("Note").save({**(await two.repo("Note").get(entity_id)), "title": "edit"})
    key = key_of_id("app", entity_id)
    assert (
        await one.store.tombstone(key, "Note", entity_id)
        == (await two.repo("Note").get(entity_id))["updated_at"]
    )
    await full_round(one, two)
    assert await one.repo("Note").get(entity_id) is None
    assert await two.repo("Note").get(entity_id) is None
    await one.close()
    await two.close()


async def test_events_report_started_and_completed_with_counts(clock):
    cloud = MemoryStore("cloud")
    orchestrator = await device(cloud, clock)
    seen: list[Any] = []
    orchestrator.events.add_listener(seen.append)
    await orchestrator.repo("Note").save({"title": "x"})
    await orchestrator.sync_now("store->local")  # the scheduler is not started: runs inline
    assert [(e.kind, e.job) for e in seen] == [
        ("started", "store->local"),
        ("completed", "store->local"),
    ]
    orchestrator.scheduler.start()
    await orchestrator.repo("Note").save({"title": "y"})
    await orchestrator.sync_now("store->local")  # through the queue
    assert [(e.kind, e.job) for e in seen[2:]] == [
        ("started", "store->local"),
        ("completed", "store->local"),
    ]
    counts = seen[-1].result.counts()
    assert counts["merged"] == 1 and counts["written_target"] == 1
    assert orchestrator.counters["runs_completed"] == 2
    await orchestrator.close()


async def test_close_keeps_the_tiers_open_when_the_final_flush_fails(clock):
    local = FlakyTier(MemoryStore("local"))
    orchestrator = await DataOrchestrator.load(prefix="app", local=local, clock=clock, start=False)
    entity_id = await orchestrator.repo("Note").save({"title": "precious"})
    local.down = True
    with pytest.raises(SourceUnavailableError):
        await orchestrator.close()
    local.down = False
    await orchestrator.close()
    blob = present(await local.inner.load("app.global"))
    assert entity_id in blob["Note"]


async def test_a_cloud_that_is_down_then_back_loses_nothing_and_sync_resumes(clock):
    cloud_store = MemoryStore("cloud")
    cloud = FlakyTier(cloud_store)
    cloud.down = True
    settings = SyncSettings(store_interval=0.02, cloud_interval=60, retry_base=0.01, retry_max=0.05)
    orchestrator = await DataOrchestrator.load(
        prefix="app", local=MemoryStore("local"), cloud=cloud, settings=settings, clock=clock
    )
    failures = []
    orchestrator.events.add_listener(
        lambda e: failures.append(e) if e.kind == "failed" and e.job == "local->cloud" else None
    )
    notes = orchestrator.repo("Note")
    ids = [await notes.save({"title": f"offline {n}"}) for n in range(5)]
    await async_wait_until(lambda: len(failures) >= 3, message="retries while the cloud is down")
    assert all(f.transient and f.retry_in is not None for f in failures)
    assert await cloud_store.metadata() == {}
    cloud.down = False

    async def in_cloud():
        blob = await cloud_store.load("app.global")
        return blob is not None and set(ids) <= set(blob.get("Note", {}))

    await async_wait_until(in_cloud, message="sync resumed after the cloud came back")
    await orchestrator.close()


async def test_a_fatal_cloud_error_is_reported_and_not_retried(clock):
    class RefusingCloud(MemoryStore):
        async def metadata(self):
            raise UnauthorizedError("token refused")

    settings = SyncSettings(cloud_interval=60, retry_base=0.01)
    orchestrator = await DataOrchestrator.load(
        prefix="app",
        local=MemoryStore("local"),
        cloud=RefusingCloud("cloud"),
        settings=settings,
        clock=clock,
    )
    with pytest.raises(UnauthorizedError):
        await orchestrator.sync_now("local->cloud")
    await asyncio.sleep(0.05)
    assert orchestrator.counters["runs_failed_fatal"] >= 1
    assert orchestrator.counters["retries_scheduled"] == 0
    await orchestrator.close()


async def test_tombstones_are_purged_after_retention_once_every_tier_holds_them(clock):
    cloud = MemoryStore("cloud")
    orchestrator = await device(cloud, clock, settings=SyncSettings(tombstone_retention=86400))
    notes = orchestrator.repo("Note")
    gone, kept = await notes.save({"title": "gone"}), await notes.save({"title": "kept"})
    await notes.delete(gone)
    await orchestrator.sync_now()
    clock.advance(2 * 86400)
    assert await orchestrator.purge_tombstones() == 1
    for tier in (orchestrator.store, orchestrator.local, cloud):
        blob = present(await tier.load("app.global"))
        assert "deleted" not in blob and kept in blob["Note"]
    assert orchestrator.counters["tombstones_purged"] == 1
    await orchestrator.close()


async def test_tombstones_a_tier_has_not_seen_are_kept(clock):
    cloud = MemoryStore("cloud")
    orchestrator = await device(cloud, clock, settings=SyncSettings(tombstone_retention=86400))
    notes = orchestrator.repo("Note")
    gone = await notes.save({"title": "gone"})
    await orchestrator.sync_now()
    await notes.delete(gone)
    await orchestrator.sync_now("store->local")  # the cloud has not seen the delete
    clock.advance(2 * 86400)
    assert await orchestrator.sync_now(PURGE_JOB) == [0]
    assert "deleted" in await orchestrator.local.load("app.global")
    await orchestrator.close()


async def test_a_purged_tombstone_is_not_brought_back_by_a_device_that_still_holds_it(clock):
    cloud = MemoryStore("cloud")
    settings = SyncSettings(tombstone_retention=86400)
    one, two = (
        await device(cloud, clock, settings=settings),
        await device(cloud, clock, settings=settings),
    )
    notes = one.repo("Note")
    gone = await notes.save({"title": "gone"})
    await notes.delete(gone)
    await full_round(one, two)
    await two.repo("Note").query()  # device two hydrates the key: its store holds the tombstone
    clock.advance(2 * 86400)
    assert await one.purge_tombstones() == 1
    await full_round(two, one)
    for tier in (cloud, one.local, two.local, two.store):
        blob = await tier.load("app.global")
        assert blob is None or "deleted" not in blob
    await one.close()
    await two.close()
