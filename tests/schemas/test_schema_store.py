import asyncio
import dataclasses
import gc
import threading
import tracemalloc

import pytest

from tests.schemas.builders import (
    EXAMPLE,
    PATIENT,
    broken_definition,
    dated_patient,
    named_patient,
    write_package,
)
from tidemark.cache import key_hash
from tidemark.core import ManualClock, canonical_bytes
from tidemark.fhir.schema import convert
from tidemark.schemas import SchemaStorage, SchemaStore, StorageSettings, TieredSchemaStorage

pytestmark = pytest.mark.data

HUMAN_NAME = "http://hl7.org/fhir/StructureDefinition/HumanName"


async def test_a_schema_is_converted_on_demand_then_served_from_memory(settings, r4_core):
    async with SchemaStore(settings, packages=r4_core) as store:
        first = await store.get(PATIENT)
        second = await store.get(PATIENT)
        assert first is second and first is not None
        assert canonical_bytes(first) == canonical_bytes(convert(r4_core.resource(PATIENT)))
        assert store.counters["conversions"] == 1
        stats = store.stats().tiers["memory"]
        assert stats.hits == 1 and stats.misses == 1
        entry = await store.get_entry(PATIENT)
        assert entry is not None
        metadata = entry[1]
        assert metadata.key == f"{PATIENT}|4.0.1"
        assert metadata.source_hash == r4_core.source_hash(PATIENT)
        assert metadata.package == "hl7.fhir.r4.core#4.0.1"
        assert "http://hl7.org/fhir/StructureDefinition/DomainResource" in metadata.dependencies
        assert HUMAN_NAME in metadata.dependencies
        assert metadata.size_bytes == len(canonical_bytes(first))


async def test_unknown_urls_resolve_to_none(settings, r4_core):
    async with SchemaStore(settings, packages=r4_core) as store:
        assert await store.get("http://example.org/nothing") is None
        assert await store.get(f"{PATIENT}|9.9.9") is None


async def test_unchanged_definitions_are_never_converted_twice_even_across_restarts(
    settings, r4_core
):
    async with SchemaStore(settings, packages=r4_core) as store:
        report = await store.convert_package(r4_core)
        assert report.total == 655 and report.converted == 655 and not report.failed
        assert store.counters["conversions"] == 655
    async with SchemaStore(settings, packages=r4_core) as restarted:
        again = await restarted.convert_package(r4_core)
        assert (again.converted, again.reused) == (0, 655)
        assert await restarted.get(PATIENT) is not None
        assert restarted.counters["conversions"] == 0
        assert restarted.stats().tiers["disk"].hits >= 655


async def test_write_behind_loses_nothing_on_an_orderly_close(tmp_path, profiles, r4_core):
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache", write_behind=True)
    store = SchemaStore(settings, packages=[profiles, r4_core])
    urls = [f"{EXAMPLE}/NamedPatient", f"{EXAMPLE}/DatedPatient", PATIENT, HUMAN_NAME]
    for url in urls:
        await store.get(url)
    assert store.cache.pending > 0  # written behind: not on disk yet
    await store.aclose()
    async with SchemaStore(settings, packages=[profiles, r4_core]) as reopened:
        assert reopened.disk is not None and len(reopened.disk) == 4
        for url in urls:
            assert await reopened.get(url) is not None
        assert reopened.counters["conversions"] == 0


