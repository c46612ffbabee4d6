import random
from typing import Any

import pytest

from tidemark.core import CorruptDataError, canonical_hash
from tidemark.sync import KeyMetadata, MemoryStore, TierMetadata, new_id

KEY = "app.global"


def _entity(entity_id, n):
    return {"id": entity_id, "n": n, "updated_at": f"2024-01-01T00:00:{n:02d}.000000Z"}


async def _apply(store, ops):
    for op in ops:
        if op[0] == "save":
            await store.save(KEY, op[1], op[2])
        else:
            await store.delete(KEY, op[1], op[2], op[3])


async def test_key_hash_is_the_hash_of_the_stored_blob_after_saves_and_deletes():
    store = MemoryStore()
    ids = [new_id("k") for _ in range(5)]
    for n, entity_id in enumerate(ids):
        await store.save(KEY, "Note", _entity(entity_id, n))
    await store.delete(KEY, "Note", ids[0], "2024-02-01T00:00:00.000000Z")
    await store.save(KEY, "Task", _entity(ids[1], 9))
    meta = (await store.metadata())[KEY]
    blob = await store.load(KEY)
    assert meta.hash == canonical_hash(blob)
    assert meta.entities["Note"].count == 4
    assert meta.entities["Note"].deleted_count == 1
    assert meta.entities["Task"].count == 1
    assert meta.updated_at == "2024-02-01T00:00:00.000000Z"


async def test_metadata_does_not_depend_on_the_order_of_writes():
    ids = [new_id("k") for _ in range(8)]
    ops: list[tuple[Any, ...]] = [("save", "Note", _entity(i, n)) for n, i in enumerate(ids)]
    ops += [("delete", "Note", ids[2], "2024-03-01T00:00:00.000000Z")]
    ops += [("save", "Task", _entity(ids[3], 30))]
    hashes = set()
    roots = set()
    for seed in range(5):
        shuffled = list(ops[:-2])
        random.Random(seed).shuffle(shuffled)
        store = MemoryStore()
        await _apply(store, shuffled + ops[-2:])
        meta = await store.metadata()
        hashes.add(meta[KEY].hash)
        roots.add(meta.root_hash)
    assert len(hashes) == 1
    assert len(roots) == 1


async def test_metadata_changes_when_a_tombstone_is_added():
    store = MemoryStore()
    entity_id = new_id("k")
    await store.save(KEY, "Note", _entity(entity_id, 1))
    before = (await store.metadata())[KEY].hash
    await store.delete(KEY, "Note", new_id("k"), "2024-01-01T00:00:00.000000Z")
    after = await store.metadata()
    assert after[KEY].hash != before
    assert after[KEY].entities["Note"].to_json() == {"count": 1, "deleted_count": 1}


async def test_tier_metadata_round_trips_through_json():
    store = MemoryStore()
    await store.save(KEY, "Note", _entity(new_id("k"), 1))
    await store.save("app.other", "Note", _entity(new_id("k"), 2))
    meta = await store.metadata()
    again = TierMetadata.from_json(meta.to_json())
    assert again.root_hash == meta.root_hash
    assert again.updated_at == meta.updated_at
    assert dict(again) == dict(meta)


def test_empty_tiers_have_equal_root_hashes_and_no_updated_at():
    assert TierMetadata().root_hash == TierMetadata({}).root_hash
    assert TierMetadata().updated_at is None


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"keys": []},
        {"keys": {"bad key!": {"hash": "x"}}},
        {"keys": {"a.b": {"updated_at": None}}},
        {"keys": {"a.b": {"hash": "x", "entities": {"Note": {"count": -1}}}}},
        {"keys": {"a.b": {"hash": "x", "entities": {"Note": {"count": True}}}}},
    ],
)
def test_malformed_metadata_is_a_corrupt_data_error(bad):
    with pytest.raises(CorruptDataError):
        TierMetadata.from_json(bad)


def test_key_metadata_of_an_empty_blob():
    meta = KeyMetadata.of({})
    assert meta.updated_at is None
    assert meta.deleted_count() == 0
