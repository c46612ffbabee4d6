import logging
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from tidemark.core import ConfigurationError, CorruptDataError, DataValidationError, canonical_hash
from tidemark.sync import ABSENT, BlobTier, FolderTier, MemoryStore, SqliteTier, StoreTier, new_id

ID = new_id("k")
T1 = "2024-01-01T00:00:01.000000Z"


def blob(title="a", entity_id=ID):
    return {"Note": {entity_id: {"id": entity_id, "title": title, "updated_at": T1}}}


@pytest.fixture(params=["memory", "sqlite", "folder"])
async def tier(request, tmp_path):
    if request.param == "memory":
        made: Any = MemoryStore()
    elif request.param == "sqlite":
        made = SqliteTier(tmp_path / "local.db")
    else:
        made = FolderTier(tmp_path / "blobs")
    yield made
    await made.close()


async def test_every_tier_implements_the_blob_protocol(tier):
    assert isinstance(tier, BlobTier)


async def test_store_then_load_returns_an_equal_copy(tier):
    assert await tier.load("app.k") is None
    assert await tier.store("app.k", blob())
    loaded = await tier.load("app.k")
    assert loaded == blob()
    loaded["Note"][ID]["title"] = "mutated"
    assert await tier.load("app.k") == blob()


async def test_metadata_follows_every_write_and_clear(tier):
    await tier.store("app.k", blob("a"))
    await tier.store("app.j", blob("b"))
    meta = await tier.metadata()
    assert set(meta) == {"app.j", "app.k"}
    assert meta["app.k"].hash == canonical_hash(blob("a"))
    assert meta["app.k"].entities["Note"].count == 1
    assert meta.updated_at == T1
    assert await tier.clear("app.j")
    assert set(await tier.metadata()) == {"app.k"}
    assert await tier.clear("app.j")  # clearing an absent key is a no-op


async def test_storing_an_empty_blob_clears_the_key(tier):
    await tier.store("app.k", blob())
    assert await tier.store("app.k", {"Note": {}})
    assert await tier.load("app.k") is None
    assert "app.k" not in await tier.metadata()


async def test_conditional_writes_refuse_a_changed_key(tier):
    assert await tier.store("app.k", blob("a"), if_hash=ABSENT)
    assert not await tier.store("app.k", blob("b"), if_hash=ABSENT)
    assert not await tier.store("app.k", blob("b"), if_hash=canonical_hash(blob("other")))
    assert await tier.store("app.k", blob("b"), if_hash=canonical_hash(blob("a")))
    assert not await tier.clear("app.k", if_hash=canonical_hash(blob("a")))
    assert await tier.load("app.k") == blob("b")
    assert tier.counters["preconditions_failed"] == 3


async def test_rewriting_equal_bytes_writes_nothing(tier):
    await tier.store("app.k", blob())
    written = tier.counters["blobs_written"]
    assert await tier.store("app.k", blob())
    assert tier.counters["blobs_written"] == written


async def test_a_malformed_blob_is_rejected_and_nothing_is_written(tier):
    with pytest.raises(DataValidationError):
        await tier.store("app.k", {"Note": {"bad": {}}})
    assert await tier.load("app.k") is None


async def test_memory_store_is_a_store_tier_with_entity_access():
    store = MemoryStore()
    assert isinstance(store, StoreTier)
    await store.save("app.k", "Note", {"id": ID, "title": "a"})
    assert await store.get("app.k", "Note", ID) == {"id": ID, "title": "a"}
    await store.delete("app.k", "Note", ID, T1)
    assert await store.get("app.k", "Note", ID) is None
    assert await store.tombstone("app.k", "Note", ID) == T1
    await store.save("app.k", "Note", {"id": ID, "title": "back"})
    assert await store.tombstone("app.k", "Note", ID) is None


async def test_memory_store_publishes_only_real_entity_changes():
    store = MemoryStore()
    sub = store.changes.subscribe()
    await store.store("app.k", blob("a"))
    await store.store("app.k", blob("a"))
    other = new_id("k")
    await store.store("app.k", {"Note": {**blob("a")["Note"], **blob("b", other)["Note"]}})
    events = [await sub.get(timeout=1) for _ in range(2)]
    assert [(e.entity_id, (e.entity or {}).get("title")) for e in events] == [
        (ID, "a"),
        (other, "b"),
    ]
    assert sub.pending() == 0
    await store.clear("app.k")
    removed = {(await sub.get(timeout=1)).entity_id for _ in range(2)}
    assert removed == {ID, other}


# -- local SQLite file ------------------------------------------------------------------------


async def test_sqlite_sees_writes_of_another_connection(tmp_path):
    one, two = SqliteTier(tmp_path / "db.sqlite"), SqliteTier(tmp_path / "db.sqlite")
    try:
        assert set(await one.metadata()) == set()
        await two.store("app.k", blob())
        assert set(await one.metadata()) == {"app.k"}
        assert await one.load("app.k") == blob()
    finally:
        await one.close()
        await two.close()


async def test_sqlite_row_whose_bytes_do_not_match_their_hash_is_quarantined(tmp_path):
    path = tmp_path / "db.sqlite"
    tier = SqliteTier(path)
    await tier.store("app.k", blob())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sync_blob SET body = ? WHERE key = ?", (b'{"Note": {"x"', "app.k"))
    assert await tier.load("app.k") is None
    assert "app.k" not in await tier.metadata()
    quarantined = await tier.quarantined()
    assert [q["key"] for q in quarantined] == ["app.k"]
    assert tier.counters["corrupt_quarantined"] == 1
    with sqlite3.connect(path) as conn:
        kept = conn.execute("SELECT body FROM sync_quarantine").fetchone()[0]
    assert kept == b'{"Note": {"x"'  # set aside, not lost
    await tier.close()


