"""Export and import of stored schemas as one checksummed, optionally signed archive.

The archive is a zip file: ``schemas/<key hash>.json`` holds each schema's canonical JSON,
``manifest.json`` lists every entry (key, file, SHA-256, metadata), ``manifest.sha256`` is the
SHA-256 of the manifest and, when an archive key is configured, ``manifest.hmac`` is its
HMAC-SHA256 under that key. Import checks all of it before storing anything, reading each file
with its size counted while it is decompressed:

* detected always: a damaged, truncated or foreign file, a file edited without recomputing the
  checksums, files added or removed, members larger than the configured caps (whatever the zip
  headers claim), and a schema whose content no longer matches the content hash recorded when
  it was converted;
* detected only with a key (``[storage] archive_key`` on both sides): an edit whose checksums
  and content hashes were all recomputed — without a key the checksums are no signature, and
  such an archive is imported as it stands (``tidemark schemas convert`` then reconverts only
  what no longer matches its recorded content hash).

Sizes recorded for imported schemas are measured on import, never taken from the archive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import os
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tidemark.cache import deep_sizeof, key_hash
from tidemark.core import CorruptDataError, canonical_bytes, content_hash, get_logger, iso_utc
from tidemark.fhir.schema import FHIRSchema

from ._schema_metadata import SchemaMetadata
from ._schema_store import SchemaStore
from ._schema_tiers import TieredSchemaStorage
from ._settings import StorageSettings

_log = get_logger("schemas")

ARCHIVE_FORMAT = "tidemark-schema-cache"
ARCHIVE_VERSION = 1
_MANIFEST = "manifest.json"
_CHECKSUM = "manifest.sha256"
_SIGNATURE = "manifest.hmac"
_MIB = 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveSummary:
    """What an export wrote or an import found: entries in the archive, how many were stored
    (import: new or changed), how many were already present unchanged, the archive size, and
    whether its signature was written (export) or verified (import) with an archive key."""

    path: Path
    entries: int
    stored: int
    unchanged: int
    size_bytes: int
    signed: bool = False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature(key: str, manifest: bytes) -> str:
    return hmac.new(key.encode(), manifest, hashlib.sha256).hexdigest()


def _member_name(key: str) -> str:
    return f"schemas/{key_hash(key)}.json"


def _settings_of(storage: SchemaStore | TieredSchemaStorage) -> StorageSettings:
    settings = getattr(storage, "settings", None)
    return settings if isinstance(settings, StorageSettings) else StorageSettings()


async def export_archive(
    storage: SchemaStore | TieredSchemaStorage, path: str | Path, *, key: str | None = None
) -> ArchiveSummary:
    """Write every schema ``storage`` holds, with its metadata, to the archive ``path``
    (replaced atomically). ``key`` (default: the store's ``archive_key`` setting) signs it."""
    key = key if key is not None else _settings_of(storage).archive_key
    members: list[tuple[str, bytes, SchemaMetadata]] = []
    for metadata in await storage.list():
        found = await storage.load(metadata.key)
        if found is None:
            continue  # expired or removed since the listing
        members.append((metadata.key, canonical_bytes(found[0]), found[1]))
    target, size = await asyncio.to_thread(_write_archive, path, members, key)
    _log.info("schema cache exported", path=str(target), entries=len(members), signed=bool(key))
    return ArchiveSummary(target, len(members), len(members), 0, size, bool(key))


def _write_archive(
    path: str | Path, members: list[tuple[str, bytes, SchemaMetadata]], key: str | None
) -> tuple[Path, int]:
    target = Path(path).expanduser()
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "created": iso_utc(datetime.now(UTC)),
        "entries": [
            {
                "key": entry_key,
                "file": _member_name(entry_key),
                "sha256": _sha256(data),
                "size": len(data),
                "metadata": metadata.to_dict(),
            }
            for entry_key, data, metadata in members
        ],
    }
    manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_MANIFEST, manifest_bytes)
            archive.writestr(_CHECKSUM, _sha256(manifest_bytes) + "\n")
            if key:
                archive.writestr(_SIGNATURE, _signature(key, manifest_bytes) + "\n")
            for entry_key, data, _metadata in members:
                archive.writestr(_member_name(entry_key), data)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target, target.stat().st_size


