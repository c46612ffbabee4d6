"""Building the index: reindex when an indexer's fingerprint changes, and identity cascades."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from tests.store import samples
from tests.support import async_wait_until
from tidemark.core import ManualClock
from tidemark.store import IndexEntry, KeyEntry, KeyIn, Store, open_store

C = "v:docs"


class Versioned:
    """Key ``v`` = ``<version>:<n>``; optionally blocks (in the reindex's worker thread) on the
    document with ``n == pause_at`` until ``gate`` is set, after setting ``reached``."""

    def __init__(self, version: int, pause_at: int | None = None) -> None:
        self.fingerprint = f"versioned/{version}"
        self.version = version
        self.pause_at = pause_at
        self.reached = threading.Event()
        self.gate = threading.Event()

    def entries(self, collection: str, body: Mapping[str, Any]) -> Iterable[IndexEntry]:
        if body["n"] == self.pause_at and threading.current_thread() is not threading.main_thread():
            self.reached.set()
            self.gate.wait(timeout=30)
        yield KeyEntry("v", f"{self.version}:{body['n']}")


async def keys(store: Store) -> list[tuple[str, str]]:
    def read(tx: Any) -> list[tuple[str, str]]:
        rows = tx.query(
            "SELECT d.id, i.key FROM index_keys i JOIN documents d ON d.doc_pk = i.doc_pk "
            "WHERE i.collection = ? ORDER BY 1, 2",
            (C,),
        )
        return [(str(a), str(b)) for a, b in rows]

    return await store.engine.read(read)


async def found(store: Store, key: str) -> list[str]:
    return [d.id for d in (await store.search(C, [KeyIn("v", [key])])).items]


async def test_a_new_fingerprint_reindexes_in_the_background_with_progress(
    store_url: str, clock: ManualClock
):
    store = await open_store(store_url, clock=clock)
    second = Versioned(2, pause_at=2)
    try:
        first = await store.register_indexer("v:", Versioned(1))
        await first.wait()
        assert first.ready and first.total == 0  # nothing to index yet
        for n in range(5):
            await store.put(C, f"d{n}", {"n": n})
        assert await found(store, "1:3") == ["d3"]

        status = await store.register_indexer("v:", second, batch=2)
        # The first batch (d0, d1) is written; the reindex is held while indexing d2.
        await async_wait_until(lambda: status.done == 2 and second.reached.is_set(), timeout=30)
        assert (status.total, status.ready) == (5, False)
        assert await found(store, "2:0") == ["d0"]
        assert await found(store, "1:3") == ["d3"]  # not reached yet: former entries
        # Writes keep indexing themselves with the new indexer meanwhile.
        await store.put(C, "d4", {"n": 4, "changed": True})
        await store.put(C, "d5", {"n": 5})
        assert await found(store, "2:4") == ["d4"]
        assert await found(store, "2:5") == ["d5"]

        second.gate.set()
        await status.wait()
        # d5 was written after the reindex started: its write indexed it, the reindex did not.
        assert status.ready and status.done == 5 and status.error is None
        assert store.counters["documents_reindexed"] == 5
        assert await keys(store) == [(f"d{n}", f"2:{n}") for n in range(6)]
    finally:
        second.gate.set()
        await store.close()

    # The recorded fingerprint now matches: reopening does not reindex.
    store = await open_store(store_url, clock=clock)
    try:
        status = await store.register_indexer("v:", Versioned(2))
        await status.wait()
        assert status.ready and status.total == 0 and status.done == 0
        assert store.counters["documents_reindexed"] == 0
    finally:
        await store.close()


async def test_closing_the_store_stops_a_running_reindex(store_url: str, clock: ManualClock):
    store = await open_store(store_url, clock=clock)
    held = Versioned(2, pause_at=0)
    try:
        await (await store.register_indexer("v:", Versioned(1))).wait()
        await store.put(C, "d0", {"n": 0})
        status = await store.register_indexer("v:", held)
        await async_wait_until(held.reached.is_set, timeout=30)
    finally:
        held.gate.set()
        await store.close()
    assert not status.ready
    assert isinstance(status.error, asyncio.CancelledError)


async def test_an_identity_cascade_updates_the_referrers_entries(store: Store):
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))
    session = (await store.upsert("sessions", samples.session(1, "Fall"))).document
    await store.upsert("courseOfferings", samples.course_offering("ALG-1", session_name="Fall"))
    await store.upsert("sections", samples.section("S-1", "ALG-1", session_name="Fall"))
    before = await store.query("ed-fi:sections", where={"sessionName": "Fall"})
    assert [d.body["sectionIdentifier"] for d in before.items] == ["S-1"]

    await store.replace("sessions", session.id, samples.session(1, "Autumn"))

    for collection in ("ed-fi:courseOfferings", "ed-fi:sections"):
        assert (await store.query(collection, where={"sessionName": "Fall"})).items == []
        renamed = await store.query(collection, where={"sessionName": "Autumn"})
        assert len(renamed.items) == 1
    assert (await store.query("ed-fi:sessions", where={"sessionName": "Autumn"})).items