async def test_a_file_that_is_not_sqlite_is_a_clear_corrupt_data_error(tmp_path):
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    tier = SqliteTier(path)
    with pytest.raises(CorruptDataError, match="unusable"):
        await tier.metadata()
    await tier.close()


# -- local folder ---------------------------------------------------------------------------------


async def test_folder_writes_canonical_json_files_named_by_key(tmp_path):
    tier = FolderTier(tmp_path)
    await tier.store("app.k", blob())
    assert orjson.loads((tmp_path / "app.k.json").read_bytes()) == blob()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    await tier.close()


async def test_folder_torn_file_is_quarantined_and_reads_as_absent(tmp_path):
    tier = FolderTier(tmp_path)
    await tier.store("app.k", blob())
    await tier.store("app.j", blob("j"))
    text = (tmp_path / "app.k.json").read_bytes()
    (tmp_path / "app.k.json").write_bytes(text[: len(text) // 2])
    meta = await tier.metadata()
    assert set(meta) == {"app.j"}
    assert await tier.load("app.k") is None
    quarantined = list((tmp_path / ".quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == text[: len(text) // 2]
    assert tier.counters["corrupt_quarantined"] == 1
    await tier.close()


async def test_folder_json_that_is_not_a_blob_is_quarantined_on_load(tmp_path):
    tier = FolderTier(tmp_path)
    (tmp_path / "app.k.json").write_bytes(b'{"Note": {"not-an-id": {}}}')
    assert await tier.load("app.k") is None
    assert (tmp_path / ".quarantine").is_dir()
    await tier.close()


async def test_folder_notices_files_changed_behind_its_index(tmp_path):
    tier = FolderTier(tmp_path)
    await tier.store("app.k", blob("a"))
    assert (await tier.metadata())["app.k"].hash == canonical_hash(blob("a"))
    other = FolderTier(tmp_path)
    await other.store("app.k", blob("b"))
    await other.store("app.new", blob("n"))
    meta = await tier.metadata()
    assert meta["app.k"].hash == canonical_hash(blob("b"))
    assert "app.new" in meta
    await tier.close()
    await other.close()


async def test_folder_index_survives_a_restart_and_a_corrupt_index_is_rebuilt(tmp_path):
    tier = FolderTier(tmp_path)
    await tier.store("app.k", blob())
    expected = dict(await tier.metadata())
    await tier.close()
    reopened = FolderTier(tmp_path)
    assert dict(await reopened.metadata()) == expected
    assert reopened.counters["blobs_read"] == 0  # served from the index, files not re-read
    await reopened.close()
    (tmp_path / ".tidemark-index.json").write_bytes(b"{garbage")
    rebuilt = FolderTier(tmp_path)
    assert dict(await rebuilt.metadata()) == expected
    await rebuilt.close()


async def test_folder_ignores_files_that_are_not_keys(tmp_path):
    tier = FolderTier(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad..key.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    assert set(await tier.metadata()) == set()
    await tier.close()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_a_quarantine_warning_names_the_file_and_where_it_went(tmp_path, caplog):
    tier = FolderTier(tmp_path)
    (tmp_path / "app.k.json").write_bytes(b'{"Note": ')
    with caplog.at_level(logging.WARNING, logger="tidemark.sync"):
        assert await tier.load("app.k") is None
    [moved] = list((tmp_path / ".quarantine").iterdir())
    [message] = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert str(tmp_path / "app.k.json") in message and str(moved) in message
    await tier.close()


async def test_a_read_only_folder_changes_nothing_and_names_corrupt_files(tmp_path, caplog):
    writer = FolderTier(tmp_path)
    await writer.store("app.j", blob("j"))
    await writer.close()
    (tmp_path / ".tidemark-index.json").unlink(missing_ok=True)
    (tmp_path / "app.k.json").write_bytes(b'{"Note": ')
    (tmp_path / "app.deep.json").write_bytes(b'{"Note":' + b"[" * 70 + b"]" * 70 + b"}")
    before = _snapshot(tmp_path)
    reader = FolderTier(tmp_path, read_only=True)
    with caplog.at_level(logging.WARNING, logger="tidemark.sync"):
        assert set(await reader.metadata()) == {"app.j"}
        assert await reader.load("app.k") is None
    with pytest.raises(ConfigurationError, match="read-only"):
        await reader.store("app.x", blob())
    await reader.close()
    assert _snapshot(tmp_path) == before  # no index, no quarantine, nothing moved
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert str(tmp_path / "app.k.json") in messages
    assert str(tmp_path / "app.deep.json") in messages and "levels deep" in messages


async def test_a_read_only_sqlite_tier_writes_nothing(tmp_path):
    path = tmp_path / "local.db"
    writer = SqliteTier(path)
    await writer.store("app.k", blob())
    await writer.close()
    before = path.read_bytes()
    reader = SqliteTier(path, read_only=True)
    assert set(await reader.metadata()) == {"app.k"}
    assert await reader.load("app.k") == blob()
    with pytest.raises(ConfigurationError, match="read-only"):
        await reader.store("app.x", blob())
    await reader.close()
    assert path.read_bytes() == before
    with pytest.raises(ConfigurationError, match="not a sync tier"):
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()
        await SqliteTier(empty, read_only=True).metadata()


async def test_a_blob_file_nested_too_deeply_is_quarantined(tmp_path):
    tier = FolderTier(tmp_path)
    deep = blob()
    deep["Note"][ID]["x"] = orjson.Fragment(b"[" * 70 + b"]" * 70)
    (tmp_path / "app.k.json").write_bytes(orjson.dumps(deep))
    assert await tier.load("app.k") is None
    assert tier.counters["corrupt_quarantined"] == 1
    await tier.close()
