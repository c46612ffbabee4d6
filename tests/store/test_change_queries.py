"""Change Queries: live windows (journal + verify), deletes, key changes, retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tidemark.core import GoneError, ManualClock, ParameterValidationError
from tidemark.store import Store

from . import samples


async def test_live_window_returns_current_representations_in_version_order(store: Store):
    a = (await store.upsert("schools", samples.school(1))).document
    b = (await store.upsert("schools", samples.school(2))).document
    a2 = (await store.upsert("schools", samples.school(1, name="A2"))).document
    page = await store.changes("ed-fi:schools", min_version=a.content_version)
    # a's first version was superseded: only its current representation is listed, after b
    assert [(d.id, d.content_version) for d in page.items] == [
        (b.id, b.content_version),
        (a.id, a2.content_version),
    ]
    window = await store.changes(
        "ed-fi:schools", min_version=a.content_version, max_version=b.content_version
    )
    assert [d.id for d in window.items] == [b.id]
    upper_only = await store.changes("ed-fi:schools", max_version=b.content_version)
    assert [d.id for d in upper_only.items] == [b.id]
    exact = await store.changes(
        "ed-fi:schools", min_version=a2.content_version, max_version=a2.content_version
    )
    assert [d.body["nameOfInstitution"] for d in exact.items] == ["A2"]


async def test_live_window_pages_over_verified_rows(store: Store):
    ids = []
    for i in range(1, 8):
        ids.append((await store.upsert("schools", samples.school(i))).document.id)
    for i in (2, 4):  # two stale journal rows in the middle of the window
        await store.upsert("schools", samples.school(i, name="updated"))
    first = await store.changes("ed-fi:schools", min_version=0, limit=3, total_count=True)
    second = await store.changes("ed-fi:schools", min_version=0, limit=3, offset=3)
    third = await store.changes("ed-fi:schools", min_version=0, limit=3, offset=6)
    seen = [d.id for d in first.items + second.items + third.items]
    assert first.total == 7
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    versions = [d.content_version for d in first.items + second.items + third.items]
    assert versions == sorted(versions)


async def test_live_window_combines_with_query_fields(store: Store):
    await store.upsert("schools", samples.school(1))
    await store.upsert("classPeriods", samples.class_period("P1", 1))
    await store.upsert("schools", samples.school(2))
    await store.upsert("classPeriods", samples.class_period("P1", 2))
    page = await store.changes(
        "ed-fi:classPeriods", min_version=0, where={"$.schoolReference.schoolId": 2}
    )
    assert [d.body["schoolReference"]["schoolId"] for d in page.items] == [2]


async def test_deletes_report_version_and_key_values(store: Store):
    school = (await store.upsert("schools", samples.school(9))).document
    tomb = await store.delete("ed-fi:schools", school.id)
    newest = (await store.available_change_versions()).newest
    assert newest == tomb.change_version
    page = await store.deletes("ed-fi:schools", min_version=newest, max_version=newest)
    assert [(t.id, t.change_version, t.key_values) for t in page.items] == [
        (school.id, newest, {"schoolId": 9})
    ]


async def test_deleted_then_recreated_natural_key_is_not_a_delete(store: Store):
    first = (await store.upsert("schools", samples.school(9))).document
    await store.delete("ed-fi:schools", first.id)
    other = (await store.upsert("schools", samples.school(10))).document
    await store.delete("ed-fi:schools", other.id)
    await store.upsert("schools", samples.school(9))
    page = await store.deletes("ed-fi:schools", min_version=0, total_count=True)
    assert [t.id for t in page.items] == [other.id]
    assert page.total == 1


async def test_key_changes_collapse_and_use_query_field_names(store: Store):
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))
    session = (await store.upsert("sessions", samples.session(name="A"))).document
    await store.replace("sessions", session.id, samples.session(name="B"))
    last = await store.replace("sessions", session.id, samples.session(name="C"))
    page = await store.key_changes("ed-fi:sessions", min_version=0)
    assert len(page.items) == 1
    change = page.items[0]
    assert change.id == session.id and change.change_version == last.document.content_version
    assert change.old_key_values == {"schoolId": 1, "schoolYear": 2025, "sessionName": "A"}
    assert change.new_key_values == {"schoolId": 1, "schoolYear": 2025, "sessionName": "C"}
    # a window that starts after the first change only sees B -> C
    later = await store.key_changes("ed-fi:sessions", min_version=last.document.content_version)
    assert later.items[0].old_key_values["sessionName"] == "B"


async def test_a_key_changed_and_changed_back_is_not_listed(store: Store):
    await store.upsert("schools", samples.school(1))
    period = (await store.upsert("classPeriods", samples.class_period("P1"))).document
    await store.replace("classPeriods", period.id, samples.class_period("P2"))
    await store.replace("classPeriods", period.id, samples.class_period("P1"))
    assert (await store.key_changes("ed-fi:classPeriods", min_version=0)).items == []


async def test_window_errors(store: Store):
    with pytest.raises(ParameterValidationError):
        await store.changes("ed-fi:schools", min_version=5, max_version=4)
    with pytest.raises(ParameterValidationError):
        await store.deletes("ed-fi:schools", min_version=-1)


async def test_available_change_versions_start_at_zero(store: Store):
    versions = await store.available_change_versions()
    assert (versions.oldest, versions.newest) == (0, 0)
    doc = (await store.upsert("schools", samples.school(1))).document
    assert (await store.available_change_versions()).newest == doc.content_version


async def test_retention_purges_old_changes_and_answers_410_below_oldest(
    store: Store, clock: ManualClock
):
    old = [(await store.upsert("schools", samples.school(i))).document for i in range(1, 4)]
    await store.delete("ed-fi:schools", old[2].id)
    clock.advance(3600)
    fresh = (await store.upsert("schools", samples.school(7))).document
    removed = await store.purge_changes(clock.now() - timedelta(minutes=30), batch=2)
    assert removed == 4  # three journal rows and one tombstone
    versions = await store.available_change_versions()
    assert versions.oldest == fresh.content_version
    with pytest.raises(GoneError) as info:
        await store.changes("ed-fi:schools", min_version=0)
    assert "no longer retained" in info.value.detail and "full read" in info.value.detail
    with pytest.raises(GoneError):
        await store.deletes("ed-fi:schools")
    page = await store.changes("ed-fi:schools", min_version=versions.oldest)
    assert [d.id for d in page.items] == [fresh.id]
    # documents themselves are untouched by retention
    assert (await store.query("ed-fi:schools", total_count=True)).total == 3
    assert await store.purge_changes(clock.now() - timedelta(minutes=30)) == 0
