"""A file mapping overrides a server mapping with the same key, in every path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.fhir.client.live_server import ThreadedServer
from tests.mappings.conftest import FhirWriter, ProviderFactory, fume_structure_map
from tidemark.mappings import Mapping


def _source(mapping: Mapping | None) -> tuple[str, str] | None:
    return (mapping.source_type, mapping.text) if mapping is not None else None


async def test_a_file_overrides_the_server_at_start_up_with_one_warning(
    folder: Path,
    server: ThreadedServer,
    writer: FhirWriter,
    provider_factory: ProviderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await writer.put(fume_structure_map("shared", "from server"))
    (folder / "shared.fume").write_text("from file", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tidemark.mappings"):
        provider = await provider_factory(folder=folder, server_url=server.fhir)
        await provider.poll_files()
        await provider.poll_server()
        await provider.forced_resync()
    assert _source(provider.get_mapping("shared")) == ("file", "from file")
    overrides = [r for r in caplog.records if "overrides the server mapping" in r.getMessage()]
    assert len(overrides) == 1


async def test_server_polling_never_overwrites_a_file_mapping(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("shared", "server v1"))
    (folder / "shared.fume").write_text("from file", encoding="utf-8")
    provider = await provider_factory(folder=folder, server_url=server.fhir)
    events = provider.subscribe()
    await writer.put(fume_structure_map("shared", "server v2"))
    await provider.poll_server()
    assert provider.counters["resources_received"] >= 2  # the poll did see the new version
    assert _source(provider.get_mapping("shared")) == ("file", "from file")
    assert events.pending() == 0
    [metadata] = provider.get_mappings_metadata()
    assert metadata.source_type == "file"


async def test_deleting_the_file_reveals_the_current_server_mapping_under_it(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("shared", "server v1"))
    (folder / "shared.fume").write_text("from file", encoding="utf-8")
    provider = await provider_factory(folder=folder, server_url=server.fhir)
    await writer.put(fume_structure_map("shared", "server v2"))
    await provider.poll_server()
    events = provider.subscribe()
    (folder / "shared.fume").unlink()
    await provider.poll_files()
    event = await events.get(timeout=1)
    assert (event.action, event.source_type) == ("updated", "server")
    assert _source(provider.get_mapping("shared")) == ("server", "server v2")


async def test_creating_a_file_takes_over_a_server_mapping(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("shared", "server"))
    provider = await provider_factory(folder=folder, server_url=server.fhir)
    assert _source(provider.get_mapping("shared")) == ("server", "server")
    (folder / "shared.json").write_text('{"from": "file"}', encoding="utf-8")
    await provider.poll_files()
    mapping = provider.get_mapping("shared")
    assert (
        mapping is not None and mapping.source_type == "file" and mapping.value == {"from": "file"}
    )


async def test_focused_refresh_keeps_the_file_and_reveals_the_server_mapping_even_on_304(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("shared", "server"))
    (folder / "shared.fume").write_text("file v1", encoding="utf-8")
    provider = await provider_factory(folder=folder, server_url=server.fhir)

    (folder / "shared.fume").write_text("file v2", encoding="utf-8")
    refreshed = await provider.refresh_mapping("shared")
    assert _source(refreshed) == ("file", "file v2")
    assert provider.counters["conditional_reads_304"] == 1

    # The file goes; the server answers 304 (unchanged) — the server mapping must come back
    # anyway (the TypeScript provider left the stale file mapping in place here).
    (folder / "shared.fume").unlink()
    refreshed = await provider.refresh_mapping("shared")
    assert provider.counters["conditional_reads_304"] == 2
    assert _source(refreshed) == ("server", "server")
    assert _source(provider.get_mapping("shared")) == ("server", "server")


async def test_focused_refresh_of_a_key_gone_everywhere_deletes_it(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("k", "server"))
    provider = await provider_factory(folder=folder, server_url=server.fhir)
    await writer.delete("StructureMap", "k")
    assert await provider.refresh_mapping("k") is None
    assert provider.counters["conditional_reads_410"] == 1
    assert provider.get_mapping_keys() == []


async def test_forced_resync_and_reload_respect_precedence(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    await writer.put(fume_structure_map("shared", "server"))
    await writer.put(fume_structure_map("serverOnly", "server only"))
    (folder / "shared.fume").write_text("file", encoding="utf-8")
    (folder / "fileOnly.fume").write_text("file only", encoding="utf-8")
    provider = await provider_factory(folder=folder, server_url=server.fhir)
    writes = provider.counters["cache_writes"]
    await provider.forced_resync()
    await provider.reload_mappings()
    assert provider.counters["cache_writes"] == writes  # nothing changed: nothing written
    state = {m.key: _source(m) for m in provider.get_mappings()}
    assert state == {
        "fileOnly": ("file", "file only"),
        "serverOnly": ("server", "server only"),
        "shared": ("file", "file"),
    }
    # Server deletes the shadowed mapping; the file still wins; then the file goes too.
    await writer.delete("StructureMap", "shared")
    await provider.forced_resync()
    assert _source(provider.get_mapping("shared")) == ("file", "file")
    (folder / "shared.fume").unlink()
    await provider.reload_mappings()
    assert provider.get_mapping("shared") is None