async def import_archive(
    storage: SchemaStore | TieredSchemaStorage,
    path: str | Path,
    *,
    key: str | None = None,
    max_member_mb: float | None = None,
    max_total_mb: float | None = None,
) -> ArchiveSummary:
    """Verify the archive ``path`` completely, then store its schemas.

    ``key`` (default: the store's ``archive_key`` setting) makes a valid signature mandatory.
    ``max_member_mb`` / ``max_total_mb`` (default: ``max_import_schema_mb`` /
    ``max_import_total_mb``) cap each schema and the whole archive as they are decompressed.
    Entries already stored with the same source and content hashes are left as they are. Each
    stored schema's ``size_bytes`` and ``memory_bytes`` are measured here. Raises
    :class:`CorruptDataError` (and stores nothing) when the file is not such an archive, is
    damaged, was edited, or exceeds the caps; ``FileNotFoundError`` when it is missing. (Each
    schema is read once more, and checked again, when it is stored, so that memory holds one
    schema at a time: a file replaced during the import stops it at the first entry that no
    longer matches.)
    """
    settings = _settings_of(storage)
    reader = _ArchiveReader(
        Path(path),
        key=key if key is not None else settings.archive_key,
        max_member_mb=settings.max_import_schema_mb if max_member_mb is None else max_member_mb,
        max_total_mb=settings.max_import_total_mb if max_total_mb is None else max_total_mb,
    )
    entries = await asyncio.to_thread(reader.verify)
    stored = unchanged = 0
    for entry in entries:
        schema, metadata = await asyncio.to_thread(reader.read_entry, entry)
        existing = await storage.load(metadata.key)
        if (
            existing is not None
            and existing[1].source_hash == metadata.source_hash
            and existing[1].schema_hash == metadata.schema_hash
        ):
            unchanged += 1
            continue
        await storage.store(metadata.key, schema, metadata)
        stored += 1
    await storage.cache.flush()
    _log.info(
        "schema cache imported",
        path=str(reader.source),
        stored=stored,
        unchanged=unchanged,
        signed=reader.signed,
    )
    return ArchiveSummary(
        reader.source, len(entries), stored, unchanged, reader.size, reader.signed
    )


@dataclass(frozen=True)
class _Entry:
    key: str
    member: str
    sha256: str
    metadata: dict[str, Any]


