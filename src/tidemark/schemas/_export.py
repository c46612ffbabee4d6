"""Export and import of stored schemas as one checksummed archive (backup, transfer).

The archive is a zip file: ``schemas/<key hash>.json`` holds each schema's canonical JSON,
``manifest.json`` lists every entry (key, file, SHA-256, metadata) and ``manifest.sha256`` is
the SHA-256 of the manifest. Import checks all of it before storing anything: a damaged,
truncated or edited file is refused as a whole. (Checksums detect damage and edits; they are
not a signature against someone who rewrites the checksums too.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tidemark.cache import key_hash
from tidemark.core import CorruptDataError, canonical_bytes, get_logger, iso_utc
from tidemark.fhir.schema import FHIRSchema

from ._schema_metadata import SchemaMetadata
from ._schema_store import SchemaStore
from ._schema_tiers import TieredSchemaStorage

_log = get_logger("schemas")

ARCHIVE_FORMAT = "tidemark-schema-cache"
ARCHIVE_VERSION = 1
_MANIFEST = "manifest.json"
_CHECKSUM = "manifest.sha256"
_MIB = 1024 * 1024


@dataclass(frozen=True)
class ArchiveSummary:
    """What an export wrote or an import found: entries in the archive, how many were stored
    (import: new or changed), how many were already present unchanged, and the archive size."""

    path: Path
    entries: int
    stored: int
    unchanged: int
    size_bytes: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _member_name(key: str) -> str:
    return f"schemas/{key_hash(key)}.json"


async def export_archive(
    storage: SchemaStore | TieredSchemaStorage, path: str | Path
) -> ArchiveSummary:
    """Write every schema ``storage`` holds, with its metadata, to the archive ``path``
    (replaced atomically)."""
    members: list[tuple[str, bytes, SchemaMetadata]] = []
    for metadata in await storage.list():
        found = await storage.load(metadata.key)
        if found is None:
            continue  # expired or removed since the listing
        members.append((metadata.key, canonical_bytes(found[0]), found[1]))
    target, size = await asyncio.to_thread(_write_archive, path, members)
    _log.info("schema cache exported", path=str(target), entries=len(members))
    return ArchiveSummary(target, len(members), len(members), 0, size)


def _write_archive(
    path: str | Path, members: list[tuple[str, bytes, SchemaMetadata]]
) -> tuple[Path, int]:
    target = Path(path).expanduser()
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "created": iso_utc(datetime.now(UTC)),
        "entries": [
            {
                "key": key,
                "file": _member_name(key),
                "sha256": _sha256(data),
                "size": len(data),
                "metadata": metadata.to_dict(),
            }
            for key, data, metadata in members
        ],
    }
    manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_MANIFEST, manifest_bytes)
            archive.writestr(_CHECKSUM, _sha256(manifest_bytes) + "\n")
            for key, data, _metadata in members:
                archive.writestr(_member_name(key), data)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target, target.stat().st_size


async def import_archive(
    storage: SchemaStore | TieredSchemaStorage,
    path: str | Path,
    *,
    max_member_mb: int = 64,
    max_total_mb: int = 2048,
) -> ArchiveSummary:
    """Verify the archive ``path`` completely, then store its schemas.

    Entries already stored with the same source hash are left as they are. Raises
    :class:`CorruptDataError` (and stores nothing) when the file is not such an archive, is
    damaged, was edited, or exceeds the size limits; ``FileNotFoundError`` when it is missing.
    """
    source, size, entries = await asyncio.to_thread(
        _read_for_import, path, max_member_mb * _MIB, max_total_mb * _MIB
    )
    stored = unchanged = 0
    for schema, metadata in entries:
        existing = await storage.load(metadata.key)
        if existing is not None and existing[1].source_hash == metadata.source_hash:
            unchanged += 1
            continue
        await storage.store(metadata.key, schema, metadata)
        stored += 1
    await storage.cache.flush()
    _log.info("schema cache imported", path=str(source), stored=stored, unchanged=unchanged)
    return ArchiveSummary(source, len(entries), stored, unchanged, size)


def _read_for_import(
    path: str | Path, max_member_bytes: int, max_total_bytes: int
) -> tuple[Path, int, list[tuple[FHIRSchema, SchemaMetadata]]]:
    source = Path(path).expanduser()
    entries = read_verified_archive(source, max_member_bytes, max_total_bytes)
    return source, source.stat().st_size, entries


def _refuse(source: Path, reason: str) -> CorruptDataError:
    return CorruptDataError(f"schema cache archive {source} refused: {reason}")


def read_verified_archive(
    source: Path, max_member_bytes: int, max_total_bytes: int
) -> list[tuple[FHIRSchema, SchemaMetadata]]:
    """Every (schema, metadata) of the archive, after checking all of it (see the module
    docstring). Blocking. Raises :class:`CorruptDataError` on any problem."""
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise
    except (OSError, zipfile.BadZipFile) as exc:
        raise _refuse(source, f"not a readable zip file ({exc})") from exc
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        if sum(info.file_size for info in infos.values()) > max_total_bytes:
            raise _refuse(source, "its contents exceed the size limit")
        manifest_bytes = _read_member(source, archive, infos, _MANIFEST, max_member_bytes)
        checksum = _read_member(source, archive, infos, _CHECKSUM, 1024).decode("ascii", "replace")
        if checksum.strip() != _sha256(manifest_bytes):
            raise _refuse(source, "the manifest does not match its checksum (modified or damaged)")
        try:
            manifest = orjson.loads(manifest_bytes)
        except orjson.JSONDecodeError as exc:
            raise _refuse(source, f"the manifest is not JSON ({exc})") from exc
        if (
            not isinstance(manifest, dict)
            or manifest.get("format") != ARCHIVE_FORMAT
            or manifest.get("version") != ARCHIVE_VERSION
            or not isinstance(manifest.get("entries"), list)
        ):
            raise _refuse(source, f"not a {ARCHIVE_FORMAT} archive of version {ARCHIVE_VERSION}")
        listed = {_MANIFEST, _CHECKSUM}
        result = []
        for item in manifest["entries"]:
            schema, metadata, member = _verified_entry(
                source, archive, infos, item, max_member_bytes
            )
            if member in listed:
                raise _refuse(source, f"{member} is listed twice")
            listed.add(member)
            result.append((schema, metadata))
        extra = sorted(set(infos) - listed)
        if extra:
            raise _refuse(source, f"it holds files the manifest does not list: {', '.join(extra)}")
        return result


def _verified_entry(
    source: Path,
    archive: zipfile.ZipFile,
    infos: dict[str, zipfile.ZipInfo],
    item: Any,
    max_member_bytes: int,
) -> tuple[FHIRSchema, SchemaMetadata, str]:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise _refuse(source, "a manifest entry has no key")
    key = item["key"]
    member = _member_name(key)
    if item.get("file") != member:
        raise _refuse(source, f"entry {key} names an unexpected file {item.get('file')!r}")
    data = _read_member(source, archive, infos, member, max_member_bytes)
    if _sha256(data) != item.get("sha256"):
        raise _refuse(source, f"the schema of {key} does not match its checksum")
    try:
        metadata = SchemaMetadata.from_dict(item.get("metadata") or {})
        schema = orjson.loads(data)
    except (CorruptDataError, orjson.JSONDecodeError) as exc:
        raise _refuse(source, f"entry {key} is unusable ({exc})") from exc
    if not isinstance(schema, dict) or metadata.key != key:
        raise _refuse(source, f"entry {key} does not hold the schema its metadata describes")
    url = schema.get("url")
    if url is not None and url != metadata.canonical_url:
        raise _refuse(source, f"entry {key} holds the schema of {url}")
    return schema, metadata, member


def _read_member(
    source: Path,
    archive: zipfile.ZipFile,
    infos: dict[str, zipfile.ZipInfo],
    name: str,
    limit: int,
) -> bytes:
    info = infos.get(name)
    if info is None:
        raise _refuse(source, f"{name} is missing")
    if info.file_size > limit:
        raise _refuse(source, f"{name} is larger than the limit")
    try:
        # The zip reader stops at the declared size and checks the CRC at the end.
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse(source, f"{name} cannot be read ({exc})") from exc
