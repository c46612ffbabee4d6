"""Change tracking of a real tidemark FHIR server on loopback: StructureMaps and the alias
ConceptMap, with short intervals."""

from __future__ import annotations

import logging

import pytest

from tests.fhir.client.live_server import ThreadedServer
from tests.mappings.conftest import (
    FAST,
    FhirWriter,
    ProviderFactory,
    alias_concept_map,
    fume_structure_map,
)
from tests.support import async_wait_until
from tidemark.core import content_hash


async def test_startup_loads_fume_structure_maps_and_records_their_versions(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    written = await writer.put(fume_structure_map("patientIn", "InstanceOf: Patient"))
    await writer.put({"resourceType": "StructureMap", "id": "plain", "status": "draft"})
    not_fume = fume_structure_map("otherTool", "x")
    not_fume["useContext"][0]["valueCodeableConcept"]["coding"] = [
        {"system": "http://other.example", "code": "other"}
    ]
    await writer.put(not_fume)
    provider = await provider_factory(server_url=server.fhir)
    assert provider.get_mapping_keys() == ["patientIn"]
    mapping = provider.get_mapping("patientIn")
    assert mapping is not None and mapping.value == "InstanceOf: Patient"
    assert mapping.source_type == "server"
    assert mapping.source == f"{server.fhir}/StructureMap/patientIn"
    [metadata] = provider.get_mappings_metadata()
    assert metadata.version_id == written["meta"]["versionId"]
    assert metadata.last_updated == written["meta"]["lastUpdated"]
    assert metadata.url == "http://example.org/StructureMap/patientIn"

    # The version was recorded at start-up, so the very first focused refresh is conditional.
    await provider.refresh_mapping("patientIn")
    assert provider.counters["conditional_reads_304"] == 1
    assert provider.counters["conditional_reads_200"] == 0


async def test_structure_map_create_and_update_are_found_by_polling_and_delete_by_forced_resync(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(server_url=server.fhir, server_poll_interval=FAST)
    events = provider.subscribe()

    await writer.put(fume_structure_map("obs", "InstanceOf: Observation"))
    created = await events.get(timeout=5)
    assert (created.action, created.key, created.trigger) == ("created", "obs", "server-poll")

    await writer.put(fume_structure_map("obs", "InstanceOf: Observation\n* status = 'final'"))
    updated = await events.get(timeout=5)
    assert (updated.action, updated.key) == ("updated", "obs")
    assert updated.text_hash == content_hash("InstanceOf: Observation\n* status = 'final'")

    await writer.delete("StructureMap", "obs")
    polls = provider.counters["server_polls"]
    await async_wait_until(lambda: provider.counters["server_polls"] >= polls + 3)
    assert provider.get_mapping("obs") is not None  # polling does not see deletions
    assert events.pending() == 0

    await provider.forced_resync()
    deleted = await events.get(timeout=5)
    assert (deleted.action, deleted.key, deleted.trigger) == ("deleted", "obs", "forced-resync")
    assert provider.get_mapping("obs") is None


async def test_the_forced_resync_loop_runs_on_its_own_interval(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("gone", "x"))
    provider = await provider_factory(server_url=server.fhir, forced_resync_interval=FAST)
    await writer.delete("StructureMap", "gone")
    await async_wait_until(
        lambda: provider.get_mapping("gone") is None, message="resync deleted it"
    )
    assert provider.counters["forced_resyncs"] >= 1


async def test_polling_narrows_by_the_servers_own_time_and_misses_nothing(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(server_url=server.fhir)
    for round_ in range(4):
        await writer.put(fume_structure_map(f"m{round_}", f"v{round_}"))
        received = provider.counters["resources_received"]
        await provider.poll_server()
        # Only what changed since the previous search comes back.
        assert provider.counters["resources_received"] - received == 1
    assert provider.get_mapping_keys() == ["m0", "m1", "m2", "m3"]
    received = provider.counters["resources_received"]
    await provider.poll_server()
    assert provider.counters["resources_received"] == received


async def test_a_structure_map_that_stops_being_a_fume_mapping_leaves_the_cache(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("m", "x"))
    provider = await provider_factory(server_url=server.fhir)
    await writer.put({"resourceType": "StructureMap", "id": "m", "status": "active"})
    await provider.poll_server()
    assert provider.get_mapping("m") is None


async def test_alias_concept_map_304_200_and_410(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(alias_concept_map("aliases1", {"pat": "http://example.org/patients"}))
    provider = await provider_factory(server_url=server.fhir)
    events = provider.subscribe()
    # Discovered by search: the facade rejects "context", so the fallback search by name found it.
    assert provider.get_alias_resource_id() == "aliases1"
    entry = provider.get_aliases_with_metadata()["pat"]
    assert (entry.value, entry.source_type) == ("http://example.org/patients", "server")
    assert entry.source == f"{server.fhir}/ConceptMap/aliases1"

    await provider.poll_server()  # 304: nothing to do
    assert provider.counters["conditional_reads_304"] == 1
    assert events.pending() == 0

    await writer.put(alias_concept_map("aliases1", {"pat": "http://example.org/v2", "enc": "e"}))
    await provider.poll_server()  # 200 with new aliases
    assert provider.counters["conditional_reads_200"] == 1
    event = await events.get(timeout=1)
    assert (event.kind, event.added, event.changed) == ("aliases", ("enc",), ("pat",))

    writes = provider.counters["cache_writes"]
    same_aliases = alias_concept_map(
        "aliases1", {"pat": "http://example.org/v2", "enc": "e"}, description="edited"
    )
    await writer.put(same_aliases)
    await provider.poll_server()  # 200, but the final alias object is unchanged: no write
    assert provider.counters["conditional_reads_200"] == 2
    assert provider.counters["cache_writes"] == writes

    await writer.delete("ConceptMap", "aliases1")
    await provider.poll_server()  # 410: forget the discovered id, refresh aliases fully
    assert provider.counters["conditional_reads_410"] == 1
    assert provider.get_alias_resource_id() is None
    assert "pat" not in provider.get_aliases()
    event = await events.get(timeout=1)
    assert set(event.removed) == {"pat", "enc"}

    await writer.put(alias_concept_map("aliases2", {"late": "http://example.org/late"}))
    await provider.poll_server()  # no id known: discovery finds the new ConceptMap
    assert provider.get_alias_resource_id() == "aliases2"
    assert provider.get_aliases()["late"] == "http://example.org/late"


async def test_a_discovered_concept_map_that_loses_its_fume_context_is_dropped(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(alias_concept_map("al", {"k": "v"}))
    provider = await provider_factory(server_url=server.fhir)
    assert provider.get_aliases()["k"] == "v"
    await writer.put(
        {k: v for k, v in alias_concept_map("al", {"k": "v"}).items() if k != "useContext"}
    )
    await provider.poll_server()
    assert provider.get_alias_resource_id() is None
    assert "k" not in provider.get_aliases()


async def test_a_configured_alias_id_that_is_404_stays_configured_and_is_picked_up_later(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(server_url=server.fhir, alias_concept_map_id="mine")
    assert provider.get_alias_resource_id() == "mine"
    await provider.poll_server()
    assert provider.counters["conditional_reads_404"] >= 1
    assert provider.get_alias_resource_id() == "mine"
    await writer.put(alias_concept_map("mine", {"k": "v"}))
    await provider.poll_server()
    assert provider.get_aliases()["k"] == "v"
    # A configured id is read as is (no FUME useContext required) and never searched for:
    # the only searches are the StructureMap ones, at start-up and once per poll.
    assert provider.counters["searches"] == 1 + provider.counters["server_polls"]


async def test_alias_polling_with_loops_sees_changes(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(alias_concept_map("a", {"x": "1"}))
    provider = await provider_factory(server_url=server.fhir, server_poll_interval=FAST)
    await writer.put(alias_concept_map("a", {"x": "2"}))
    await async_wait_until(lambda: provider.get_aliases().get("x") == "2", message="alias x=2")


async def test_several_alias_concept_maps_are_ambiguous_and_none_is_used(
    server: ThreadedServer,
    writer: FhirWriter,
    provider_factory: ProviderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await writer.put(alias_concept_map("a1", {"x": "1"}))
    await writer.put(alias_concept_map("a2", {"x": "2"}))
    with caplog.at_level(logging.WARNING, logger="tidemark.mappings"):
        provider = await provider_factory(server_url=server.fhir)
        await provider.poll_server()
    assert provider.get_alias_resource_id() is None
    assert "x" not in provider.get_aliases()
    assert len([r for r in caplog.records if "several alias ConceptMaps" in r.getMessage()]) == 1


async def test_structure_maps_with_ids_that_are_not_keys_are_skipped(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("with-dash", "x"))
    await writer.put(fume_structure_map("ok1", "y"))
    provider = await provider_factory(server_url=server.fhir)
    assert provider.get_mapping_keys() == ["ok1"]


async def test_search_criteria_the_server_rejects_fall_back_to_client_side_filtering(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("m", "x"))
    provider = await provider_factory(
        server_url=server.fhir, structure_map_search={"context": "http://codes.fume.health|fume"}
    )
    assert provider.get_mapping_keys() == ["m"]
    await writer.put(fume_structure_map("n", "y"))
    await provider.poll_server()
    assert provider.get_mapping_keys() == ["m", "n"]


async def test_search_criteria_the_server_supports_narrow_the_search(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("a", "x", version="1"))
    await writer.put(fume_structure_map("b", "y", version="2"))
    provider = await provider_factory(server_url=server.fhir, structure_map_search={"version": "2"})
    assert provider.get_mapping_keys() == ["b"]
    assert provider.counters["resources_received"] == 1
