from datetime import UTC, datetime

import pytest

from tests.support import REDIS_URL
from tidemark.core import canonical_bytes
from tidemark.schemas import (
    DiskSchemaStorage,
    MemorySchemaStorage,
    RedisSchemaStorage,
    SchemaMetadata,
    SchemaStorage,
    TieredSchemaStorage,
)

URL = "http://example.org/fhir/StructureDefinition/Thing"


def _schema(version: str) -> dict[str, object]:
    return {"url": URL, "version": version, "elements": {"a": {"type": "string"}}}


def _metadata(version: str, hour: int = 0) -> SchemaMetadata:
    schema = _schema(version)
    return SchemaMetadata(
        canonical_url=URL,
        version=version,
        source_hash=f"hash-{version}",
        conversion_time=datetime(2024, 1, 1, hour, tzinfo=UTC),
        dependencies=("http://hl7.org/fhir/StructureDefinition/DomainResource",),
        size_bytes=len(canonical_bytes(schema)),
    )


@pytest.fixture(params=["memory", "disk", "redis"])
async def storage(request, tmp_path):
    if request.param == "memory":
        made: TieredSchemaStorage = MemorySchemaStorage()
    elif request.param == "disk":
        made = DiskSchemaStorage(tmp_path / "disk")
    else:
        prefix = request.getfixturevalue("redis_prefix")
        made = RedisSchemaStorage(REDIS_URL, prefix=prefix)
    yield made
    await made.aclose()


async def test_every_storage_follows_the_protocol(storage):
    assert isinstance(storage, SchemaStorage)
    await storage.store(URL, _schema("1.0.0"), _metadata("1.0.0"))
    await storage.store(f"{URL}|2.0.0", _schema("2.0.0"), _metadata("2.0.0", hour=1))
    found = await storage.load(f"{URL}|1.0.0")
    assert found is not None and found[0] == _schema("1.0.0") and found[1] == _metadata("1.0.0")
    latest = await storage.load(URL)
    assert latest is not None and latest[1].version == "2.0.0"
    assert [m.key for m in await storage.list()] == [f"{URL}|1.0.0", f"{URL}|2.0.0"]
    if not isinstance(storage, RedisSchemaStorage):
        assert storage.size() == 2
    assert await storage.remove(f"{URL}|1.0.0") is True
    assert await storage.remove(f"{URL}|1.0.0") is False
    assert await storage.load(f"{URL}|1.0.0") is None
    await storage.clear()
    assert await storage.list() == [] and await storage.load(URL) is None


async def test_storing_under_another_url_is_refused(storage):
    with pytest.raises(ValueError):
        await storage.store("http://example.org/other", _schema("1.0.0"), _metadata("1.0.0"))


async def test_a_plain_url_finds_the_newest_version_after_a_restart(tmp_path):
    first = DiskSchemaStorage(tmp_path)
    await first.store(URL, _schema("1.0.0"), _metadata("1.0.0", hour=5))
    await first.store(URL, _schema("2.0.0"), _metadata("2.0.0", hour=9))
    await first.aclose()
    reopened = DiskSchemaStorage(tmp_path)
    found = await reopened.load(URL)
    assert found is not None and found[1].version == "2.0.0"


async def test_an_entry_with_unusable_metadata_is_removed(tmp_path):
    storage = DiskSchemaStorage(tmp_path)
    storage.disk.set(f"{URL}|1.0.0", canonical_bytes(_schema("1.0.0")), {"canonical_url": 5})
    assert await storage.load(f"{URL}|1.0.0") is None
    assert len(storage.disk) == 0
    assert await storage.list() == []


async def test_the_memory_storage_respects_its_bounds():
    storage = MemorySchemaStorage(max_entries=1)
    await storage.store(URL, _schema("1.0.0"), _metadata("1.0.0"))
    await storage.store(URL, _schema("2.0.0"), _metadata("2.0.0"))
    assert storage.size() == 1
    assert await storage.load(f"{URL}|1.0.0") is None
