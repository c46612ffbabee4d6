"""The provider's counters show that unchanged sources cost stats and 304s, never reads."""

from __future__ import annotations

from pathlib import Path

from tests.fhir.client.live_server import ThreadedServer
from tests.mappings.conftest import (
    FhirWriter,
    ProviderFactory,
    alias_concept_map,
    fume_structure_map,
)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        name: after[name] - before.get(name, 0)
        for name in after
        if after[name] != before.get(name, 0)
    }


async def test_an_unchanged_folder_of_200_files_is_polled_with_zero_reads(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    for i in range(100):
        (folder / f"text{i:03}.fume").write_text(f"InstanceOf: Patient /* {i} */", encoding="utf-8")
        (folder / f"json{i:03}.json").write_text(f'{{"n": {i}}}', encoding="utf-8")
    provider = await provider_factory(folder=folder)
    assert len(provider.get_mapping_keys()) == 200
    assert provider.counters["files_read"] == 200

    before = provider.counters.snapshot()
    for _ in range(5):
        await provider.poll_files()
    assert _delta(before, provider.counters.snapshot()) == {"file_polls": 5, "files_stated": 1000}


async def test_an_unchanged_server_answers_304s_only(
    server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    for i in range(20):
        await writer.put(fume_structure_map(f"map{i:02}", f"InstanceOf: Patient /* {i} */"))
    await writer.put(alias_concept_map("aliases", {"a": "1", "b": "2"}))
    provider = await provider_factory(server_url=server.fhir)
    assert len(provider.get_mapping_keys()) == 20

    before = provider.counters.snapshot()
    for _ in range(5):
        await provider.poll_server()
    # One 304 for the alias ConceptMap per poll; the narrowed StructureMap search returns nothing.
    assert _delta(before, provider.counters.snapshot()) == {
        "server_polls": 5,
        "conditional_reads_304": 5,
        "searches": 5,
    }


async def test_the_provider_counters_copy_into_a_plain_dict(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    (folder / "patient.fume").write_text("InstanceOf: Patient", encoding="utf-8")
    provider = await provider_factory(folder=folder)
    counters = dict(provider.counters)
    assert counters == provider.counters.snapshot()
    assert counters["files_read"] == 1
    assert "file_polls" in provider.counters and len(provider.counters) == len(counters)
