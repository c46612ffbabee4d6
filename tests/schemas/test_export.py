import hashlib
import hmac
import zipfile

import orjson
import pytest

from tests.schemas.builders import EXAMPLE, PATIENT
from tidemark.core import CorruptDataError, canonical_bytes, content_hash
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


# -- edits with recomputed checksums, caps and measured sizes -----------------------------------
KEY = "a-secret-archive-key-of-some-length"


def _forge(source, target, *, edit=None, claim=None, fix_schema_hash=True, key=None):
    """Rewrite an archive as someone who recomputes every checksum would: ``edit`` changes the
    NamedPatient schema (its content hash fixed too unless ``fix_schema_hash`` is false),
    ``claim`` changes every entry's metadata, ``key`` signs the result."""
    with zipfile.ZipFile(source) as original:
        members = {info.filename: original.read(info) for info in original.infolist()}
    manifest = orjson.loads(members["manifest.json"])
    for entry in manifest["entries"]:
        data = members[entry["file"]]
        if edit is not None and entry["key"].startswith(f"{EXAMPLE}/NamedPatient"):
            data = canonical_bytes(edit(orjson.loads(data)))
            if fix_schema_hash:
                entry["metadata"]["schema_hash"] = content_hash(data)
        if claim is not None:
            entry["metadata"].update(claim)
        members[entry["file"]] = data
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["size"] = len(data)
    members["manifest.json"] = orjson.dumps(manifest)
    members["manifest.sha256"] = hashlib.sha256(members["manifest.json"]).hexdigest().encode()
    members.pop("manifest.hmac", None)
    if key is not None:
        members["manifest.hmac"] = (
            hmac.new(key.encode(), members["manifest.json"], hashlib.sha256).hexdigest().encode()
        )
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as forged:
        for name, data in members.items():
            forged.writestr(name, data)
    return target


def _gut(schema):
    return {**schema, "elements": {}, "required": []}


def _keyed(tmp_path, name, packages=(), **settings):
    return SchemaStore(
        StorageSettings(disk_cache_dir=tmp_path / name, **settings), packages=packages
    )


async def test_an_edit_with_recomputed_checksums_is_caught_only_by_a_key(tmp_path, exported):
    forged = _forge(exported, tmp_path / "forged.zip", edit=_gut)
    # Without a key the checksums are no signature: the forged archive is imported as it is
    # (the README says so), and reported as unverified.
    async with _target(tmp_path) as store:
        summary = await import_archive(store, forged)
        assert summary.stored == 3 and not summary.signed
        assert (await store.get(f"{EXAMPLE}/NamedPatient"))["elements"] == {}
    # With a key, an unsigned archive and one signed with another key are refused.
    async with _keyed(tmp_path, "keyed", archive_key=KEY) as keyed:
        with pytest.raises(CorruptDataError, match="not signed"):
            await import_archive(keyed, forged)
        other = _forge(exported, tmp_path / "other.zip", edit=_gut, key="x" * 20)
        with pytest.raises(CorruptDataError, match="signature does not match"):
            await import_archive(keyed, other)
        assert await keyed.list() == []


async def test_a_signed_archive_round_trips_and_any_edit_breaks_its_signature(
    tmp_path, profiles, r4_core
):
    async with _keyed(tmp_path, "source", [profiles, r4_core], archive_key=KEY) as source:
        await source.get(f"{EXAMPLE}/NamedPatient")
        summary = await export_archive(source, tmp_path / "signed.zip")
    assert summary.signed
    async with _keyed(tmp_path, "target", archive_key=KEY) as target:
        imported = await import_archive(target, tmp_path / "signed.zip")
        assert imported.signed and imported.stored == summary.entries >= 1
    resigned_without_key = _forge(tmp_path / "signed.zip", tmp_path / "edited.zip", edit=_gut)
    async with _keyed(tmp_path, "again", archive_key=KEY) as again:
        with pytest.raises(CorruptDataError, match="not signed"):
            await import_archive(again, resigned_without_key)


async def test_an_edit_that_forgets_the_content_hash_is_refused(tmp_path, exported):
    forged = _forge(exported, tmp_path / "forged.zip", edit=_gut, fix_schema_hash=False)
    async with _target(tmp_path) as store:
        with pytest.raises(CorruptDataError, match="content hash recorded when it was converted"):
            await import_archive(store, forged)
        assert await store.list() == []


async def test_sizes_are_measured_on_import_not_taken_from_the_archive(tmp_path, exported):
    forged = _forge(exported, tmp_path / "forged.zip", claim={"size_bytes": 1, "memory_bytes": 1})
    async with _target(tmp_path) as store:
        await import_archive(store, forged)
        for metadata in await store.list():
            schema = await store.get(metadata.key)
            assert metadata.size_bytes == len(canonical_bytes(schema)) > 1
            assert metadata.memory_bytes > 1000


async def test_members_are_capped_while_they_are_decompressed(tmp_path, exported):
    async with _target(tmp_path) as store:
        with pytest.raises(CorruptDataError, match=r"limit of 0\.001 MB per file"):
            await import_archive(store, exported, max_member_mb=0.001)
        capped = _keyed(tmp_path, "capped", max_import_schema_mb=0.001)
        async with capped:
            with pytest.raises(CorruptDataError, match="max_import_schema_mb"):
                await import_archive(capped, exported)
        # A header that understates a member's size does not get more read than it claims.
        lying = tmp_path / "lying.zip"
        lying.write_bytes(_understate(exported.read_bytes(), "schemas/"))
        with pytest.raises(CorruptDataError, match="refused"):
            await import_archive(store, lying)
        assert await store.list() == []


def _understate(archive: bytes, prefix: str) -> bytes:
    """The archive with the central directory's uncompressed size of the first member under
    ``prefix`` set to 10 bytes."""
    data = bytearray(archive)
    position = data.find(b"PK\x01\x02")
    while position != -1:
        name_length = int.from_bytes(data[position + 28 : position + 30], "little")
        name = bytes(data[position + 46 : position + 46 + name_length])
        if name.startswith(prefix.encode()):
            data[position + 24 : position + 28] = (10).to_bytes(4, "little")
            return bytes(data)
        position = data.find(b"PK\x01\x02", position + 4)
    raise AssertionError("no such member")


async def test_convert_reconverts_a_cached_schema_whose_content_was_edited(
    tmp_path, profiles, r4_core
):
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache", write_behind=False)
    async with SchemaStore(settings, packages=[profiles, r4_core]) as store:
        first = await store.convert_package(profiles)
        assert first.converted == 2
        original = await store.get(f"{EXAMPLE}/NamedPatient")
        loaded = await store.load(f"{EXAMPLE}/NamedPatient")
        assert loaded is not None
        schema, metadata = loaded
        await store.storage.store(metadata.key, _gut(schema), metadata)  # edited in place
    async with SchemaStore(settings, packages=[profiles, r4_core]) as reopened:
        again = await reopened.convert_package(profiles)
        assert (again.converted, again.reused) == (1, 1)
        assert await reopened.get(f"{EXAMPLE}/NamedPatient") == original
