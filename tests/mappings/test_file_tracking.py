"""Change tracking of the mapping folder: stat-based polling with short intervals."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from tests.mappings.conftest import FAST, ProviderFactory, value_of, write_atomic
from tests.support import async_wait_until
from tidemark.core import Subscription, content_hash
from tidemark.mappings import MappingEvent


async def _next_event(
    subscription: Subscription[MappingEvent], timeout: float = 5.0
) -> MappingEvent:
    event: MappingEvent = await subscription.get(timeout=timeout)
    return event


async def test_file_add_change_and_delete_are_tracked_by_polling(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(folder=folder, file_poll_interval=FAST)
    events = provider.subscribe()
    assert provider.get_mapping_keys() == []

    (folder / "patientIn.fume").write_text("InstanceOf: Patient", encoding="utf-8")
    created = await _next_event(events)
    assert (created.action, created.key, created.trigger) == ("created", "patientIn", "file-poll")
    mapping = provider.get_mapping("patientIn")
    assert mapping is not None and mapping.value == "InstanceOf: Patient"
    assert mapping.source_type == "file"
    assert mapping.source == str(folder.absolute() / "patientIn.fume")

    (folder / "patientIn.fume").write_text("InstanceOf: Patient\n* active = true", encoding="utf-8")
    updated = await _next_event(events)
    assert (updated.action, updated.key) == ("updated", "patientIn")
    assert updated.text_hash == content_hash("InstanceOf: Patient\n* active = true")

    (folder / "patientIn.fume").unlink()
    deleted = await _next_event(events)
    assert (deleted.action, deleted.key) == ("deleted", "patientIn")
    assert provider.get_mapping("patientIn") is None
    assert events.pending() == 0


async def test_a_rename_is_one_deletion_and_one_creation_in_the_same_poll(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    (folder / "before.fume").write_text("same text", encoding="utf-8")
    (folder / "stays.fume").write_text("stays", encoding="utf-8")
    provider = await provider_factory(folder=folder)
    (folder / "before.fume").rename(folder / "after.fume")
    await provider.poll_files()
    assert provider.get_mapping_keys() == ["after", "stays"]


async def test_json_key_reordering_is_a_change_but_rewriting_the_same_text_is_not(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    write_atomic(folder / "codes.json", '{"b": 1, "a": [1, 2]}')
    provider = await provider_factory(folder=folder)
    events = provider.subscribe()
    assert value_of(provider, "codes") == {"b": 1, "a": [1, 2]}

    write_atomic(folder / "codes.json", '{"a": [1, 2], "b": 1}')  # same JSON value, new text
    await provider.poll_files()
    event = await _next_event(events)
    assert (event.action, event.key) == ("updated", "codes")
    mapping = provider.get_mapping("codes")
    assert mapping is not None and mapping.text == '{"a": [1, 2], "b": 1}'
    assert mapping.format == "json"

    writes = provider.counters["cache_writes"]
    write_atomic(folder / "codes.json", '{"a": [1, 2], "b": 1}')  # identical text, new inode
    await provider.poll_files()
    assert provider.counters["cache_writes"] == writes
    assert events.pending() == 0


async def test_a_text_file_rewritten_with_the_same_content_is_read_but_not_written(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    (folder / "same.fume").write_text("x", encoding="utf-8")
    provider = await provider_factory(folder=folder)
    before = provider.counters.snapshot()
    (folder / "same.fume").write_text("x", encoding="utf-8")
    stat = (folder / "same.fume").stat()
    os.utime(folder / "same.fume", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    await provider.poll_files()
    after = provider.counters.snapshot()
    assert after["files_read"] == before["files_read"] + 1
    assert after["cache_writes"] == before["cache_writes"]


async def test_json_mapping_values_can_be_any_json_and_are_handed_out_as_copies(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    write_atomic(folder / "number.json", "42")
    write_atomic(folder / "listing.json", '[{"a": 1}]')
    provider = await provider_factory(folder=folder)
    assert value_of(provider, "number") == 42
    value = value_of(provider, "listing")
    value[0]["a"] = "mutated"
    assert value_of(provider, "listing") == [{"a": 1}]


async def test_a_half_written_json_file_keeps_the_previous_value_until_it_is_complete(
    folder: Path, provider_factory: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = folder / "config.json"
    path.write_text('{"version": 1}', encoding="utf-8")
    provider = await provider_factory(folder=folder)
    events = provider.subscribe()

    path.write_text('{"version": 2, "items": [1, 2', encoding="utf-8")  # caught mid-write
    with caplog.at_level(logging.WARNING, logger="tidemark.mappings"):
        await provider.poll_files()
        await provider.poll_files()  # retried next tick, still broken: warned once
    assert value_of(provider, "config") == {"version": 1}
    assert events.pending() == 0
    problems = [r for r in caplog.records if "not taken" in r.getMessage()]
    assert len(problems) == 1
    assert provider.counters["file_errors"] == 2

    path.write_text('{"version": 2, "items": [1, 2]}', encoding="utf-8")
    await provider.poll_files()
    event = await _next_event(events)
    assert (event.action, event.key) == ("updated", "config")
    assert value_of(provider, "config") == {"version": 2, "items": [1, 2]}


async def test_a_new_half_written_file_appears_only_once_complete(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(folder=folder)
    (folder / "fresh.json").write_text('{"a": ', encoding="utf-8")
    await provider.poll_files()
    assert provider.get_mapping("fresh") is None
    (folder / "fresh.json").write_text('{"a": 1}', encoding="utf-8")
    await provider.poll_files()
    assert value_of(provider, "fresh") == {"a": 1}


async def test_a_json_file_wins_over_a_text_file_with_the_same_key_and_deleting_it_reveals_the_text(
    folder: Path, provider_factory: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "dual.fume").write_text("text mapping", encoding="utf-8")
    write_atomic(folder / "dual.json", '"json mapping"')
    with caplog.at_level(logging.WARNING, logger="tidemark.mappings"):
        provider = await provider_factory(folder=folder)
        await provider.poll_files()
    mapping = provider.get_mapping("dual")
    assert mapping is not None and mapping.format == "json" and mapping.value == "json mapping"
    assert len([r for r in caplog.records if "JSON mapping file overrides" in r.getMessage()]) == 1
    (folder / "dual.json").unlink()
    await provider.poll_files()
    assert value_of(provider, "dual") == "text mapping"


async def test_files_with_invalid_keys_or_other_extensions_are_skipped(
    folder: Path, provider_factory: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("good1.fume", "1bad.fume", "bad-name.json", "notes.txt", ".hidden.fume"):
        (folder / name).write_text('"x"', encoding="utf-8")
    (folder / "dir.fume").mkdir()
    with caplog.at_level(logging.WARNING, logger="tidemark.mappings"):
        provider = await provider_factory(folder=folder)
        await provider.poll_files()
    assert provider.get_mapping_keys() == ["good1"]
    skipped = sorted(
        r.__dict__["fields"]["file"] for r in caplog.records if "skipped" in r.getMessage()
    )
    assert skipped == ["1bad.fume", "bad-name.json"]


async def test_a_custom_extension_is_honoured(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    (folder / "a.map").write_text("A", encoding="utf-8")
    (folder / "b.fume").write_text("B", encoding="utf-8")
    provider = await provider_factory(folder=folder, file_extension="map")
    assert provider.get_mapping_keys() == ["a"]


async def test_a_file_over_the_size_limit_is_skipped_with_a_warning(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    (folder / "huge.fume").write_text("x" * 5000, encoding="utf-8")
    provider = await provider_factory(folder=folder, max_file_bytes=1000)
    assert provider.get_mapping("huge") is None
    assert provider.counters["file_errors"] == 1


async def test_symbolic_links_are_followed_inside_the_folder_only(
    folder: Path, tmp_path: Path, provider_factory: ProviderFactory
) -> None:
    (folder / "..data").mkdir()
    (folder / "..data" / "inner.fume").write_text("inside", encoding="utf-8")
    (folder / "inner.fume").symlink_to(
        folder / "..data" / "inner.fume"
    )  # Kubernetes ConfigMap style
    outside = tmp_path / "secret.fume"
    outside.write_text("outside", encoding="utf-8")
    (folder / "escape.fume").symlink_to(outside)
    provider = await provider_factory(folder=folder)
    assert provider.get_mapping_keys() == ["inner"]
    assert value_of(provider, "inner") == "inside"
    assert await provider.refresh_mapping("escape") is None


async def test_aliases_json_is_tracked_and_an_invalid_one_keeps_the_previous_aliases(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    write_atomic(folder / "aliases.json", '{"mine": "http://example.org/mine", "ucum": "override"}')
    provider = await provider_factory(folder=folder, file_poll_interval=FAST)
    events = provider.subscribe()
    aliases = provider.get_aliases_with_metadata()
    assert aliases["mine"].value == "http://example.org/mine"
    assert aliases["mine"].source_type == "file"
    assert aliases["mine"].source == str(folder.absolute() / "aliases.json")
    assert aliases["ucum"].value == "override"
    assert aliases["loinc"].source_type == "built_in"
    assert provider.get_mapping_keys() == []  # aliases.json is not a mapping

    (folder / "aliases.json").write_text('{"mine": "http://example.org/v2"', encoding="utf-8")
    await provider.poll_files()
    assert provider.get_aliases()["mine"] == "http://example.org/mine"

    write_atomic(
        folder / "aliases.json", '{"mine": "http://example.org/v2", "bad key": "x", "n": 1}'
    )
    event = await _next_event(events)
    assert event.kind == "aliases" and event.action == "replaced"
    assert event.changed == ("mine", "ucum") or set(event.changed) == {"mine", "ucum"}
    assert provider.get_aliases()["mine"] == "http://example.org/v2"
    assert provider.get_aliases()["ucum"] == "http://unitsofmeasure.org"
    assert "bad key" not in provider.get_aliases() and "n" not in provider.get_aliases()

    (folder / "aliases.json").unlink()
    event = await _next_event(events)
    assert event.removed == ("mine",)


async def test_a_missing_folder_keeps_the_cache_warns_once_and_recovers(
    folder: Path, provider_factory: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "kept.fume").write_text("kept", encoding="utf-8")
    provider = await provider_factory(folder=folder)
    moved = folder.with_name("elsewhere")
    folder.rename(moved)
    with caplog.at_level(logging.INFO, logger="tidemark.mappings"):
        for _ in range(3):
            await provider.poll_files()
        assert value_of(provider, "kept") == "kept"
        assert not provider.status()["files"].available
        assert provider.counters["folder_errors"] == 3
        assert await provider.refresh_mapping("kept") is not None
        moved.rename(folder)
        (folder / "kept.fume").write_text("kept v2", encoding="utf-8")
        await provider.poll_files()
    assert value_of(provider, "kept") == "kept v2"
    assert provider.status()["files"].available
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("source unavailable; keeping the last good cache") == 1
    assert messages.count("source recovered") == 1


async def test_a_deleted_folder_content_is_reflected_as_deletions(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    for i in range(3):
        (folder / f"m{i}.fume").write_text(str(i), encoding="utf-8")
    provider = await provider_factory(folder=folder)
    shutil.rmtree(folder)
    folder.mkdir()
    await provider.poll_files()
    assert provider.get_mapping_keys() == []


async def test_loops_pick_up_many_changes_with_short_intervals(
    folder: Path, provider_factory: ProviderFactory
) -> None:
    provider = await provider_factory(folder=folder, file_poll_interval=FAST)
    for i in range(20):
        write_atomic(folder / f"bulk{i}.fume", f"mapping {i}")
    await async_wait_until(lambda: len(provider.get_mapping_keys()) == 20, message="20 mappings")
    for i in range(0, 20, 2):
        (folder / f"bulk{i}.fume").unlink()
    await async_wait_until(lambda: len(provider.get_mapping_keys()) == 10, message="10 left")
    assert provider.get_mapping_keys() == sorted(f"bulk{i}" for i in range(1, 20, 2))
