"""One loaded FHIR package: its manifest and an index of its resources by canonical URL."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tidemark.core import (
    CorruptDataError,
    NotFoundError,
    canonical_bytes,
    content_hash,
    get_logger,
)

from ._tarball import ArchiveLimits, read_archive_files

_log = get_logger("fhir.packages")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_package_id(name: str, version: str) -> None:
    """Refuse names and versions that could not be a folder ``<name>#<version>`` under a root.

    Raises ``ValueError``.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid FHIR package name: {name!r}")
    if not _VERSION.fullmatch(version) or ".." in version:
        raise ValueError(f"invalid FHIR package version: {version!r}")


@dataclass(frozen=True)
class PackageManifest:
    """The parts of ``package.json`` tidemark uses; ``raw`` keeps the whole document."""

    name: str
    version: str
    dependencies: Mapping[str, str] = field(default_factory=dict)
    fhir_versions: tuple[str, ...] = ()
    canonical: str | None = None
    title: str | None = None
    type: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def package_id(self) -> str:
        """``name#version``, the ecosystem's identifier (and cache folder name)."""
        return f"{self.name}#{self.version}"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> PackageManifest:
        """Parse ``package.json`` bytes; raises :class:`CorruptDataError` when unusable."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CorruptDataError(f"{where}: package.json is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptDataError(f"{where}: package.json is not a JSON object")
        name, version = doc.get("name"), doc.get("version")
        if not isinstance(name, str) or not isinstance(version, str):
            raise CorruptDataError(f"{where}: package.json lacks a string name and version")
        try:
            check_package_id(name, version)
        except ValueError as exc:
            raise CorruptDataError(f"{where}: {exc}") from exc
        deps = doc.get("dependencies") or {}
        if not isinstance(deps, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in deps.items()
        ):
            raise CorruptDataError(f"{where}: package.json dependencies must map names to versions")
        versions = doc.get("fhirVersions") or doc.get("fhir-version-list") or ()
        return cls(
            name=name,
            version=version,
            dependencies=dict(deps),
            fhir_versions=tuple(v for v in versions if isinstance(v, str)),
            canonical=_opt_str(doc.get("canonical")),
            title=_opt_str(doc.get("title")),
            type=_opt_str(doc.get("type")),
            raw=doc,
        )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ResourceEntry:
    """One resource file of a package, as listed by ``.index.json`` (or found by scanning).

    ``url``/``version`` are the canonical URL and business version (``None`` when absent);
    ``kind`` and ``type`` are the StructureDefinition's kind and type when it is one.
    """

    filename: str
    resource_type: str
    id: str | None
    url: str | None
    version: str | None
    kind: str | None = None
    type: str | None = None

    @property
    def canonical(self) -> str | None:
        """``url|version`` when both are known, else ``url``."""
        if self.url and self.version:
            return f"{self.url}|{self.version}"
        return self.url


class _Files:
    """Where a package's root files live: in memory (archive) or in a folder."""

    def __init__(self, memory: dict[str, bytes] | None, folder: Path | None) -> None:
        self._memory = memory
        self._folder = folder

    def read(self, filename: str) -> bytes | None:
        if self._memory is not None:
            return self._memory.get(filename)
        assert self._folder is not None
        try:
            return (self._folder / filename).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, filename: str) -> bool:
        if self._memory is not None:
            return filename in self._memory
        assert self._folder is not None
        return (self._folder / filename).is_file()

    def json_names(self) -> list[str]:
        if self._memory is not None:
            names = list(self._memory)
        else:
            assert self._folder is not None
            names = [p.name for p in self._folder.iterdir() if p.is_file()]
        return sorted(n for n in names if n.endswith(".json") and n not in _NOT_RESOURCES)


_NOT_RESOURCES = frozenset(("package.json", ".index.json"))


