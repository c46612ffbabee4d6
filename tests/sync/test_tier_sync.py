from tidemark.core import SourceUnavailableError, canonical_hash
from tidemark.sync import MemoryStore, SqliteTier, new_id, sync_tiers

from ._faults import FlakyTier, present

T1 = "2024-01-01T00:00:01.000000Z"
T2 = "2024-01-01T00:00:02.000000Z"
T3 = "2024-01-01T00:00:03.000000Z"


def note(entity_id, title, stamp, version=1):
    return {"id": entity_id, "title": title, "updated_at": stamp, "version": version}


def blob(*entities, deleted=None):
    result = {"Note": {e["id"]: e for e in entities}} if entities else {}
    if deleted:
        result["deleted"] = {"Note": deleted}
    return result


async def contents(tier):
    meta = await tier.metadata()
    return {key: await tier.load(key) for key in sorted(meta)}


async def test_keys_missing_on_either_side_are_copied_both_ways():
    a, b = MemoryStore("a"), MemoryStore("b")
    only_a, only_b = new_id("k"), new_id("k")
    await a.store("app.a", blob(note(only_a, "a", T1)))
    await b.store("app.b", blob(note(only_b, "b", T1)))
    result = await sync_tiers(a, b)
    assert (result.copied_to_target, result.copied_to_source) == (1, 1)
    assert await contents(a) == await contents(b)
    assert set(await a.metadata()) == {"app.a", "app.b"}


async def test_one_way_sync_leaves_keys_only_in_the_target_for_hydration():
    a, b = MemoryStore("store"), MemoryStore("local")
    await b.store("app.b", blob(note(new_id("k"), "b", T1)))
    result = await sync_tiers(a, b, two_way=False)
    assert result.left_for_hydration == 1
    assert set(await a.metadata()) == set()


async def test_divergent_keys_are_reconciled_entity_by_entity():
    a, b = MemoryStore("a"), MemoryStore("b")
    same, newer_in_a, newer_in_b, gone = (new_id("k") for _ in range(4))
    await a.store(
        "app.k",
        blob(
            note(same, "s", T1),
            note(newer_in_a, "a2", T2, 2),
            note(newer_in_b, "b1", T1),
            note(gone, "g", T1),
        ),
    )
    await b.store(
        "app.k",
        blob(
            note(same, "s", T1),
            note(newer_in_a, "a1", T1),
            note(newer_in_b, "b2", T3, 2),
            deleted={gone: T2},
        ),
    )
    result = await sync_tiers(a, b)
    assert result.merged == 1
    expected = blob(
        note(same, "s", T1),
        note(newer_in_a, "a2", T2, 2),
        note(newer_in_b, "b2", T3, 2),
        deleted={gone: T2},
    )
    assert await a.load("app.k") == expected
    assert await b.load("app.k") == expected
    assert result.entities_changed == 3  # two changes reach A, one reaches B


async def test_sync_is_idempotent_the_second_run_reads_and_writes_nothing():
    a, b = MemoryStore("a"), MemoryStore("b")
    await a.store("app.a", blob(note(new_id("k"), "a", T1)))
    await b.store("app.a", blob(note(new_id("k"), "b", T1)))
    first = await sync_tiers(a, b)
    assert first.written_source and first.written_target
    second = await sync_tiers(a, b)
    assert second.noop
    assert (second.blobs_read, second.written_source, second.written_target) == (0, [], [])


async def test_only_the_blobs_of_differing_keys_are_read(tmp_path):
    a, b = SqliteTier(tmp_path / "a.db", name="a"), SqliteTier(tmp_path / "b.db", name="b")
    for n in range(50):
        entity = note(new_id(f"k{n}"), f"t{n}", T1)
        await a.store(f"app.k{n}", blob(entity))
        await b.store(f"app.k{n}", blob(entity))
    for n in (3, 17, 42):
        await a.store(f"app.k{n}", blob(note(new_id(f"k{n}"), "changed", T2)))
    flaky_a, flaky_b = FlakyTier(a), FlakyTier(b)
    result = await sync_tiers(flaky_a, flaky_b)
    assert sorted(flaky_a.loaded) == sorted(flaky_b.loaded) == ["app.k17", "app.k3", "app.k42"]
    assert result.blobs_read == 6
    assert (await a.metadata()).root_hash == (await b.metadata()).root_hash
    await a.close()
    await b.close()


async def test_stale_overwrite_guard_keeps_a_change_made_to_the_source_during_the_sync():
    a, b = MemoryStore("a"), MemoryStore("b")
    mine, theirs, late = new_id("k"), new_id("k"), new_id("k")
    await a.store("app.k", blob(note(mine, "mine", T1)))
    await b.store("app.k", blob(note(theirs, "theirs", T1)))
    target = FlakyTier(b)

    async def write_to_source_meanwhile(key):
        await a.save("app.k", "Note", note(late, "late", T2))

    target.after_store = write_to_source_meanwhile
    result = await sync_tiers(a, target)
    assert result.deferred == ["app.k"]
    assert result.written_source == []
    source_now = present(await a.load("app.k"))
    assert set(source_now["Note"]) == {mine, late}  # the late write was not overwritten
    again = await sync_tiers(a, b)
    assert again.deferred == []
    final = present(await a.load("app.k"))
    assert set(final["Note"]) == {mine, theirs, late}
    assert final == await b.load("app.k")


async def test_a_target_changed_between_read_and_write_is_not_overwritten():
    a, b = MemoryStore("a"), MemoryStore("b")
    first, intruder = new_id("k"), new_id("k")
    await a.store("app.k", blob(note(first, "a", T2)))
    await b.store("app.k", blob(note(first, "b", T1)))
    target = FlakyTier(b)

    async def change_target(key):
        await b.save("app.k", "Note", note(intruder, "intruder", T3))

    target.after_load = change_target
    result = await sync_tiers(a, target)
    assert "app.k" in result.deferred
    assert intruder in present(await b.load("app.k"))["Note"]
    await sync_tiers(a, b)
    assert (await a.load("app.k")) == (await b.load("app.k"))
    assert set(present(await a.load("app.k"))["Note"]) == {first, intruder}


async def test_a_sync_that_fails_midway_resumes_and_loses_nothing():
    a, b = MemoryStore("a"), MemoryStore("b")
    for n in range(10):
        await a.store(f"app.k{n}", blob(note(new_id(f"k{n}"), "x", T1)))
    target = FlakyTier(b)
    target.fail_after_writes = 4
    try:
        await sync_tiers(a, target, batch_size=3)
    except SourceUnavailableError:
        pass
    else:
        raise AssertionError("the sync should have failed")
    assert len(await b.metadata()) == 4
    target.fail_after_writes = None
    result = await sync_tiers(a, target)
    assert result.copied_to_target == 6
    assert await contents(a) == await contents(b)


async def test_expired_tombstones_are_not_spread_to_a_tier_that_never_held_them():
    a, b = MemoryStore("a"), MemoryStore("b")
    kept = new_id("k")
    await a.store("app.k", blob(note(kept, "x", T3), deleted={new_id("k"): T1}))
    result = await sync_tiers(a, b, expired_before=T2)
    assert result.expired_dropped == 1
    assert await b.load("app.k") == blob(note(kept, "x", T3))
    assert await a.load("app.k") == blob(note(kept, "x", T3))
    assert canonical_hash(await a.load("app.k")) == (await b.metadata())["app.k"].hash
