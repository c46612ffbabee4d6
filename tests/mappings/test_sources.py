"""The two source layers on their own: each holds what it last took from its source and raises
when the source fails, keeping that state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fhir.client.live_server import ThreadedServer
from tests.mappings.conftest import FhirWriter, alias_concept_map, fume_structure_map
from tidemark.core import Counters
from tidemark.fhir.client import FhirClient, FhirClientError
from tidemark.mappings import MappingsConfig
from tidemark.mappings._folder import ALL_KINDS, FolderSource
from tidemark.mappings._server import ServerSource


def _folder_source(folder: Path) -> FolderSource:
    return FolderSource(folder, ".fume", 1024 * 1024, Counters())


async def test_the_folder_layer_changes_only_when_a_read_is_taken(folder: Path) -> None:
    (folder / "k.fume").write_text("v1", encoding="utf-8")
    (folder / "aliases.json").write_text('{"a": "1"}', encoding="utf-8")
    files = _folder_source(folder)
    read = await files.read_changes(full=True, kinds=ALL_KINDS)
    assert (files.keys(), files.aliases) == (set(), None)  # nothing taken yet
    touched = files.take(read)
    assert touched.keys == {"k"} and touched.aliases_changed
    mapping = files.text_mapping("k")
    assert mapping is not None and mapping.text == "v1" and files.json_mapping("k") is None
    assert files.aliases == {"a": "1"} and files.aliases_source == str(folder / "aliases.json")

    (folder / "k.fume").unlink()
    read = await files.read_changes(full=False, kinds=ALL_KINDS)
    assert read.removed == ["k.fume"] and files.keys() == {"k"}
    assert files.take(read).keys == {"k"} and files.keys() == set()


async def test_the_folder_layer_raises_when_the_folder_is_gone_and_keeps_what_it_took(
    folder: Path,
) -> None:
    (folder / "k.fume").write_text("kept", encoding="utf-8")
    files = _folder_source(folder)
    files.take(await files.read_changes(full=True, kinds=ALL_KINDS))
    folder.rename(folder.with_name("elsewhere"))
    with pytest.raises(OSError):
        await files.read_changes(full=False, kinds=ALL_KINDS)
    with pytest.raises(FileNotFoundError, match="is missing"):
        await files.read_key("k")
    mapping = files.text_mapping("k")
    assert mapping is not None and mapping.text == "kept"


async def test_the_server_layer_holds_versions_and_raises_when_the_server_is_down(
    server: ThreadedServer, writer: FhirWriter
) -> None:
    stored = await writer.put(fume_structure_map("m", "v1"))
    await writer.put(alias_concept_map("al", {"k": "v"}))
    counters = Counters()
    client = FhirClient(server.fhir, timeout=2.0, retries=0)
    try:
        source = ServerSource(client, MappingsConfig(server_url=server.fhir), counters)
        assert await source.load_structure_maps() == {"m"}
        await source.load_aliases()
        mapping = source.mapping("m")
        assert mapping is not None and mapping.text == "v1"
        assert source.metadata(mapping).version_id == stored["meta"]["versionId"]
        assert source.alias_id == "al" and source.aliases == {"k": "v"}
        assert source.aliases_source == client.url("ConceptMap", "al")
        assert await source.poll_aliases() is False  # 304: unchanged
        assert await source.poll_structure_maps() == set()  # narrowed by the horizon

        server.stop()
        with pytest.raises(FhirClientError):
            await source.poll_structure_maps()
        with pytest.raises(FhirClientError):
            await source.refresh_structure_map("m")
        assert source.keys() == {"m"} and source.aliases == {"k": "v"}
        assert counters["conditional_reads_error"] == 1
    finally:
        await client.close()