async def test_a_changed_base_is_converted_again_and_its_dependents_leave_memory(tmp_path, r4_core):
    folder = tmp_path / "profiles"
    package = write_package(folder, [named_patient(), dated_patient()])
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(settings, packages=[package, r4_core]) as store:
        dated = await store.get(f"{EXAMPLE}/DatedPatient")
        named = await store.get(f"{EXAMPLE}/NamedPatient")
        patient = await store.get(PATIENT)
        assert dated is not None and named is not None and patient is not None
        before = store.validator()
        conversions = store.counters["conversions"]

        changed = write_package(folder, [named_patient(short="changed!"), dated_patient()])
        assert await store.use_packages([changed, r4_core]) == [f"{EXAMPLE}/NamedPatient|1.0.0"]
        assert store.counters["conversions"] == conversions + 1  # only the changed base
        assert store.counters["source_changes"] == 1
        assert store.get_memory(f"{EXAMPLE}/DatedPatient") is None  # a dependent
        assert store.get_memory(PATIENT) is patient  # not a dependent
        new_named = await store.get(f"{EXAMPLE}/NamedPatient")
        assert new_named is not None
        assert new_named["elements"]["name"]["short"] == "changed!"
        assert store.validator() is not before
        again = await store.get(f"{EXAMPLE}/DatedPatient")  # back from disk, not converted
        assert canonical_bytes(again) == canonical_bytes(dated)
        assert store.counters["conversions"] == conversions + 1


async def test_a_change_is_also_noticed_when_a_stale_schema_comes_from_disk(tmp_path, r4_core):
    folder = tmp_path / "profiles"
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(settings, packages=[write_package(folder, [named_patient()])]) as store:
        await store.get(f"{EXAMPLE}/NamedPatient")
    changed = write_package(folder, [named_patient(short="edited")])
    async with SchemaStore(settings, packages=[changed]) as restarted:
        schema = await restarted.get(f"{EXAMPLE}/NamedPatient")
        assert schema is not None
        assert schema["elements"]["name"]["short"] == "edited"
        assert restarted.counters["source_changes"] == 1


async def test_a_reformatted_but_equal_definition_is_not_converted_again(tmp_path):
    folder = tmp_path / "profiles"
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(settings, packages=[write_package(folder, [named_patient()])]) as store:
        await store.get(f"{EXAMPLE}/NamedPatient")
    path = folder / "package" / "StructureDefinition-NamedPatient.json"
    path.write_text(path.read_text().replace("\n", "\n\n  "))  # same JSON, other bytes
    async with SchemaStore(settings, packages=[write_package(folder, [])]) as restarted:
        assert await restarted.get(f"{EXAMPLE}/NamedPatient") is not None
        assert restarted.counters["conversions"] == 0 and restarted.counters["reused"] == 1


async def test_memory_stays_under_the_limit_measured_with_real_schemas(tmp_path, r4_core):
    limit_mb = 1.0
    settings = StorageSettings(
        strategy="memory-disk",
        disk_cache_dir=tmp_path / "cache",
        memory_limit_mb=limit_mb,
        max_entries=10_000,
    )
    urls = [entry.url for entry in r4_core.structure_definitions()][:250]
    async with SchemaStore(settings, packages=r4_core) as store:
        await store.get_many(urls)  # convert once; the memory tier now holds what fits
        await store.cache.flush()
    # Measure real memory: load every schema from disk through a fresh store with tracing on,
    # then see how much memory emptying its memory tier gives back.
    async with SchemaStore(settings, packages=r4_core) as store:
        gc.collect()
        tracemalloc.start()
        try:
            for url in urls:
                await store.get(url)
            gc.collect()
            held, _peak = tracemalloc.get_traced_memory()
            assert store.cache.memory is not None
            store.cache.memory.clear()
            gc.collect()
            after, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        measured = held - after
        stats = store.stats().tiers["memory"]
        assert stats.evictions > 0  # the limit was binding
        assert 0 < measured <= limit_mb * 1024 * 1024, f"memory tier held {measured} bytes"
        assert stats.bytes == 0


