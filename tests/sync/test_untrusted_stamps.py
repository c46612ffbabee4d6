"""Stamps from broken clocks never win: a version stamped far in the future, met on a server
that accepted it (an old server) or in a folder tier, is quarantined and reported, and no edit
made after it is lost. Against a real tidemark app on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.api._sync import collection_of, document_id
from tidemark.core import ManualClock
from tidemark.store import Store, open_store
from tidemark.sync import (
    CloudTier,
    DataOrchestrator,
    FolderTier,
    KeyMetadata,
    SqliteTier,
    SyncEvent,
    SyncSettings,
    format_stamp,
    sync_tiers,
)

from ._cloud_server import ServerThread
from ._faults import present

FUTURE = "9999-12-31T23:59:59.999999Z"


@pytest.fixture
async def server_store(store_url: str) -> AsyncIterator[Store]:
    store = await open_store(store_url)
    yield store
    await store.close()


@pytest.fixture
def server(server_store: Store) -> Iterator[ServerThread]:
    thread = ServerThread(create_app(server_store, ServerSettings()))
    thread.start()
    yield thread
    thread.stop()


async def plant(store: Store, namespace: str, key: str, change: Any) -> None:
    """Rewrite a blob in the server's store directly, as an old server that accepted any stamp
    would have stored it."""
    collection, doc_id = collection_of(namespace), document_id(key)
    current = await store.get(collection, doc_id)
    blob = change(current.body["blob"] if current else {})
    body = {"key": key, "blob": blob, "meta": KeyMetadata.of(blob).to_json()}
    await store.put(collection, doc_id, body)


async def test_edits_after_a_far_future_stamp_are_never_reverted(
    server: ServerThread, server_store: Store, tmp_path: Path
):
    device = await DataOrchestrator.load(
        prefix="app",
        local=SqliteTier(tmp_path / "device.db"),
        cloud=CloudTier(server.url, "notes"),
        start=False,
    )
    events: list[SyncEvent] = []
    device.events.add_listener(events.append)
    notes = device.repo("Note")
    note = await notes.save({"title": "v0"})
    await device.sync_now()

    def poison(blob: dict[str, Any]) -> dict[str, Any]:
        blob["Note"][note] = {**blob["Note"][note], "title": "poison", "updated_at": FUTURE}
        return blob

    await plant(server_store, "notes", "app.global", poison)
    reverted = []
    for n in range(10):
        await notes.save({**present(await notes.get(note)), "title": f"edit {n}"})
        await device.sync_now()
        if present(await notes.get(note))["title"] != f"edit {n}":
            reverted.append(n)
    assert reverted == []  # before: 7 of 10 edits came back reverted after the sync
    # The poisoned version was set aside and reported, whole; the server now holds the edit.
    found = [e.quarantine for e in events if e.kind == "version_quarantined"]
    assert found and found[0] is not None
    assert (found[0].tier, found[0].stamp, found[0].version["title"]) == ("cloud", FUTURE, "poison")
    assert device.counters["versions_quarantined"] >= 1
    stored = await server_store.get(collection_of("notes"), document_id("app.global"))
    assert stored.body["blob"]["Note"][note]["title"] == "edit 9"
    await device.close()


async def test_a_new_device_never_adopts_a_far_future_version(
    server: ServerThread, server_store: Store, tmp_path: Path
):
    writer = await DataOrchestrator.load(
        prefix="app",
        local=SqliteTier(tmp_path / "writer.db"),
        cloud=CloudTier(server.url, "notes"),
        start=False,
    )
    kept = await writer.repo("Note").save({"title": "kept"})
    poisoned = await writer.repo("Note").save({"title": "good"})
    await writer.sync_now()
    await writer.close()

    def poison(blob: dict[str, Any]) -> dict[str, Any]:
        blob["Note"][poisoned] = {**blob["Note"][poisoned], "updated_at": FUTURE, "title": "bad"}
        return blob

    await plant(server_store, "notes", "app.global", poison)
    reader = await DataOrchestrator.load(
        prefix="app",
        local=SqliteTier(tmp_path / "reader.db"),
        cloud=CloudTier(server.url, "notes"),
        start=False,
    )
    notes = reader.repo("Note")
    assert present(await notes.get(kept))["title"] == "kept"
    assert await notes.get(poisoned) is None  # quarantined on hydration, not adopted
    rewritten = await notes.save({"id": poisoned, "title": "written again"})
    await reader.sync_now()
    assert present(await notes.get(rewritten))["title"] == "written again"
    await reader.close()


async def test_a_folder_file_from_a_broken_clock_is_quarantined_and_named(tmp_path: Path):
    clock = ManualClock()
    folder = FolderTier(tmp_path / "shared")
    local = SqliteTier(tmp_path / "local.db")
    device = await DataOrchestrator.load(
        prefix="app", local=local, cloud=folder, clock=clock, start=False
    )
    notes = device.repo("Note")
    note = await notes.save({"title": "mine"})
    await device.sync_now()
    # Another device wrote the shared folder with its clock at the end of time.
    path = folder.path_of("app.global")
    blob = orjson.loads(path.read_bytes())
    blob["Note"][note].update(title="theirs", updated_at=FUTURE)
    path.write_bytes(orjson.dumps(blob))
    result = await sync_tiers(local, folder, not_after=device.hybrid_clock.not_after())
    [quarantined] = result.quarantined
    assert (quarantined.key, quarantined.tier, quarantined.entity_id) == (
        "app.global",
        "folder",
        note,
    )
    assert result.counts()["quarantined"] == 1
    assert orjson.loads(path.read_bytes())["Note"][note]["title"] == "mine"
    await device.close()


async def test_the_orchestrator_quarantines_with_its_configured_skew(tmp_path: Path):
    clock = ManualClock()
    local = SqliteTier(tmp_path / "local.db")
    device = await DataOrchestrator.load(
        prefix="app",
        local=local,
        clock=clock,
        settings=SyncSettings(max_clock_skew=60),
        start=False,
    )
    notes = device.repo("Note")
    note = await notes.save({"title": "mine"})
    await device.flush()
    blob = await local.load("app.global")
    assert blob is not None
    ahead = format_stamp(clock.now() + timedelta(seconds=120))
    blob["Note"][note].update(title="from a clock two minutes ahead", updated_at=ahead)
    await local.store("app.global", blob)
    result = (await device.sync_now("store->local"))[0]
    assert [(q.entity_id, q.stamp, q.tier) for q in result.quarantined] == [(note, ahead, "local")]
    assert present(await notes.get(note))["title"] == "mine"
    clock.advance(61)  # now within the skew: the same stamp is accepted and wins
    blob = await local.load("app.global")
    assert blob is not None
    blob["Note"][note].update(title="from a clock one minute ahead", updated_at=ahead)
    await local.store("app.global", blob)
    assert (await device.sync_now("store->local"))[0].quarantined == []
    assert present(await notes.get(note))["title"] == "from a clock one minute ahead"
    await device.close()
