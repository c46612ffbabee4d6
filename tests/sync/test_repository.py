import asyncio
from datetime import UTC, date, datetime

import pytest

from tidemark.core import (
    MAX_JSON_DEPTH,
    DataValidationError,
    ManualClock,
    ParameterValidationError,
)
from tidemark.sync import (
    DataOrchestrator,
    DateKeyStrategy,
    DateRange,
    MemoryStore,
    Query,
    key_of_id,
    new_id,
)

from ._faults import FlakyTier, present


@pytest.fixture
def clock():
    return ManualClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
async def orchestrator(clock):
    made = await DataOrchestrator.load(
        prefix="app", strategy=DateKeyStrategy(), clock=clock, start=False
    )
    yield made
    await made.close()


async def test_save_assigns_an_id_in_the_strategys_partition_and_stamps(orchestrator):
    notes = orchestrator.repo("Note")
    draft = {"title": "hello"}
    entity_id = await notes.save(draft)
    assert draft == {"title": "hello"}  # the input is not modified
    assert key_of_id("app", entity_id) == "app.Note.2024"
    stored = await notes.get(entity_id)
    assert stored["title"] == "hello"
    assert stored["version"] == 1
    assert stored["created_at"] == stored["updated_at"] == "2024-05-01T12:00:00.000000Z"


async def test_an_update_bumps_version_and_updated_at_but_keeps_created_at(orchestrator, clock):
    notes = orchestrator.repo("Note")
    entity_id = await notes.save({"title": "a"})
    first = await notes.get(entity_id)
    clock.advance(5)
    await notes.save({**first, "title": "b", "created_at": "1999-01-01T00:00:00Z"})
    second = await notes.get(entity_id)
    assert second["version"] == 2
    assert second["updated_at"] > first["updated_at"]
    assert second["created_at"] == first["created_at"]


async def test_a_save_that_changes_nothing_writes_nothing(orchestrator, clock):
    notes = orchestrator.repo("Note")
    entity_id = await notes.save({"title": "a"})
    first = await notes.get(entity_id)
    clock.advance(5)
    sub = orchestrator.store.changes.subscribe()
    assert await notes.save({**first, "updated_at": "whatever", "version": 99}) == entity_id
    assert await notes.get(entity_id) == first
    assert sub.pending() == 0


async def test_delete_leaves_a_tombstone_and_a_later_save_brings_the_entity_back(orchestrator):
    notes = orchestrator.repo("Note")
    entity_id = await notes.save({"title": "a"})
    assert await notes.delete(entity_id) is True
    assert await notes.get(entity_id) is None
    assert await notes.delete(entity_id) is False
    key = key_of_id("app", entity_id)
    assert await orchestrator.store.tombstone(key, "Note", entity_id) is not None
    await notes.save({"id": entity_id, "title": "back"})
    assert (await notes.get(entity_id))["title"] == "back"
    assert await orchestrator.store.tombstone(key, "Note", entity_id) is None


async def test_deleting_an_unknown_id_still_records_the_delete(orchestrator):
    notes = orchestrator.repo("Note")
    entity_id = new_id("Note.2024")
    assert await notes.delete(entity_id) is False
    assert await orchestrator.store.tombstone("app.Note.2024", "Note", entity_id)


async def test_bad_input_gets_clear_errors(orchestrator):
    notes = orchestrator.repo("Note")
    with pytest.raises(DataValidationError):
        await notes.save({"id": "not-an-id"})
    with pytest.raises(DataValidationError):
        await notes.save({"tags": {"a set", "is not JSON"}})
    with pytest.raises(DataValidationError):
        await notes.save(["not", "an", "object"])
    with pytest.raises(DataValidationError):
        await notes.get("nope")
    with pytest.raises(ParameterValidationError):
        orchestrator.repo("deleted")
    with pytest.raises(ParameterValidationError):
        orchestrator.repo("Bad Name")


async def test_query_filters_and_sorts_across_partitions(orchestrator):
    people = orchestrator.repo("Person")
    rows = [
        ("Ada", "red", 36, "2023-03-01T00:00:00Z"),
        ("Bob", "blue", 25, "2024-01-01T00:00:00Z"),
        ("Cy", "red", 25, "2024-02-01T00:00:00Z"),
        ("Di", "red", 41, "2022-07-01T00:00:00Z"),
    ]
    for name, team, age, created in rows:
        await people.save({"name": name, "team": team, "age": age, "created_at": created})
    await orchestrator.repo("Note").save({"team": "red"})
    red = await people.query(where={"team": "red"}, sort=[("age", "asc"), ("name", "desc")])
    assert [p["name"] for p in red] == ["Cy", "Ada", "Di"]
    by_team = await people.query(sort=[("team", "desc"), ("age", "desc")])
    assert [p["name"] for p in by_team] == ["Di", "Ada", "Cy", "Bob"]
    recent = await people.query(
        Query(scope=DateRange(date(2024, 1, 1), date(2024, 12, 31)), sort=(("name", "asc"),))
    )
    assert [p["name"] for p in recent] == ["Bob", "Cy"]
    some = await people.query(ids=[red[0]["id"], by_team[0]["id"]], sort=[("name", "asc")])
    assert [p["name"] for p in some] == ["Cy", "Di"]
    with pytest.raises(TypeError):
        await people.query(Query(), where={"a": 1})


