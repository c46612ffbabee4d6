"""An async client for FHIR package registries (the npm registry protocol) that installs packages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import orjson

from tidemark.core import (
    CorruptDataError,
    Counters,
    NotFoundError,
    SourceUnavailableError,
    get_logger,
)

from ._package import check_package_id
from ._package_cache import PackageCache
from ._tarball import OversizedArchiveError

_log = get_logger("fhir.packages")

#: The HL7 FHIR package registry.
DEFAULT_REGISTRY_URL = "https://packages.fhir.org"

_VERSION_PART = re.compile(r"(\d+)|([A-Za-z]+)")


@dataclass(frozen=True)
class InstalledPackage:
    """One package an install touched: ``newly_installed`` is False when it was already cached."""

    name: str
    version: str
    path: Path
    newly_installed: bool
    dependencies: Mapping[str, str] = field(default_factory=dict)

    @property
    def package_id(self) -> str:
        """``name#version``."""
        return f"{self.name}#{self.version}"


@dataclass(frozen=True)
class PackageVersions:
    """A package's published versions (version → download metadata) and its dist-tags."""

    name: str
    versions: Mapping[str, Mapping[str, Any]]
    dist_tags: Mapping[str, str]


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for versions: numeric parts compare as numbers, a pre-release sorts before release."""
    main, _, pre = version.partition("-")
    key: list[tuple[int, int | str]] = [
        (1, int(p)) if p.isdigit() else (0, p) for p in main.split(".")
    ]
    # A release (no suffix) sorts after any of its pre-releases.
    key.append((2, 0) if not pre else (1, pre))
    return tuple(key)


def parse_package_spec(spec: str, version: str | None = None) -> tuple[str, str | None]:
    """Split ``name@version`` (or ``name#version``) into name and version; ``version`` wins."""
    for separator in ("@", "#"):
        if separator in spec:
            name, _, given = spec.partition(separator)
            return name, version or given or None
    return spec, version


class PackageRegistry:
    """Installs FHIR packages and their dependencies from a registry into a :class:`PackageCache`.

    Speaks the npm registry protocol (``GET /<name>`` → versions with ``dist.tarball``), as
    ``packages.fhir.org`` and ``packages2.fhir.org`` do. Downloads are size-capped, verified
    against ``dist.shasum``/``dist.integrity`` when the registry gives them, and installed
    atomically. Use as ``async with PackageRegistry(...) as registry``. Errors:
    :class:`NotFoundError` (unknown package or version), :class:`SourceUnavailableError`
    (network, 5xx), :class:`CorruptDataError`/``UnsafeArchiveError`` (bad metadata or archive),
    ``ValueError`` (a name or version that is not a plain ``[A-Za-z0-9._-]`` word).
    ``counters`` holds ``requests``, ``downloads``, ``bytes_downloaded``, ``installed``,
    ``already_cached``.
    """

    def __init__(
        self,
        url: str = DEFAULT_REGISTRY_URL,
        *,
        cache: PackageCache | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.cache = cache or PackageCache()
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self._owns_client = client is None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.counters = Counters(
            "requests", "downloads", "bytes_downloaded", "installed", "already_cached"
        )

    async def __aenter__(self) -> PackageRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this registry created it."""
        if self._owns_client:
            await self._client.aclose()

    async def versions(self, name: str) -> PackageVersions:
        """The published versions of ``name``; raises :class:`NotFoundError` when unknown."""
        check_package_id(name, "0")
        where = f"{self.url}/{quote(name, safe='@.')}"
        self.counters.increment("requests")
        try:
            response = await self._client.get(where, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(f"package registry {self.url} unreachable: {exc}") from exc
        if response.status_code == 404:
            raise NotFoundError(f"package {name} is not in the registry {self.url}")
        if response.status_code != 200:
            raise SourceUnavailableError(
                f"package registry {self.url} answered {response.status_code} for {name}"
            )
        try:
            doc = orjson.loads(response.content)
            versions = doc["versions"]
            if not isinstance(versions, dict) or not all(
                isinstance(v, dict) for v in versions.values()
            ):
                raise TypeError("versions is not an object of objects")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorruptDataError(f"registry metadata for {name} is malformed: {exc}") from exc
        tags = doc.get("dist-tags")
        dist_tags = (
            {k: v for k, v in tags.items() if isinstance(v, str)} if isinstance(tags, dict) else {}
        )
        return PackageVersions(name, versions, dist_tags)

    def _choose(self, published: PackageVersions, spec: str | None) -> str:
        versions = published.versions
        if spec is None or spec in ("", "latest"):
            tagged = published.dist_tags.get("latest")
            if tagged is not None and tagged in versions:
                return tagged
            candidates = list(versions)
        elif spec in versions:
            return spec
        elif spec.endswith((".x", ".*")) or spec == "*":
            prefix = spec[:-1] if spec != "*" else ""
            candidates = [v for v in versions if v.startswith(prefix)]
        else:
            candidates = []
        releases = [v for v in candidates if "-" not in v] or candidates
        if not releases:
            shown = ", ".join(sorted(versions, key=version_key)[-10:])
            raise NotFoundError(
                f"package {published.name} has no version {spec!r} in {self.url} (latest: {shown})"
            )
        return max(releases, key=version_key)

    async def resolve(self, name: str, spec: str | None = None) -> str:
        """The version ``spec`` means: exact, ``latest``/``None``, or a wildcard like ``1.0.x``.

        An exact version already in the cache resolves without asking the registry.
        """
        return await self._resolve(name, spec, {})

    async def _resolve(self, name: str, spec: str | None, memo: dict[str, PackageVersions]) -> str:
        if spec and self.cache.contains(name, spec):
            return spec
        return self._choose(await self._published(name, memo), spec)

    async def _published(self, name: str, memo: dict[str, PackageVersions]) -> PackageVersions:
        if name not in memo:
            memo[name] = await self.versions(name)
        return memo[name]

    async def install(
        self, package: str, version: str | None = None, *, dependencies: bool = True
    ) -> list[InstalledPackage]:
        """Install ``package`` (``name``, ``name@version`` or ``name#version``) and, unless
        ``dependencies`` is False, everything it depends on, transitively.

        Returns one :class:`InstalledPackage` per package touched, the requested one first.
        Packages already in the cache are not downloaded again.
        """
        name, spec = parse_package_spec(package, version)
        memo: dict[str, PackageVersions] = {}
        resolved = await self._resolve(name, spec, memo)
        root = await self._install_one(name, resolved, memo)
        result = [root]
        if not dependencies:
            return result
        seen = {(root.name, root.version)}
        level = [root]
        while level:
            wanted: list[tuple[str, str]] = []
            for item in level:
                for dep_name, dep_spec in item.dependencies.items():
                    wanted.append((dep_name, dep_spec))
            resolved_deps = await asyncio.gather(*(self._resolve(n, s, memo) for n, s in wanted))
            todo = []
            for (dep_name, _), dep_version in zip(wanted, resolved_deps, strict=True):
                if (dep_name, dep_version) not in seen:
                    seen.add((dep_name, dep_version))
                    todo.append((dep_name, dep_version))
            level = list(await asyncio.gather(*(self._install_one(n, v, memo) for n, v in todo)))
            result.extend(level)
        return result

    async def _install_one(
        self, name: str, version: str, memo: dict[str, PackageVersions]
    ) -> InstalledPackage:
        check_package_id(name, version)
        lock = self._locks.setdefault((name, version), asyncio.Lock())
        async with lock:
            if self.cache.contains(name, version):
                self.counters.increment("already_cached")
                manifest = await asyncio.to_thread(self.cache.manifest, name, version)
                return InstalledPackage(
                    name, version, self.cache.folder(name, version), False, manifest.dependencies
                )
            published = await self._published(name, memo)
            meta = published.versions.get(version)
            if meta is None:
                raise NotFoundError(f"package {name} has no version {version} in {self.url}")
            archive = await self._download(name, version, meta)
            try:
                manifest, fresh = await asyncio.to_thread(
                    self.cache.install_archive, archive, expect=(name, version)
                )
            finally:
                archive.unlink(missing_ok=True)
            if fresh:
                self.counters.increment("installed")
            return InstalledPackage(
                name, version, self.cache.folder(name, version), fresh, manifest.dependencies
            )

    async def _download(self, name: str, version: str, meta: Mapping[str, Any]) -> Path:
        dist = meta.get("dist")
        if not isinstance(dist, dict):
            raise CorruptDataError(f"registry gives no dist for {name}#{version}")
        tarball = dist.get("tarball")
        if not isinstance(tarball, str) or not tarball:
            raise CorruptDataError(f"registry gives no dist.tarball for {name}#{version}")
        url = urljoin(self.url + "/", tarball)
        limit = self.cache.limits.max_archive_bytes
        self.cache.root.mkdir(parents=True, exist_ok=True)
        target = self.cache.root / f".tmp-{secrets.token_hex(8)}.tgz"
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha512 = hashlib.sha512()
        size = 0
        self.counters.increment("requests")
        self.counters.increment("downloads")
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code == 404:
                    raise NotFoundError(f"tarball of {name}#{version} not found at {url}")
                if response.status_code != 200:
                    raise SourceUnavailableError(
                        f"registry answered {response.status_code} for the tarball {url}"
                    )
                # Local file writes of 64 KiB chunks land in the page cache in microseconds;
                # a worker-thread hop per chunk would cost more than it saves.
                with target.open("wb") as out:
                    async for chunk in response.aiter_bytes(65536):
                        size += len(chunk)
                        if size > limit:
                            raise OversizedArchiveError(
                                f"tarball of {name}#{version} exceeds {limit} bytes"
                            )
                        sha1.update(chunk)
                        sha512.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            target.unlink(missing_ok=True)
            raise SourceUnavailableError(f"download of {name}#{version} failed: {exc}") from exc
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self.counters.increment("bytes_downloaded", size)
        try:
            _verify_digest(name, version, dist, sha1.hexdigest(), sha512.digest())
        except CorruptDataError:
            target.unlink(missing_ok=True)
            raise
        return target


def _verify_digest(
    name: str, version: str, dist: Mapping[str, Any], sha1_hex: str, sha512_raw: bytes
) -> None:
    shasum = dist.get("shasum")
    if isinstance(shasum, str) and shasum and shasum.lower() != sha1_hex:
        raise CorruptDataError(
            f"tarball of {name}#{version} fails its shasum check ({sha1_hex} != {shasum})"
        )
    integrity = dist.get("integrity")
    if isinstance(integrity, str) and integrity.startswith("sha512-"):
        expected = integrity.removeprefix("sha512-")
        if base64.b64encode(sha512_raw).decode() != expected:
            raise CorruptDataError(f"tarball of {name}#{version} fails its integrity check")
