"""Keyset walks (cursor paging) and partitions: every document once, whatever is written meanwhile."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tidemark.core import GoneError, ManualClock, ParameterValidationError
from tidemark.store import Cursor, Store, StoredDocument, open_store

from . import samples


async def _walk_all(
    store: Store, collection: str, cursor: Cursor | None = None, limit: int = 3, **kw
) -> list[StoredDocument]:
    seen: list[StoredDocument] = []
    while True:
        page = await store.walk(collection, cursor=cursor, limit=limit, **kw)
        seen.extend(page.items)
        if page.next is None:
            return seen
        assert len(page.items) == limit  # a cursor is handed out only while rows remain
        cursor = page.next


async def test_key_walk_returns_every_document_once_while_others_are_written(store: Store):
    originals = []
    for i in range(20):
        originals.append((await store.put("things", f"t{i:02d}", {"n": i})).document.id)
    seen: list[str] = []
    cursor = None
    step = 0
    while True:
        page = await store.walk("things", cursor=cursor, limit=4)
        seen.extend(d.id for d in page.items)
        # between pages: update documents behind and ahead of the cursor, create new ones
        await store.put("things", originals[step], {"n": step, "touched": True})
        await store.put("things", originals[-1 - step], {"n": -step})
        await store.put("things", f"new{step}", {"n": 100 + step})
        step += 1
        if page.next is None:
            break
        cursor = page.next
    for id in originals:
        assert seen.count(id) == 1, id
    assert all(seen.count(id) <= 1 for id in seen)


async def test_key_walk_skips_deleted_documents_and_never_repeats(store: Store):
    ids = [(await store.put("things", f"t{i}", {"n": i})).document.id for i in range(9)]
    first = await store.walk("things", limit=3)
    await store.delete("things", ids[4])
    await store.delete("things", ids[0])
    rest = await _walk_all(store, "things", cursor=first.next)
    walked = [d.id for d in first.items] + [d.id for d in rest]
    assert walked == [ids[i] for i in (0, 1, 2, 3, 5, 6, 7, 8)]


async def test_walk_pages_match_offset_paging_order(store: Store):
    for i in range(7):
        await store.upsert("schools", samples.school(i + 1))
    walked = await _walk_all(store, "ed-fi:schools", limit=2)
    offset = await store.query("ed-fi:schools", limit=100)
    assert [d.id for d in walked] == [d.id for d in offset.items]
    counted = await store.walk("ed-fi:schools", limit=2, total_count=True)
    assert counted.total == 7
    assert (await store.walk("ed-fi:schools", limit=0)).items == []
    assert (await store.walk("ed-fi:schools", limit=0)).next is None


async def test_change_walk_follows_the_window_in_change_version_order(store: Store):
    docs = [(await store.upsert("schools", samples.school(i + 1))).document for i in range(6)]
    # the first school changes: only its current representation is in the window, last
    changed = (await store.upsert("schools", samples.school(1, name="Renamed"))).document
    low = docs[1].content_version
    walked = await _walk_all(store, "ed-fi:schools", limit=2, min_version=low)
    assert [d.content_version for d in walked] == [
        *(d.content_version for d in docs[1:]),
        changed.content_version,
    ]
    upto = await _walk_all(store, "ed-fi:schools", limit=2, max_version=docs[3].content_version)
    assert [d.id for d in upto] == [d.id for d in docs[1:4]]
    filtered = await _walk_all(
        store, "ed-fi:schools", limit=1, min_version=0, where={"$.nameOfInstitution": "Renamed"}
    )
    assert [d.id for d in filtered] == [docs[0].id]


async def test_partitions_cover_every_matching_document_once(store: Store):
    ids = [(await store.put("things", f"t{i:02d}", {"n": i % 3})).document.id for i in range(23)]
    cursors = await store.partitions("things", 4)
    assert len(cursors) == 4
    chunks = await asyncio.gather(*(_walk_all(store, "things", cursor=c) for c in cursors))
    assert sorted(d.id for chunk in chunks for d in chunk) == sorted(ids)
    assert [len(chunk) for chunk in chunks] == [6, 6, 6, 5]
    assert len(await store.partitions("things", 200)) == 23
    zeros = await store.partitions("things", 2, where={"$.n": 0})
    walked = [d for c in zeros for d in await _walk_all(store, "things", c, where={"$.n": 0})]
    assert sorted(d.id for d in walked) == sorted(ids[::3])
    assert await store.partitions("nothing-here", 3) == []


async def test_walk_arguments_are_checked(store: Store):
    with pytest.raises(ParameterValidationError):
        await store.walk("things", limit=-1)
    with pytest.raises(ParameterValidationError):
        await store.walk("things", cursor=Cursor("sideways", 0, 10))
    with pytest.raises(ParameterValidationError):
        await store.partitions("things", 0)
    with pytest.raises(ParameterValidationError):
        await store.walk("things", min_version=5, max_version=4)


async def test_change_walk_is_gone_once_its_window_is_purged(store: Store, clock: ManualClock):
    first = (await store.upsert("schools", samples.school(1))).document
    clock.advance(2 * 86400)
    await store.upsert("schools", samples.school(2))
    await store.purge_changes(clock.now() - timedelta(days=1))
    with pytest.raises(GoneError):
        await store.walk("ed-fi:schools", min_version=first.content_version)
    with pytest.raises(GoneError):
        await store.walk("ed-fi:schools", cursor=Cursor("change", first.content_version - 1, 99))
    assert len((await store.walk("ed-fi:schools")).items) == 2


async def test_a_version_1_store_is_upgraded_with_the_walk_index(store_url: str):
    store = await open_store(store_url)
    await store.put("things", "a", {"n": 1})
    # make it look like a store written before migration 2
    await store.engine.write(lambda tx: tx.execute("DROP INDEX documents_walk"))
    await store.engine.write(
        lambda tx: tx.execute("DELETE FROM schema_migrations WHERE version = 2")
    )
    await store.close()
    store = await open_store(store_url)
    try:
        versions = await store.engine.read(
            lambda tx: tx.query("SELECT version FROM schema_migrations ORDER BY version")
        )
        assert [int(v[0]) for v in versions][:2] == [1, 2]
        assert [d.id for d in (await store.walk("things")).items] == ["a"]
        await store.engine.write(lambda tx: tx.execute("DROP INDEX documents_walk"))  # exists
    finally:
        await store.close()