async def test_threads_and_tasks_together_convert_each_definition_once(settings, r4_core):
    urls = [entry.url for entry in r4_core.structure_definitions()][:40]
    async with SchemaStore(settings, packages=r4_core) as store:
        resolve = store.resolver()
        results: dict[str, list[int]] = {url: [] for url in urls}
        lock = threading.Lock()

        def thread_worker(offset: int) -> None:
            for index in range(len(urls)):
                url = urls[(index + offset) % len(urls)]
                schema = resolve(url)
                with lock:
                    results[url].append(id(schema))

        async def task_worker(offset: int) -> None:
            for index in range(len(urls)):
                url = urls[(index * 7 + offset) % len(urls)]
                schema = await store.get(url)
                results[url].append(id(schema))

        await asyncio.gather(
            *(asyncio.to_thread(thread_worker, n) for n in range(3)),
            *(task_worker(n) for n in range(3)),
        )
        assert store.counters["conversions"] == len(urls)
        assert all(len(set(ids)) == 1 and len(ids) == 6 for ids in results.values())


async def test_a_corrupt_disk_file_is_a_logged_miss_and_the_schema_is_rebuilt(
    settings, r4_core, caplog
):
    async with SchemaStore(settings, packages=r4_core) as store:
        original = await store.get(PATIENT)
    digest = key_hash(f"{PATIENT}|4.0.1")
    data = settings.disk_cache_dir / digest[:2] / f"{digest}.entry"
    data.write_bytes(data.read_bytes()[:20])
    async with SchemaStore(settings, packages=r4_core) as restarted:
        schema = await restarted.get(PATIENT)
        assert canonical_bytes(schema) == canonical_bytes(original)
        assert restarted.stats().tiers["disk"].corrupt == 1
        assert restarted.counters["conversions"] == 1
    assert "corrupt cache entry removed" in caplog.text


async def test_ttl_expires_memory_and_disk_entries(tmp_path, r4_core):
    clock = ManualClock()
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache", ttl_hours=1)
    async with SchemaStore(settings, packages=r4_core, clock=clock) as store:
        await store.get(PATIENT)
        clock.advance(1800)
        assert store.get_memory(PATIENT) is not None
        clock.advance(1801)
        assert store.get_memory(PATIENT) is None
    async with SchemaStore(settings, packages=r4_core, clock=clock) as restarted:
        assert await restarted.get(PATIENT) is not None
        assert restarted.stats().tiers["disk"].expirations == 1
        assert restarted.counters["conversions"] == 1


async def test_the_store_holds_its_tiers_and_answers_the_storage_protocol_through_them(
    settings, r4_core
):
    async with SchemaStore(settings, packages=r4_core) as store:
        assert isinstance(store.storage, TieredSchemaStorage)
        assert isinstance(store, SchemaStorage)
        assert store.storage.cache is store.cache and store.cache.memory is store.memory
        assert store.disk is not None and store.redis is None
        await store.get(PATIENT)
        assert await store.list() == await store.storage.list()
        assert await store.load(PATIENT) == await store.storage.load(PATIENT) is not None
        assert store.size() == store.storage.size()


