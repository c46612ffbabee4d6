"""Representation stamps: one global sequence, one value per changed document, no-ops free."""

from __future__ import annotations

import asyncio

from tidemark.core import ManualClock, parse_json
from tidemark.store import Store

from . import samples
from .helpers import count, journal


async def test_insert_gets_one_distinct_version_for_content_and_identity(store: Store):
    first = await store.upsert("schools", samples.school(1))
    second = await store.upsert("schools", samples.school(2))
    a, b = first.document, second.document
    assert first.created and second.created
    assert a.content_version == a.identity_version
    assert b.content_version == b.identity_version
    assert b.content_version > a.content_version
    assert a.content_last_modified_at == a.identity_last_modified_at


async def test_noop_post_allocates_no_change_version(store: Store, clock: ManualClock):
    created = (await store.upsert("schools", samples.school(1))).document
    before = await store.newest_change_version()
    clock.advance(60)
    again = await store.upsert("schools", {"nameOfInstitution": "Grand Bend High", "schoolId": 1})
    assert again.changed is False and again.created is False
    assert again.document.content_version == created.content_version
    assert again.document.content_last_modified_at == created.content_last_modified_at
    assert again.document.etag == created.etag
    assert await store.newest_change_version() == before
    assert await count(store, "journal") == 1
    assert await count(store, "history") == 0


async def test_noop_put_allocates_no_change_version(store: Store, clock: ManualClock):
    created = (await store.upsert("schools", samples.school(1))).document
    before = await store.newest_change_version()
    clock.advance(60)
    body = created.representation()  # echoing id, _etag and _lastModifiedDate is allowed
    outcome = await store.replace("schools", created.id, body)
    assert not outcome.changed
    assert outcome.document.representation() == created.representation()
    assert await store.newest_change_version() == before
    assert await count(store, "history") == 0


async def test_update_bumps_content_version_but_not_identity_version(
    store: Store, clock: ManualClock
):
    created = (await store.upsert("schools", samples.school(1))).document
    clock.advance(5)
    updated = (await store.upsert("schools", samples.school(1, name="Renamed High"))).document
    assert updated.id == created.id
    assert updated.content_version > created.content_version
    assert updated.identity_version == created.identity_version
    assert updated.content_last_modified_at > created.content_last_modified_at
    assert updated.identity_last_modified_at == created.identity_last_modified_at


async def test_server_members_in_a_body_are_ignored(store: Store):
    body = {
        **samples.school(1),
        "id": "not-mine",
        "_etag": "999",
        "_lastModifiedDate": "2000-01-01T00:00:00Z",
    }
    document = (await store.upsert("schools", body)).document
    assert document.id != "not-mine"
    assert document.body == samples.school(1)
    assert document.representation()["_etag"] == str(document.content_version)


async def test_representation_carries_id_etag_and_utc_last_modified(store: Store):
    document = (await store.upsert("schools", samples.school(1))).document
    rep = document.representation()
    assert rep["id"] == document.id
    assert rep["_etag"] == str(document.content_version)
    assert rep["_lastModifiedDate"] == "2025-03-01T12:00:00.000Z"
    assert document.etag.header() == f'"{document.content_version}"'


async def test_every_representation_change_appends_one_journal_row(store: Store):
    await samples.seed_chain(store)
    rows = await journal(store)
    versions = [v for v, _ in rows]
    assert versions == sorted(set(versions))
    assert len(rows) == 5
    assert await store.newest_change_version() == versions[-1]


async def test_change_and_change_back_in_one_cascade_is_not_a_change(store: Store):
    # Two cascades that cancel out are separate requests; inside one request a body equal to the
    # stored one must allocate nothing even when it went through an identity rewrite.
    chain = await samples.seed_chain(store)
    before = await store.newest_change_version()
    session = chain["session"]
    outcome = await store.replace("sessions", session.id, session.body)
    assert not outcome.changed
    assert await store.newest_change_version() == before


async def test_concurrent_inserts_get_unique_versions(store: Store):
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))
    outcomes = await asyncio.gather(
        *(store.upsert("sessions", samples.session(name=f"S{i}")) for i in range(20))
    )
    versions = [o.document.content_version for o in outcomes]
    assert len(set(versions)) == 20


async def test_concurrent_upserts_of_one_natural_key_make_one_document(store: Store):
    outcomes = await asyncio.gather(
        *(store.upsert("schools", samples.school(7, name=f"Name {i}")) for i in range(10))
    )
    ids = {o.document.id for o in outcomes}
    assert len(ids) == 1
    assert sum(o.created for o in outcomes) == 1
    page = await store.query("ed-fi:schools", total_count=True)
    assert page.total == 1


async def test_stored_body_is_canonical_json(store: Store):
    document = (await store.upsert("schools", {"schoolId": 3, "nameOfInstitution": "Z"})).document

    def raw(tx):
        return tx.query_one("SELECT body FROM documents WHERE id = ?", (document.id,))[0]

    text = await store.engine.read(raw)
    assert text == '{"nameOfInstitution":"Z","schoolId":3}'
    assert parse_json(text) == document.body


async def test_current_version_follows_the_document_without_loading_it(store: Store):
    created = (await store.upsert("schools", samples.school(1))).document
    assert await store.current_version(created.collection, created.id) == created.content_version
    renamed = {**samples.school(1), "nameOfInstitution": "Renamed"}
    updated = (await store.upsert("schools", renamed)).document
    assert await store.current_version(created.collection, created.id) == updated.content_version
    await store.delete(created.collection, created.id)
    assert await store.current_version(created.collection, created.id) is None
    assert await store.current_version(created.collection, "no-such-id") is None


async def test_a_point_read_after_close_fails_instead_of_reading(store: Store):
    import pytest

    from tidemark.core import SourceUnavailableError

    created = (await store.upsert("schools", samples.school(1))).document
    await store.close()
    # SQLite says the store is closed; PostgreSQL's worker pool refuses new work
    with pytest.raises((SourceUnavailableError, RuntimeError)):
        await store.get(created.collection, created.id)
