"""The provider's public API: configuration, lifecycle, events, read-only surface, concurrency."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.fhir.client.live_server import TIDEMARK, ThreadedServer
from tests.mappings.conftest import (
    FAST,
    FhirWriter,
    ProviderFactory,
    alias_concept_map,
    fume_structure_map,
    text_of,
    write_atomic,
)
from tests.support import async_wait_until, wait_until
from tidemark.core import ConfigurationError, Settings
from tidemark.mappings import (
    BUILT_IN_ALIASES,
    MappingEvent,
    MappingProvider,
    MappingsConfig,
    concept_map_aliases,
    is_alias_concept_map,
    is_fume_mapping,
    structure_map_expression,
)


def test_defaults_follow_the_issue() -> None:
    config = MappingsConfig()
    assert (config.file_poll_interval, config.server_poll_interval) == (5.0, 30.0)
    assert config.forced_resync_interval == 3600.0
    assert config.file_extension == ".fume"
    assert config.built_in_aliases == BUILT_IN_ALIASES


def test_config_loads_from_settings_file_and_environment(tmp_path: Path) -> None:
    settings_file = tmp_path / "tidemark.toml"
    settings_file.write_text(
        '[mappings]\nfolder = "maps"\nfile_extension = "map"\nserver_poll_interval = "2m"\n'
        'structure_map_search = { version = "2" }\n',
        encoding="utf-8",
    )
    settings = Settings.load(settings_file, env={"TIDEMARK_MAPPINGS_FORCED_RESYNC_INTERVAL": "0"})
    config = settings.section("mappings", MappingsConfig)
    assert config.folder == Path("maps")
    assert config.file_extension == ".map"
    assert config.server_poll_interval == 120.0
    assert config.forced_resync_interval == 0.0
    assert config.structure_map_search == {"version": "2"}


@pytest.mark.parametrize(
    "bad",
    [
        {"file_extension": ".json"},
        {"file_extension": "JSON"},
        {"file_poll_interval": -1},
        {"server_timeout": 0},
        {"max_file_bytes": 0},
    ],
)
def test_invalid_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        MappingsConfig(**bad)  # type: ignore[arg-type]


def test_no_public_method_accepts_a_value_from_the_consumer() -> None:
    public = {
        name: member
        for name, member in inspect.getmembers(MappingProvider, inspect.isfunction)
        if not name.startswith("_")
    }
    assert set(public) >= {
        "initialize",
        "get_mapping",
        "get_mappings",
        "get_mapping_keys",
        "get_mappings_metadata",
        "get_aliases",
        "get_aliases_with_metadata",
        "get_alias_resource_id",
        "reload_mappings",
        "refresh_mapping",
        "reload_aliases",
        "start_change_tracking",
        "stop_change_tracking",
        "close",
        "subscribe",
    }
    for name, member in public.items():
        parameters = set(inspect.signature(member).parameters) - {"self"}
        assert parameters <= {"key", "maxsize"}, (name, parameters)
    for removed in ("register_alias", "delete_alias", "set_mapping", "delete_mapping"):
        assert not hasattr(MappingProvider, removed)


def test_fume_conventions() -> None:
    structure_map = fume_structure_map("m", "InstanceOf: Patient")
    assert is_fume_mapping(structure_map)
    assert structure_map_expression(structure_map) == "InstanceOf: Patient"
    no_context = {k: v for k, v in structure_map.items() if k != "useContext"}
    assert is_fume_mapping(no_context)
    empty = fume_structure_map("m", "")
    assert not is_fume_mapping(empty)
    concept_map = alias_concept_map("a", {"good": "1", "bad key": "2"})
    concept_map["group"][0]["element"].append({"code": "good", "target": [{"code": "3"}]})
    concept_map["group"][0]["element"].append({"code": "empty", "target": []})
    assert is_alias_concept_map(concept_map)
    aliases, warnings = concept_map_aliases(concept_map)
    assert aliases == {"good": "3"}
    assert len(warnings) == 3
    assert not is_alias_concept_map({**concept_map, "useContext": []})


async def test_events_stream_as_an_async_iterator(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(folder=folder, file_poll_interval=FAST)
    received: list[MappingEvent] = []

    async def consume() -> None:
        async for event in provider.subscribe():
            received.append(event)
            if len(received) == 2:
                return

    consumer = asyncio.create_task(consume())
    (folder / "a.fume").write_text("a", encoding="utf-8")
    (folder / "b.fume").write_text("b", encoding="utf-8")
    await asyncio.wait_for(consumer, timeout=5)
    assert sorted(e.key or "" for e in received) == ["a", "b"]


async def test_initialize_emits_the_initial_load_and_is_idempotent(
    folder: Path, tmp_path: Path
) -> None:
    (folder / "a.fume").write_text("a", encoding="utf-8")
    provider = MappingProvider(MappingsConfig(folder=folder, start_tracking=False))
    try:
        events = provider.subscribe()
        await provider.initialize()
        await provider.initialize()
        first = await events.get(timeout=1)
        second = await events.get(timeout=1)
        assert {(first.kind, first.trigger), (second.kind, second.trigger)} == {
            ("mapping", "initialize"),
            ("aliases", "initialize"),
        }
        assert events.pending() == 0
        assert provider._tasks == []
    finally:
        await provider.close()
    with pytest.raises(RuntimeError):
        await provider.initialize()


async def test_tracking_starts_stops_and_restarts(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(folder=folder, file_poll_interval=FAST)
    assert any(t.get_name().startswith("mappings:") for t in asyncio.all_tasks())
    await provider.stop_change_tracking()
    assert not any(t.get_name().startswith("mappings:") for t in asyncio.all_tasks())
    (folder / "late.fume").write_text("x", encoding="utf-8")
    provider.start_change_tracking()
    provider.start_change_tracking()
    await async_wait_until(lambda: provider.get_mapping("late") is not None)


async def test_metadata_reports_sources_and_versions(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    written = await writer.put(fume_structure_map("remote", "x"))
    (folder / "local.json").write_text("{}", encoding="utf-8")
    provider = await provider_factory(folder=folder, server_url=server.fhir)
    local, remote = provider.get_mappings_metadata()
    assert (local.key, local.source_type, local.format) == ("local", "file", "json")
    assert local.source == str(folder.absolute() / "local.json")
    assert local.last_updated is not None and local.version_id is None
    assert (remote.key, remote.source_type, remote.version_id) == (
        "remote",
        "server",
        written["meta"]["versionId"],
    )


async def test_concurrent_refreshes_polls_and_resyncs_never_delete_and_recreate_a_key(
    folder: Path, server: ThreadedServer, writer: FhirWriter, provider_factory: ProviderFactory
) -> None:
    for i in range(5):
        (folder / f"f{i}.fume").write_text(f"file {i}", encoding="utf-8")
        await writer.put(fume_structure_map(f"s{i}", f"server {i}"))
    await writer.put(alias_concept_map("al", {"x": "1"}))
    provider = await provider_factory(
        folder=folder,
        server_url=server.fhir,
        file_poll_interval=0.01,
        server_poll_interval=0.01,
        forced_resync_interval=0.03,
    )
    events = provider.subscribe()
    operations = []
    for round_ in range(6):
        write_atomic(folder / "f0.fume", f"file 0 round {round_}")
        await writer.put(fume_structure_map("s0", f"server 0 round {round_}"))
        operations += [
            provider.refresh_mapping("f0"),
            provider.refresh_mapping("s0"),
            provider.poll_files(),
            provider.poll_server(),
            provider.forced_resync(),
            provider.reload_mappings(),
            provider.reload_aliases(),
        ]
    await asyncio.gather(*operations)
    await provider.forced_resync()
    assert text_of(provider, "f0") == "file 0 round 5"
    assert text_of(provider, "s0") == "server 0 round 5"
    assert len(provider.get_mapping_keys()) == 10
    seen: list[MappingEvent] = []
    while events.pending():
        seen.append(await events.get(timeout=1))
    assert not [e for e in seen if e.action == "deleted"]
    assert not [e for e in seen if e.kind == "aliases"]


async def test_getters_are_safe_from_other_threads_while_tracking(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(folder=folder, file_poll_interval=0.005)
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                keys = [mapping.key for mapping in provider.get_mappings()]
                assert keys == sorted(keys)
                provider.get_mapping_keys()
                provider.get_aliases_with_metadata()
                provider.get_mappings_metadata()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(50):
            write_atomic(folder / f"t{i % 7}.fume", str(i))
            if i % 5 == 0:
                (folder / f"t{i % 7}.fume").unlink()
            await asyncio.sleep(0.002)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    assert failures == []


def test_watch_command_prints_the_state_and_each_change(folder: Path) -> None:
    (folder / "first.fume").write_text("one", encoding="utf-8")
    process = subprocess.Popen(
        [TIDEMARK, "mappings", "watch", "--folder", str(folder), "--file-interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(iter(process.stdout.readline, ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("watching for changes" in line for line in lines), timeout=30)
        output = "".join(lines)
        assert "first" in output and "1 mapping(s)" in output
        (folder / "first.fume").write_text("two", encoding="utf-8")
        wait_until(lambda: any("updated" in line and "first" in line for line in lines), timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        reader.join(timeout=5)


def test_watch_command_needs_a_source() -> None:
    result = subprocess.run(
        [TIDEMARK, "mappings", "watch"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "--folder" in result.stderr