async def test_each_strategy_keeps_only_its_tiers(tmp_path, r4_core):
    memory_only = StorageSettings(strategy="memory", disk_cache_dir=tmp_path / "unused")
    async with SchemaStore(memory_only, packages=r4_core) as store:
        await store.get(PATIENT)
        assert list(store.stats().tiers) == ["memory"] and store.disk is None
    assert not (tmp_path / "unused").exists()
    disk_only = StorageSettings(strategy="disk", disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(disk_only, packages=r4_core) as store:
        await store.get(PATIENT)
        assert list(store.stats().tiers) == ["disk"]
        assert store.get_memory(PATIENT) is None
    async with SchemaStore(disk_only, packages=r4_core) as store:
        assert await store.get(PATIENT) is not None
        assert store.counters["conversions"] == 0


async def test_plain_urls_find_stored_versions_after_a_restart_without_packages(settings, profiles):
    async with SchemaStore(settings, packages=profiles) as store:
        await store.get(f"{EXAMPLE}/NamedPatient")
    async with SchemaStore(settings) as offline:
        schema = await offline.get(f"{EXAMPLE}/NamedPatient")
        assert schema is not None and schema["url"] == f"{EXAMPLE}/NamedPatient"
        assert await offline.get(f"{EXAMPLE}/NamedPatient|1.0.0") is not None


async def test_conversion_failures_are_reported_not_raised(tmp_path, r4_core):
    package = write_package(tmp_path / "p", [named_patient(), broken_definition()])
    async with SchemaStore(StorageSettings(strategy="memory"), packages=[package]) as store:
        progress = []
        report = await store.convert_package(
            package, progress=lambda done, total, url, outcome: progress.append((done, outcome))
        )
        assert report.converted == 1 and list(report.failed) == [f"{EXAMPLE}/Broken|1.0.0"]
        assert "without a path" in report.failed[f"{EXAMPLE}/Broken|1.0.0"]
        assert sorted(progress) == [(1, "converted"), (2, "failed")] or sorted(progress) == [
            (1, "failed"),
            (2, "converted"),
        ]
        assert store.counters["conversion_failures"] == 1
        with pytest.raises(Exception, match="without a path"):
            await store.get(f"{EXAMPLE}/Broken")


async def test_clear_where_filters_by_prefix_age_and_package(tmp_path, profiles, r4_core):
    clock = ManualClock()
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(settings, packages=[profiles, r4_core], clock=clock) as store:
        await store.get(PATIENT)
        clock.advance(7200)
        await store.get(f"{EXAMPLE}/NamedPatient")
        await store.get(f"{EXAMPLE}/DatedPatient")
        await store.get(HUMAN_NAME)
        assert await store.clear_where(url_prefix=f"{EXAMPLE}/Dated") == [
            f"{EXAMPLE}/DatedPatient|1.0.0"
        ]
        assert await store.clear_where(older_than=3600) == [f"{PATIENT}|4.0.1"]
        assert await store.clear_where(package="example.profiles") == [
            f"{EXAMPLE}/NamedPatient|1.0.0"
        ]
        assert [m.key for m in await store.list()] == [f"{HUMAN_NAME}|4.0.1"]
        assert await store.clear_where() == [f"{HUMAN_NAME}|4.0.1"]
        assert store.size() == 0


async def test_save_writes_through_and_reports_unknown_urls(tmp_path, r4_core):
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache", write_behind=True)
    async with SchemaStore(settings, packages=r4_core) as store:
        saved, missing = await store.save([PATIENT, "http://example.org/none"])
        assert [m.key for m in saved] == [f"{PATIENT}|4.0.1"]
        assert missing == ["http://example.org/none"]
        assert store.cache.pending == 0 and store.disk is not None and len(store.disk) == 1


async def test_lifetime_statistics_accumulate_across_runs(settings, r4_core):
    from tidemark.schemas import read_persisted_stats

    for _ in range(2):
        async with SchemaStore(settings, packages=r4_core) as store:
            await store.get(PATIENT)
            await store.get(PATIENT)
    totals = read_persisted_stats(settings.disk_cache_dir)
    assert totals["memory"]["hits"] == 2 and totals["memory"]["misses"] == 2
    assert totals["disk"]["hits"] == 1 and totals["disk"]["misses"] == 1
    assert totals["store"]["conversions"] == 1 and totals["store"]["reused"] == 1


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StorageSettings().strategy = "disk"  # type: ignore[misc]


@pytest.mark.redis
async def test_processes_share_conversions_through_the_redis_tier(tmp_path, r4_core, redis_prefix):
    from tests.support import REDIS_URL

    def settings(name):
        return StorageSettings(
            disk_cache_dir=tmp_path / name, redis_url=REDIS_URL, redis_prefix=redis_prefix
        )

    async with SchemaStore(settings("a"), packages=r4_core) as first:
        await first.get(PATIENT)
    async with SchemaStore(settings("b"), packages=r4_core) as second:
        assert await second.get(PATIENT) is not None
        assert second.counters["conversions"] == 0
        assert second.stats().tiers["redis"].hits == 1
        await second.cache.flush()
        assert second.disk is not None and len(second.disk) == 1  # promoted to its disk