async def test_observe_emits_current_value_then_only_real_changes(orchestrator, clock):
    notes = orchestrator.repo("Note")
    entity_id = await notes.save({"title": "a"})
    async with notes.observe(entity_id) as stream:
        assert (await asyncio.wait_for(anext(stream), 1))["title"] == "a"
        clock.advance(1)
        await notes.save({**(await notes.get(entity_id)), "title": "a"})  # no change
        await notes.save({**(await notes.get(entity_id)), "title": "b"})
        assert (await asyncio.wait_for(anext(stream), 1))["title"] == "b"
        await notes.delete(entity_id)
        assert await asyncio.wait_for(anext(stream), 1) is None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)


async def test_observe_of_an_unknown_id_starts_with_none(orchestrator):
    notes = orchestrator.repo("Note")
    entity_id = new_id("Note.2024")
    async with notes.observe(entity_id) as stream:
        assert await asyncio.wait_for(anext(stream), 1) is None
        await notes.save({"id": entity_id, "title": "now"})
        assert (await asyncio.wait_for(anext(stream), 1))["title"] == "now"


async def test_observe_all_emits_the_matching_list_on_each_change_that_alters_it(orchestrator):
    people = orchestrator.repo("Person")
    ada = await people.save({"name": "Ada", "team": "red"})
    query = Query(where={"team": "red"}, sort=(("name", "asc"),))
    async with people.observe_all(query) as stream:
        assert [p["name"] for p in await asyncio.wait_for(anext(stream), 1)] == ["Ada"]
        await people.save({"name": "Bob", "team": "blue"})  # does not alter the red list
        await orchestrator.repo("Task").save({"team": "red"})  # another entity name
        await people.save({"name": "Cy", "team": "red"})
        assert [p["name"] for p in await asyncio.wait_for(anext(stream), 1)] == ["Ada", "Cy"]
        await people.delete(ada)
        assert [p["name"] for p in await asyncio.wait_for(anext(stream), 1)] == ["Cy"]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)


async def test_an_entity_too_deep_to_sync_is_refused_at_save(orchestrator):
    notes = orchestrator.repo("Note")
    deep: object = "leaf"
    for _ in range(MAX_JSON_DEPTH - 2):
        deep = [deep]
    assert await notes.save({"title": "fits", "x": deep[0]})  # type: ignore[index]
    with pytest.raises(DataValidationError, match="too deeply"):
        await notes.save({"title": "too deep", "x": deep})


async def test_observers_see_changes_that_arrive_by_sync(clock):
    local = MemoryStore("local")
    device = await DataOrchestrator.load(prefix="app", local=local, clock=clock, start=False)
    notes = device.repo("Note")
    entity_id = await notes.save({"title": "mine"})
    await device.flush()
    async with notes.observe(entity_id) as stream:
        assert present(await asyncio.wait_for(anext(stream), 1))["title"] == "mine"
        blob = present(await local.load("app.global"))
        clock.advance(1)
        blob["Note"][entity_id] = {
            **blob["Note"][entity_id],
            "title": "remote",
            "updated_at": "2024-05-01T12:00:30.000000Z",  # a later device, within the skew
        }
        await local.store("app.global", blob)
        await device.flush()
        assert present(await asyncio.wait_for(anext(stream), 1))["title"] == "remote"
    await device.close()


async def test_a_read_hydrates_a_missing_key_from_local_then_cloud(clock):
    local, cloud = MemoryStore("local"), MemoryStore("cloud")
    in_local, in_cloud = new_id("a"), new_id("b")
    await local.store("app.a", {"Note": {in_local: {"id": in_local, "title": "L"}}})
    await cloud.store("app.b", {"Note": {in_cloud: {"id": in_cloud, "title": "C"}}})
    device = await DataOrchestrator.load(
        prefix="app", local=local, cloud=cloud, clock=clock, start=False
    )
    notes = device.repo("Note")
    assert present(await notes.get(in_local))["title"] == "L"
    assert present(await notes.get(in_cloud))["title"] == "C"
    assert await local.load("app.b") is not None  # kept locally as well
    assert await notes.get(new_id("c")) is None
    assert device.counters["hydrations"] == 2
    assert device.counters["hydration_misses"] == 1
    await device.close()


async def test_hydration_skips_a_cloud_that_is_down_and_tries_again_later(clock):
    cloud_store = MemoryStore("cloud")
    cloud = FlakyTier(cloud_store)
    entity_id = new_id("b")
    await cloud_store.store("app.b", {"Note": {entity_id: {"id": entity_id, "title": "C"}}})
    cloud.down = True
    device = await DataOrchestrator.load(
        prefix="app", local=MemoryStore("local"), cloud=cloud, clock=clock, start=False
    )
    notes = device.repo("Note")
    assert await notes.get(entity_id) is None  # offline: what we have, no error
    assert device.counters["hydration_failures"] == 1
    cloud.down = False
    clock.advance(device.settings.retry_base + 0.1)
    assert present(await notes.get(entity_id))["title"] == "C"
    await device.close()
