import zipfile

import orjson
import pytest

from tests.schemas.builders import EXAMPLE, PATIENT
from tidemark.core import CorruptDataError
from tidemark.schemas import SchemaStore, StorageSettings, export_archive, import_archive

pytestmark = pytest.mark.data


@pytest.fixture
async def exported(tmp_path, profiles, r4_core):
    settings = StorageSettings(disk_cache_dir=tmp_path / "source")
    async with SchemaStore(settings, packages=[profiles, r4_core]) as store:
        for url in (PATIENT, f"{EXAMPLE}/NamedPatient", f"{EXAMPLE}/DatedPatient"):
            await store.get(url)
        summary = await export_archive(store, tmp_path / "backup.zip")
    assert summary.entries == 3 and summary.size_bytes > 0
    return tmp_path / "backup.zip"


def _target(tmp_path):
    return SchemaStore(StorageSettings(disk_cache_dir=tmp_path / "target"))


async def test_an_archive_restores_every_schema_and_its_metadata(tmp_path, exported):
    async with _target(tmp_path) as store:
        summary = await import_archive(store, exported)
        assert (summary.entries, summary.stored, summary.unchanged) == (3, 3, 0)
        schema = await store.get(f"{EXAMPLE}/NamedPatient")
        assert schema is not None and schema["url"] == f"{EXAMPLE}/NamedPatient"
        keys = [m.key for m in await store.list()]
        assert f"{PATIENT}|4.0.1" in keys and len(keys) == 3
        again = await import_archive(store, exported)
        assert (again.stored, again.unchanged) == (0, 3)
        assert store.counters["conversions"] == 0


def _rewrite(source, target, change):
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = change(info.filename, original.read(info))
            if data is not None:
                copy.writestr(info.filename, data)


def _edit_first_schema(name, data):
    if name.startswith("schemas/"):
        doc = orjson.loads(data)
        doc["elements"] = {}
        return orjson.dumps(doc)
    return data


def _edit_manifest(name, data):
    return data.replace(b"example.profiles", b"evil.profiles") if name == "manifest.json" else data


def _drop_the_schemas(name, data):
    return None if name.startswith("schemas/") else data


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_edit_first_schema, "does not match its checksum"),
        (_edit_manifest, "manifest does not match its checksum"),
        (_drop_the_schemas, "is missing"),
    ],
)
async def test_a_tampered_archive_is_refused_and_nothing_is_imported(
    tmp_path, exported, change, reason
):
    tampered = tmp_path / "tampered.zip"
    _rewrite(exported, tampered, change)
    async with _target(tmp_path) as store:
        with pytest.raises(CorruptDataError, match=reason):
            await import_archive(store, tampered)
        assert await store.list() == []


async def test_an_archive_with_an_unlisted_file_is_refused(tmp_path, exported):
    with zipfile.ZipFile(exported, "a") as archive:
        archive.writestr("schemas/extra.json", b"{}")
    async with _target(tmp_path) as store:
        with pytest.raises(CorruptDataError, match="does not list"):
            await import_archive(store, exported)


async def test_a_truncated_or_foreign_file_is_refused(tmp_path, exported):
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(exported.read_bytes()[:-200])
    foreign = tmp_path / "foreign.zip"
    foreign.write_text("just text")
    async with _target(tmp_path) as store:
        for path in (truncated, foreign):
            with pytest.raises(CorruptDataError, match="refused"):
                await import_archive(store, path)
        with pytest.raises(FileNotFoundError):
            await import_archive(store, tmp_path / "absent.zip")
        assert await store.list() == []


async def test_oversized_members_are_refused_before_reading(tmp_path, exported):
    async with _target(tmp_path) as store:
        with pytest.raises(CorruptDataError, match="size limit"):
            await import_archive(store, exported, max_total_mb=0)