class _ArchiveReader:
    """Reads and checks one archive (blocking; run in a worker thread)."""

    def __init__(
        self, source: Path, *, key: str | None, max_member_mb: float, max_total_mb: float
    ) -> None:
        self.source = source.expanduser()
        self.key = key
        self.max_member_mb = max_member_mb
        self.max_total_mb = max_total_mb
        self.max_member_bytes = int(max_member_mb * _MIB)
        self.max_total_bytes = int(max_total_mb * _MIB)
        self.size = 0
        self.signed = False

    def refuse(self, reason: str) -> CorruptDataError:
        return CorruptDataError(f"schema cache archive {self.source} refused: {reason}")

    def _open(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.source)
        except FileNotFoundError:
            raise
        except (OSError, zipfile.BadZipFile) as exc:
            raise self.refuse(f"not a readable zip file ({exc})") from exc

    def verify(self) -> list[_Entry]:
        """Check everything (signature, checksums, sizes, JSON, metadata); the entries."""
        self.size = self.source.stat().st_size if self.source.exists() else 0
        with self._open() as archive:
            infos = {info.filename: info for info in archive.infolist()}
            if sum(info.file_size for info in infos.values()) > self.max_total_bytes:
                raise self.refuse(self._total_cap_reason())
            read_total = [0]
            manifest_bytes = self._read(
                archive, infos, _MANIFEST, self.max_member_bytes, read_total
            )
            checksum = self._read(archive, infos, _CHECKSUM, 1024, read_total).decode(
                "ascii", "replace"
            )
            if checksum.strip() != _sha256(manifest_bytes):
                raise self.refuse("the manifest does not match its checksum (modified or damaged)")
            listed = {_MANIFEST, _CHECKSUM}
            if _SIGNATURE in infos:
                listed.add(_SIGNATURE)
            self._check_signature(archive, infos, manifest_bytes, read_total)
            manifest = self._manifest(manifest_bytes)
            entries = []
            for item in manifest["entries"]:
                entry = self._entry(item)
                if entry.member in listed:
                    raise self.refuse(f"{entry.member} is listed twice")
                listed.add(entry.member)
                data = self._read(archive, infos, entry.member, self.max_member_bytes, read_total)
                self._schema(entry, data)
                entries.append(entry)
            extra = sorted(set(infos) - listed)
            if extra:
                raise self.refuse(f"it holds files the manifest does not list: {', '.join(extra)}")
            return entries

    def read_entry(self, entry: _Entry) -> tuple[FHIRSchema, SchemaMetadata]:
        """One verified entry, read and checked again (the file may have changed since)."""
        with self._open() as archive:
            infos = {info.filename: info for info in archive.infolist()}
            data = self._read(archive, infos, entry.member, self.max_member_bytes, [0])
        return self._schema(entry, data)

    def _total_cap_reason(self) -> str:
        return (
            f"its contents exceed the size limit of {self.max_total_mb:g} MB "
            "([storage] max_import_total_mb)"
        )

    def _check_signature(
        self,
        archive: zipfile.ZipFile,
        infos: dict[str, zipfile.ZipInfo],
        manifest_bytes: bytes,
        read_total: list[int],
    ) -> None:
        if not self.key:
            return
        if _SIGNATURE not in infos:
            raise self.refuse(
                "it is not signed, and an archive key is configured ([storage] archive_key)"
            )
        signature = self._read(archive, infos, _SIGNATURE, 1024, read_total)
        expected = _signature(self.key, manifest_bytes)
        if not hmac.compare_digest(signature.decode("ascii", "replace").strip(), expected):
            raise self.refuse(
                "its signature does not match the configured archive key (edited, or signed "
                "with another key)"
            )
        self.signed = True

    def _manifest(self, manifest_bytes: bytes) -> dict[str, Any]:
        try:
            manifest = orjson.loads(manifest_bytes)
        except orjson.JSONDecodeError as exc:
            raise self.refuse(f"the manifest is not JSON ({exc})") from exc
        if (
            not isinstance(manifest, dict)
            or manifest.get("format") != ARCHIVE_FORMAT
            or manifest.get("version") != ARCHIVE_VERSION
            or not isinstance(manifest.get("entries"), list)
        ):
            raise self.refuse(f"not a {ARCHIVE_FORMAT} archive of version {ARCHIVE_VERSION}")
        return manifest

    def _entry(self, item: Any) -> _Entry:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise self.refuse("a manifest entry has no key")
        key = item["key"]
        member = _member_name(key)
        if item.get("file") != member:
            raise self.refuse(f"entry {key} names an unexpected file {item.get('file')!r}")
        metadata = item.get("metadata")
        return _Entry(
            key, member, str(item.get("sha256")), metadata if isinstance(metadata, dict) else {}
        )

    def _schema(self, entry: _Entry, data: bytes) -> tuple[FHIRSchema, SchemaMetadata]:
        key = entry.key
        if _sha256(data) != entry.sha256:
            raise self.refuse(f"the schema of {key} does not match its checksum")
        try:
            metadata = SchemaMetadata.from_dict(entry.metadata)
            schema = orjson.loads(data)
        except (CorruptDataError, orjson.JSONDecodeError) as exc:
            raise self.refuse(f"entry {key} is unusable ({exc})") from exc
        if not isinstance(schema, dict) or metadata.key != key:
            raise self.refuse(f"entry {key} does not hold the schema its metadata describes")
        url = schema.get("url")
        if url is not None and url != metadata.canonical_url:
            raise self.refuse(f"entry {key} holds the schema of {url}")
        encoded = canonical_bytes(schema)
        if metadata.schema_hash is not None and content_hash(encoded) != metadata.schema_hash:
            raise self.refuse(
                f"the schema of {key} does not match the content hash recorded when it was "
                "converted (edited)"
            )
        # What the archive claims about sizes is not trusted: they are measured here.
        measured = dataclasses.replace(metadata, size_bytes=len(encoded), memory_bytes=0)
        footprint = deep_sizeof(schema) + deep_sizeof(measured.to_dict())
        return schema, dataclasses.replace(measured, memory_bytes=footprint)

    def _read(
        self,
        archive: zipfile.ZipFile,
        infos: dict[str, zipfile.ZipInfo],
        name: str,
        limit: int,
        read_total: list[int],
    ) -> bytes:
        info = infos.get(name)
        if info is None:
            raise self.refuse(f"{name} is missing")
        if info.file_size > limit:
            raise self.refuse(self._member_cap_reason(name, limit))
        try:
            return b"".join(self._chunks(archive, info, name, limit, read_total))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            raise self.refuse(f"{name} cannot be read ({exc})") from exc

    def _chunks(
        self,
        archive: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        name: str,
        limit: int,
        read_total: list[int],
    ) -> Iterator[bytes]:
        # Counted while decompressing: whatever the headers say, no more than the caps is ever
        # held (the zip reader also stops at the declared size and checks the CRC at the end).
        size = 0
        with archive.open(info) as handle:
            while chunk := handle.read(_CHUNK):
                size += len(chunk)
                read_total[0] += len(chunk)
                if size > limit:
                    raise self.refuse(self._member_cap_reason(name, limit))
                if read_total[0] > self.max_total_bytes:
                    raise self.refuse(self._total_cap_reason())
                yield chunk

    def _member_cap_reason(self, name: str, limit: int) -> str:
        if limit != self.max_member_bytes:
            return f"{name} is larger than {limit} bytes"
        return (
            f"{name} is larger than the limit of {self.max_member_mb:g} MB per file "
            "([storage] max_import_schema_mb)"
        )
