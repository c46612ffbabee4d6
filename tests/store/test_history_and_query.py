"""Change-only history and listing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tidemark.core import ManualClock, ParameterValidationError
from tidemark.store import Store, open_store
from tidemark.store._migrations import SQLITE_MIGRATIONS

from . import samples


async def test_history_keeps_previous_representations_newest_first(
    store: Store, clock: ManualClock
):
    v1 = (await store.upsert("schools", samples.school(1, name="One"))).document
    clock.advance(1)
    v2 = (await store.upsert("schools", samples.school(1, name="Two"))).document
    clock.advance(1)
    await store.upsert("schools", samples.school(1, name="Two"))  # no-op: no history row
    clock.advance(1)
    v3 = (await store.upsert("schools", samples.school(1, name="Three"))).document
    entries = await store.history("ed-fi:schools", v1.id)
    assert [e.body["nameOfInstitution"] for e in entries] == ["Two", "One"]
    assert [e.content_version for e in entries] == [v2.content_version, v1.content_version]
    assert [e.superseded_by for e in entries] == [v3.content_version, v2.content_version]
    # validity intervals chain: each runs from its own _lastModifiedDate to the next one's
    assert entries[1].valid_from == v1.content_last_modified_at
    assert entries[1].valid_to == v2.content_last_modified_at == entries[0].valid_from
    assert entries[0].valid_to == v3.content_last_modified_at
    assert not any(e.deleted for e in entries)


async def test_delete_closes_history_with_a_deleted_entry(store: Store, clock: ManualClock):
    school = (await store.upsert("schools", samples.school(1))).document
    clock.advance(2)
    tomb = await store.delete("ed-fi:schools", school.id)
    entries = await store.history("ed-fi:schools", school.id)
    assert len(entries) == 1 and entries[0].deleted
    assert entries[0].superseded_by == tomb.change_version
    assert entries[0].valid_to == school.content_last_modified_at + timedelta(seconds=2)


async def test_query_pages_and_counts(store: Store):
    for i in range(7):
        await store.upsert("schools", samples.school(i + 1))
    page = await store.query("ed-fi:schools", limit=3, offset=2, total_count=True)
    assert [d.body["schoolId"] for d in page.items] == [3, 4, 5]
    assert page.total == 7
    assert (await store.query("ed-fi:schools", limit=3)).total is None
    assert (await store.query("ed-fi:schools", limit=0, total_count=True)).items == []


async def test_query_filters_on_json_paths_with_types(store: Store):
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    for school_id in (1, 2):
        await store.upsert("schools", samples.school(school_id))
        await store.upsert(
            "classPeriods",
            {**samples.class_period("P1", school_id), "officialAttendancePeriod": school_id == 1},
        )
    found = await store.query("ed-fi:classPeriods", where={"$.schoolReference.schoolId": 2})
    assert [d.body["schoolReference"]["schoolId"] for d in found.items] == [2]
    flagged = await store.query("ed-fi:classPeriods", where={"$.officialAttendancePeriod": True})
    assert [d.body["schoolReference"]["schoolId"] for d in flagged.items] == [1]
    none = await store.query("ed-fi:classPeriods", where={"$.schoolReference.schoolId": "2"})
    assert none.items == []  # a string never equals a number


async def test_query_by_last_modified_and_order(store: Store, clock: ManualClock):
    first = (await store.put("fhir:Patient", "a", {"resourceType": "Patient"})).document
    clock.advance(10)
    second = (await store.put("fhir:Patient", "b", {"resourceType": "Patient"})).document
    after = await store.query("fhir:Patient", modified=[("gt", first.content_last_modified_at)])
    assert [d.id for d in after.items] == ["b"]
    newest = await store.query("fhir:Patient", order="-last_modified")
    assert [d.id for d in newest.items] == ["b", "a"]
    assert second.content_last_modified_at > first.content_last_modified_at
    with pytest.raises(ParameterValidationError):
        await store.query("fhir:Patient", order="random")


async def test_reopening_a_store_keeps_everything_and_does_not_migrate_twice(
    store_url: str, clock: ManualClock
):
    store = await open_store(store_url, clock=clock)
    school = (await store.upsert("schools", samples.school(1))).document
    await store.close()
    store = await open_store(store_url, clock=clock)
    try:
        assert (await store.get("ed-fi:schools", school.id)).body == school.body
        assert await store.newest_change_version() == school.content_version
        rows = await store.engine.read(lambda tx: tx.query("SELECT version FROM schema_migrations"))
        assert [int(r[0]) for r in rows] == [version for version, _ in SQLITE_MIGRATIONS]
    finally:
        await store.close()
