"""Server outages and the fallbacks a real tidemark server never needs: the provider keeps its
last good cache, warns once per outage, recovers on the first good poll, and polls servers that
lack ``versionId`` (or ``lastUpdated`` too) correctly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.fhir.client.fault_server import Action, FaultServer, Reply, Request, Stall, bundle
from tests.fhir.client.live_server import ServeProcess
from tests.mappings.conftest import (
    FAST,
    FhirWriter,
    ProviderFactory,
    alias_concept_map,
    fume_structure_map,
    text_of,
)
from tests.support import async_wait_until, free_port
from tidemark.mappings import MappingProvider, MappingsConfig
from tidemark.store import open_store


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == text]


async def test_a_server_process_outage_keeps_the_cache_and_recovery_misses_no_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "outage.db")
    port = free_port()
    process = ServeProcess(db, port, log_path=tmp_path / "serve.log").start()
    provider = MappingProvider(
        MappingsConfig(
            server_url=process.fhir,
            server_poll_interval=FAST,
            forced_resync_interval=0,
            server_timeout=1.0,
            server_retries=0,
        )
    )
    try:
        writer = FhirWriter(process.fhir)
        await writer.put(fume_structure_map("m", "v1"))
        await writer.put(alias_concept_map("al", {"k": "v1"}))
        await writer.close()
        with caplog.at_level(logging.INFO, logger="tidemark.mappings"):
            await provider.initialize()
            assert text_of(provider, "m") == "v1"

            process.stop()
            await async_wait_until(lambda: not provider.status()["server"].available, timeout=10)
            errors = provider.counters["server_errors"]
            await async_wait_until(
                lambda: provider.counters["server_errors"] >= errors + 3, timeout=10
            )
            assert text_of(provider, "m") == "v1"
            assert provider.get_aliases()["k"] == "v1"

            # Changes made while the server is down (straight into its database).
            store = await open_store(db)
            m = fume_structure_map("m", "v2")
            n = fume_structure_map("n", "new")
            await store.put("fhir:StructureMap", "m", {k: v for k, v in m.items() if k != "id"})
            await store.put("fhir:StructureMap", "n", {k: v for k, v in n.items() if k != "id"})
            await store.close()

            process = ServeProcess(db, port, log_path=tmp_path / "serve.log").start()
            await async_wait_until(
                lambda: (
                    [(m.key, m.text) for m in provider.get_mappings()]
                    == [("m", "v2"), ("n", "new")]
                ),
                timeout=10,
                message="changes made during the outage",
            )
        assert provider.status()["server"].available
        unavailable = _messages(caplog, "source unavailable; keeping the last good cache")
        assert len(unavailable) == 1
        assert unavailable[0].levelno == logging.WARNING
        assert len(_messages(caplog, "source recovered")) == 1
    finally:
        await provider.close()
        process.stop()


class ScriptedServer:
    """A FHIR server whose StructureMap / ConceptMap answers a test controls."""

    def __init__(self) -> None:
        self.structure_maps: list[dict[str, Any]] = []
        self.concept_map: dict[str, Any] | None = None
        self.bundle_time: str | None = "2024-05-01T10:00:00.000Z"
        self.date_header = True
        self.fault: Action | None = None

    def __call__(self, request: Request) -> Action:
        if self.fault is not None:
            return self.fault
        if request.path.endswith("/StructureMap"):
            body = bundle(self.structure_maps, last_updated=self.bundle_time)
            return Reply(200, body, date=self.date_header)
        if request.path.endswith("/ConceptMap"):
            found = [self.concept_map] if self.concept_map else []
            return Reply(200, bundle(found, last_updated=self.bundle_time), date=self.date_header)
        if self.concept_map and request.path.endswith(f"/ConceptMap/{self.concept_map['id']}"):
            meta = self.concept_map.get("meta", {})
            version = meta.get("versionId")
            if version and request.headers.get("if-none-match") == f'W/"{version}"':
                return Reply(304)
            if "if-modified-since" in request.headers and "lastUpdated" in meta:
                return Reply(304)
            return Reply(200, self.concept_map)
        return Reply(404, {"resourceType": "OperationOutcome", "issue": []})


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.query))


async def test_a_server_without_version_id_is_polled_with_if_modified_since(
    provider_factory: ProviderFactory,
) -> None:
    script = ScriptedServer()
    script.concept_map = alias_concept_map(
        "al", {"k": "v"}, meta={"lastUpdated": "2024-05-01T09:00:00.250Z"}
    )
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url)
        await provider.poll_server()
        await provider.poll_server()
    reads = [r for r in server.requests if r.path.endswith("/ConceptMap/al")]
    assert len(reads) == 2
    assert all(r.headers.get("if-modified-since") == "Wed, 01 May 2024 09:00:00 GMT" for r in reads)
    assert not any("if-none-match" in r.headers for r in reads)
    assert provider.counters["conditional_reads_304"] == 2
    assert provider.get_aliases()["k"] == "v"


async def test_a_server_with_neither_version_nor_last_updated_is_read_unconditionally(
    provider_factory: ProviderFactory,
) -> None:
    script = ScriptedServer()
    script.concept_map = alias_concept_map("al", {"k": "v"})
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url)
        writes = provider.counters["cache_writes"]
        await provider.poll_server()
        await provider.poll_server()
        assert provider.counters["conditional_reads_200"] == 2
        assert provider.counters["cache_writes"] == writes  # same aliases: never rewritten
        script.concept_map = alias_concept_map("al", {"k": "changed"})
        await provider.poll_server()
    reads = [r for r in server.requests if r.path.endswith("/ConceptMap/al")]
    assert not any({"if-none-match", "if-modified-since"} & set(r.headers) for r in reads)
    assert provider.get_aliases()["k"] == "changed"
    assert provider.counters["cache_writes"] == writes + 1


async def test_structure_map_polling_uses_the_bundle_time_of_the_previous_search(
    provider_factory: ProviderFactory,
) -> None:
    script = ScriptedServer()
    script.structure_maps = [fume_structure_map("m", "x")]
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url)
        script.bundle_time = "2024-05-01T10:05:00.123Z"
        await provider.poll_server()
        await provider.poll_server()
    searches = [_query(r) for r in server.requests if r.path.endswith("/StructureMap")]
    assert "_lastUpdated" not in searches[0]
    assert searches[1]["_lastUpdated"] == "gt2024-05-01T10:00:00.000Z"
    assert searches[2]["_lastUpdated"] == "gt2024-05-01T10:05:00.123Z"


async def test_without_a_bundle_time_the_date_header_is_used_with_ge(
    provider_factory: ProviderFactory,
) -> None:
    script = ScriptedServer()
    script.bundle_time = None
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url)
        await provider.poll_server()
    searches = [_query(r) for r in server.requests if r.path.endswith("/StructureMap")]
    assert searches[1]["_lastUpdated"].startswith("ge")


async def test_without_any_server_time_every_poll_is_a_full_search_that_also_sees_deletions(
    provider_factory: ProviderFactory,
) -> None:
    script = ScriptedServer()
    script.bundle_time = None
    script.date_header = False
    script.structure_maps = [fume_structure_map("a", "x"), fume_structure_map("b", "y")]
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url)
        script.structure_maps = [fume_structure_map("a", "x")]
        await provider.poll_server()
    searches = [_query(r) for r in server.requests if r.path.endswith("/StructureMap")]
    assert all("_lastUpdated" not in q for q in searches)
    assert provider.get_mapping_keys() == ["a"]


@pytest.mark.parametrize(
    "fault",
    [
        Reply(500, b"boom"),
        Reply(200, b"<html>not fhir</html>"),
        Reply(200, {"resourceType": "Patient"}),
        Stall(),
    ],
    ids=["500", "garbage", "wrong-resource", "stall"],
)
async def test_a_failing_server_keeps_the_last_good_cache_and_recovers(
    fault: Action, provider_factory: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    script = ScriptedServer()
    script.structure_maps = [fume_structure_map("m", "x")]
    script.concept_map = alias_concept_map("al", {"k": "v"}, meta={"versionId": "1"})
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url, server_timeout=0.2)
        script.fault = fault
        with caplog.at_level(logging.INFO, logger="tidemark.mappings"):
            for _ in range(3):
                await provider.poll_server()
            await provider.forced_resync()
            await provider.refresh_mapping("m")
            assert provider.get_mapping_keys() == ["m"]
            assert provider.get_aliases()["k"] == "v"
            assert not provider.status()["server"].available
            script.fault = None
            script.structure_maps = [fume_structure_map("m", "x2")]
            script.bundle_time = "2024-05-01T11:00:00.000Z"
            await provider.poll_server()
    assert text_of(provider, "m") == "x2"
    assert provider.status()["server"].available
    assert len(_messages(caplog, "source unavailable; keeping the last good cache")) == 1
    assert len(_messages(caplog, "source recovered")) == 1


async def test_a_server_down_at_start_up_does_not_fail_initialize_and_is_loaded_later(
    tmp_path: Path,
) -> None:
    script = ScriptedServer()
    script.structure_maps = [fume_structure_map("m", "x")]
    script.concept_map = alias_concept_map("al", {"k": "v"}, meta={"versionId": "1"})
    script.fault = Reply(503, b"starting")
    async with FaultServer(script) as server:
        provider = MappingProvider(
            MappingsConfig(
                server_url=server.url,
                server_poll_interval=0,
                forced_resync_interval=0,
                server_retries=0,
            )
        )
        try:
            await provider.initialize()
            assert provider.get_mapping_keys() == []
            assert not provider.status()["server"].available
            script.fault = None
            await provider.poll_server()
            assert provider.get_mapping_keys() == ["m"]
            assert provider.get_aliases()["k"] == "v"
            assert provider.get_alias_resource_id() == "al"
        finally:
            await provider.close()


async def test_a_discovered_alias_concept_map_that_answers_404_is_forgotten_and_searched_again(
    provider_factory: ProviderFactory,
) -> None:
    script = ScriptedServer()
    script.concept_map = alias_concept_map("old", {"k": "old"}, meta={"versionId": "1"})
    async with FaultServer(script) as server:
        provider = await provider_factory(server_url=server.url)
        assert provider.get_alias_resource_id() == "old"
        script.concept_map = alias_concept_map("new", {"k": "new"}, meta={"versionId": "1"})
        await provider.poll_server()  # GET ConceptMap/old → 404
    assert provider.counters["conditional_reads_404"] == 1
    assert provider.get_alias_resource_id() == "new"
    assert provider.get_aliases()["k"] == "new"