def _plain_filename(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


class FhirPackage:
    """A loaded FHIR package: manifest plus an index of its resources by canonical URL.

    Load one with :meth:`load`. Lookups accept ``url`` or ``url|version``. Resources are parsed
    on each call to :meth:`resource` (callers get their own dict to keep or change). Thread-safe
    for reads.
    """

    def __init__(
        self, manifest: PackageManifest, entries: list[ResourceEntry], files: _Files, source: Path
    ) -> None:
        self.manifest = manifest
        self.source = source
        self._files = files
        self._entries = entries
        self._by_url: dict[str, ResourceEntry] = {}
        self._by_canonical: dict[str, ResourceEntry] = {}
        for entry in entries:
            if entry.url:
                self._by_url.setdefault(entry.url, entry)
                if entry.version:
                    self._by_canonical.setdefault(f"{entry.url}|{entry.version}", entry)
        self._hashes: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FhirPackage {self.manifest.package_id} ({len(self._entries)} resources)>"

    @property
    def name(self) -> str:
        """The package name from ``package.json``."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The package version from ``package.json``."""
        return self.manifest.version

    @classmethod
    def load(cls, path: str | Path, *, limits: ArchiveLimits = ArchiveLimits()) -> FhirPackage:
        """Load a package from a ``.tgz`` archive, a folder holding ``package/``, or that folder.

        An archive is read into memory (root files of ``package/`` only) with the safety checks
        of :func:`read_archive_files`. ``.index.json`` is used when present and consistent;
        otherwise every root JSON file is scanned. Raises ``FileNotFoundError`` for a missing
        path and :class:`CorruptDataError` (or :class:`UnsafeArchiveError`) for a bad package.
        """
        source = Path(path).expanduser()
        if source.is_dir():
            folder = (
                source / "package" if (source / "package" / "package.json").is_file() else source
            )
            if not (folder / "package.json").is_file():
                raise CorruptDataError(f"{source}: no package.json (nor package/package.json)")
            files = _Files(None, folder)
        elif source.is_file():
            memory = read_archive_files(
                source,
                lambda parts: (
                    len(parts) == 2 and parts[0] == "package" and parts[1].endswith(".json")
                ),
                limits,
            )
            files = _Files({k.removeprefix("package/"): v for k, v in memory.items()}, None)
        else:
            raise FileNotFoundError(f"FHIR package not found: {source}")
        manifest_bytes = files.read("package.json")
        if manifest_bytes is None:
            raise CorruptDataError(f"{source}: archive has no package/package.json")
        manifest = PackageManifest.from_json(manifest_bytes, str(source))
        entries = _entries_from_index(files, str(source))
        if entries is None:
            entries = _entries_by_scanning(files, str(source))
        _log.debug(
            "package loaded",
            package=manifest.package_id,
            resources=len(entries),
            source=str(source),
        )
        return cls(manifest, entries, files, source)

    def entries(self, resource_type: str | None = None) -> list[ResourceEntry]:
        """Every indexed resource (of ``resource_type`` when given), in index order."""
        if resource_type is None:
            return list(self._entries)
        return [e for e in self._entries if e.resource_type == resource_type]

    def structure_definitions(self) -> list[ResourceEntry]:
        """The entries of every StructureDefinition in the package."""
        return self.entries("StructureDefinition")

    def entry(self, canonical: str) -> ResourceEntry | None:
        """The entry for ``url`` or ``url|version``, or ``None``."""
        if "|" in canonical:
            return self._by_canonical.get(canonical)
        return self._by_url.get(canonical)

    def __contains__(self, canonical: object) -> bool:
        return isinstance(canonical, str) and self.entry(canonical) is not None

    def __len__(self) -> int:
        return len(self._entries)

    def canonical_urls(self) -> list[str]:
        """Every canonical URL the package defines (without versions)."""
        return list(self._by_url)

    def _require(self, ref: str | ResourceEntry) -> ResourceEntry:
        if isinstance(ref, ResourceEntry):
            return ref
        entry = self.entry(ref)
        if entry is None:
            raise NotFoundError(f"{ref} is not defined in package {self.manifest.package_id}")
        return entry

    def raw_bytes(self, ref: str | ResourceEntry) -> bytes:
        """The file bytes of a resource, by canonical or entry; raises :class:`NotFoundError`."""
        entry = self._require(ref)
        data = self._files.read(entry.filename)
        if data is None:
            raise NotFoundError(
                f"{entry.filename} is listed but missing in package {self.manifest.package_id}"
            )
        return data

    def resource(self, ref: str | ResourceEntry) -> dict[str, Any]:
        """The resource as a fresh JSON dict; raises :class:`NotFoundError`/:class:`CorruptDataError`."""
        entry = self._require(ref)
        try:
            doc = orjson.loads(self.raw_bytes(entry))
        except orjson.JSONDecodeError as exc:
            raise CorruptDataError(
                f"{entry.filename} in {self.manifest.package_id} is not valid JSON: {exc}"
            ) from exc
        if not isinstance(doc, dict):
            raise CorruptDataError(
                f"{entry.filename} in {self.manifest.package_id} is not an object"
            )
        return doc

    def iter_resources(self, resource_type: str | None = None) -> Iterator[dict[str, Any]]:
        """Parse and yield each resource (of ``resource_type`` when given)."""
        for entry in self.entries(resource_type):
            yield self.resource(entry)

    def source_hash(self, ref: str | ResourceEntry) -> str:
        """``content_hash(canonical_bytes(resource))``: equal for equal JSON, whatever the layout."""
        entry = self._require(ref)
        cached = self._hashes.get(entry.filename)
        if cached is None:
            cached = content_hash(canonical_bytes(self.resource(entry)))
            with self._lock:
                self._hashes[entry.filename] = cached
        return cached


def _entries_from_index(files: _Files, where: str) -> list[ResourceEntry] | None:
    """Entries from ``.index.json``, or ``None`` (with a warning) when it is absent or unusable."""
    data = files.read(".index.json")
    if data is None:
        return None
    try:
        doc = orjson.loads(data)
        listed = doc["files"]
        if not isinstance(listed, list):
            raise TypeError("files is not a list")
        entries = []
        for item in listed:
            filename = item["filename"]
            resource_type = item["resourceType"]
            if not _plain_filename(filename) or not isinstance(resource_type, str):
                raise ValueError(f"bad entry {item!r}")
            if not files.exists(filename):
                raise ValueError(f"lists missing file {filename!r}")
            entries.append(
                ResourceEntry(
                    filename=filename,
                    resource_type=resource_type,
                    id=_opt_str(item.get("id")),
                    url=_opt_str(item.get("url")),
                    version=_opt_str(item.get("version")),
                    kind=_opt_str(item.get("kind"))
                    if resource_type == "StructureDefinition"
                    else None,
                    type=_opt_str(item.get("type"))
                    if resource_type == "StructureDefinition"
                    else None,
                )
            )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        _log.warning("ignoring unusable .index.json, scanning files", source=where, reason=str(exc))
        return None
    return entries


def _entries_by_scanning(files: _Files, where: str) -> list[ResourceEntry]:
    entries = []
    for filename in files.json_names():
        data = files.read(filename)
        try:
            doc = orjson.loads(data or b"")
        except orjson.JSONDecodeError as exc:
            raise CorruptDataError(f"{where}: {filename} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            continue
        is_sd = doc["resourceType"] == "StructureDefinition"
        entries.append(
            ResourceEntry(
                filename=filename,
                resource_type=doc["resourceType"],
                id=_opt_str(doc.get("id")),
                url=_opt_str(doc.get("url")),
                version=_opt_str(doc.get("version")),
                kind=_opt_str(doc.get("kind")) if is_sd else None,
                type=_opt_str(doc.get("type")) if is_sd else None,
            )
        )
    return entries


class PackageSet:
    """Several packages resolved together (e.g. US Core with R4 core).

    A canonical defined by more than one package resolves to the package listed first. Use it
    wherever a canonical URL must be found across a package and its dependencies.
    """

    def __init__(self, packages: Iterable[FhirPackage] = ()) -> None:
        self._packages: list[FhirPackage] = []
        for package in packages:
            self.add(package)

    def add(self, package: FhirPackage) -> None:
        """Append ``package`` (lowest precedence so far); a second copy of a package is ignored."""
        if any(p.manifest.package_id == package.manifest.package_id for p in self._packages):
            return
        self._packages.append(package)

    @property
    def packages(self) -> list[FhirPackage]:
        """The packages, highest precedence first."""
        return list(self._packages)

    def find(self, canonical: str) -> tuple[FhirPackage, ResourceEntry] | None:
        """The package and entry defining ``url`` or ``url|version``, or ``None``."""
        for package in self._packages:
            entry = package.entry(canonical)
            if entry is not None:
                return package, entry
        return None

    def __contains__(self, canonical: object) -> bool:
        return isinstance(canonical, str) and self.find(canonical) is not None

    def resource(self, canonical: str) -> dict[str, Any] | None:
        """The resource for ``canonical`` as a fresh dict, or ``None`` when no package defines it."""
        found = self.find(canonical)
        return found[0].resource(found[1]) if found else None

    def source_hash(self, canonical: str) -> str | None:
        """The canonical source hash of the resource, or ``None`` when undefined."""
        found = self.find(canonical)
        return found[0].source_hash(found[1]) if found else None

    def structure_definitions(self) -> Iterator[tuple[FhirPackage, ResourceEntry]]:
        """Every StructureDefinition of every package, in precedence order (shadowed ones skipped)."""
        seen: set[str] = set()
        for package in self._packages:
            for entry in package.structure_definitions():
                key = entry.url or f"{package.manifest.package_id}/{entry.filename}"
                if key in seen:
                    continue
                seen.add(key)
                yield package, entry
