"""The package cache in the FHIR ecosystem layout: ``<root>/<name>#<version>/package/...``."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from tidemark.core import CorruptDataError, NotFoundError, get_logger

from ._package import FhirPackage, PackageManifest, PackageSet, check_package_id
from ._tarball import ArchiveLimits, ArchiveSource, extract_archive

_log = get_logger("fhir.packages")

#: The ecosystem's default cache root (shared with the HL7 Java tools, Firely, SUSHI...).
DEFAULT_PACKAGE_ROOT = Path("~/.fhir/packages")

_TEMP_PREFIX = ".tmp-"


class PackageCache:
    """FHIR packages installed under ``root`` (default ``~/.fhir/packages``), one folder each.

    Installs are atomic: an archive is extracted into a hidden temporary folder under ``root``
    and renamed into place only once complete, so a crashed install never leaves a half
    package where a reader would find it. Safe to share between threads and processes.
    """

    def __init__(
        self, root: str | Path | None = None, *, limits: ArchiveLimits = ArchiveLimits()
    ) -> None:
        self.root = Path(root if root is not None else DEFAULT_PACKAGE_ROOT).expanduser().absolute()
        self.limits = limits

    def __repr__(self) -> str:
        return f"<PackageCache {self.root}>"

    def folder(self, name: str, version: str) -> Path:
        """``<root>/<name>#<version>``; raises ``ValueError`` for names that are not plain."""
        check_package_id(name, version)
        return self.root / f"{name}#{version}"

    def contains(self, name: str, version: str) -> bool:
        """True when ``name#version`` is completely installed."""
        return (self.folder(name, version) / "package" / "package.json").is_file()

    def installed(self) -> list[tuple[str, str]]:
        """``(name, version)`` of every installed package, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            if child.name.startswith(".") or "#" not in child.name:
                continue
            name, _, version = child.name.partition("#")
            if (child / "package" / "package.json").is_file():
                found.append((name, version))
        return sorted(found)

    def manifest(self, name: str, version: str) -> PackageManifest:
        """The ``package.json`` of an installed package; raises :class:`NotFoundError`."""
        path = self.folder(name, version) / "package" / "package.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"package {name}#{version} is not in the cache {self.root}"
            ) from None
        return PackageManifest.from_json(data, str(path))

    def load(self, name: str, version: str) -> FhirPackage:
        """Load an installed package; raises :class:`NotFoundError` when it is not installed."""
        if not self.contains(name, version):
            raise NotFoundError(f"package {name}#{version} is not in the cache {self.root}")
        return FhirPackage.load(self.folder(name, version), limits=self.limits)

    def load_with_dependencies(
        self, name: str, version: str, *, skip_missing: bool = False
    ) -> PackageSet:
        """The package and its installed dependencies (transitively) as a :class:`PackageSet`.

        The package comes first, then dependencies breadth-first. A dependency that is not
        installed raises :class:`NotFoundError` unless ``skip_missing`` (then it is logged).
        """
        result = PackageSet()
        queue = [(name, version)]
        seen: set[tuple[str, str]] = set()
        while queue:
            current = queue.pop(0)
            if current in seen:
                continue
            seen.add(current)
            if not self.contains(*current):
                if skip_missing and current != (name, version):
                    _log.warning("dependency not installed", package=f"{current[0]}#{current[1]}")
                    continue
                raise NotFoundError(f"package {current[0]}#{current[1]} is not in the cache")
            package = self.load(*current)
            result.add(package)
            queue.extend(package.manifest.dependencies.items())
        return result

    def install_archive(
        self, archive: ArchiveSource, *, expect: tuple[str, str] | None = None
    ) -> tuple[PackageManifest, bool]:
        """Install a package archive; returns its manifest and whether it was newly installed.

        ``expect`` = ``(name, version)`` refuses an archive whose ``package.json`` says otherwise.
        An already installed package is kept as is (``False``). Raises :class:`UnsafeArchiveError`
        (unsafe or oversized members) or :class:`CorruptDataError`; nothing is left behind then.
        Blocking: call it from a worker thread in async code.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        extract_archive(archive, staging, self.limits)
        try:
            manifest_path = staging / "package" / "package.json"
            if not manifest_path.is_file():
                raise CorruptDataError("archive has no package/package.json")
            manifest = PackageManifest.from_json(manifest_path.read_bytes(), "archive")
            if expect is not None and (manifest.name, manifest.version) != expect:
                raise CorruptDataError(
                    f"archive holds {manifest.package_id}, expected {expect[0]}#{expect[1]}"
                )
            final = self.folder(manifest.name, manifest.version)
            if self.contains(manifest.name, manifest.version):
                return manifest, False
            if final.exists():
                # A folder without package.json is debris from some other tool: move it aside
                # first so the rename below stays atomic.
                debris = self.root / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
                os.rename(final, debris)
                shutil.rmtree(debris, ignore_errors=True)
            try:
                os.rename(staging, final)
            except OSError:
                if self.contains(manifest.name, manifest.version):
                    return manifest, False  # another process finished the same install first
                raise
            _log.info("package installed", package=manifest.package_id, folder=str(final))
            return manifest, True
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def remove(self, name: str, version: str) -> bool:
        """Remove an installed package; returns whether there was one. Atomic for readers."""
        final = self.folder(name, version)
        if not final.exists():
            return False
        doomed = self.root / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        os.rename(final, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def purge_incomplete(self, older_than: float = 3600.0) -> int:
        """Delete temporary folders left by crashed installs, older than ``older_than`` seconds.

        Returns how many were removed. Younger ones may belong to installs still running.
        """
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for child in self.root.iterdir():
            if child.name.startswith(_TEMP_PREFIX) and child.stat().st_mtime < cutoff:
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
                removed += 1
        return removed
