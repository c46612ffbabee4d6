"""Settings of the package cache and registry client (the ``[packages]`` table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._package_cache import DEFAULT_PACKAGE_ROOT, PackageCache
from ._registry import DEFAULT_REGISTRY_URL, PackageRegistry
from ._tarball import ArchiveLimits

_MIB = 1024 * 1024


@dataclass(frozen=True)
class PackageSettings:
    """``[packages]`` settings: read with ``Settings.load().section("packages", PackageSettings)``.

    Environment overrides follow the usual rule, e.g. ``TIDEMARK_PACKAGES_CACHE_DIR``,
    ``TIDEMARK_PACKAGES_REGISTRY_URL``.
    """

    cache_dir: Path = field(default_factory=DEFAULT_PACKAGE_ROOT.expanduser)
    registry_url: str = DEFAULT_REGISTRY_URL
    max_member_mb: int = 256
    max_package_mb: int = 2048
    max_download_mb: int = 512
    timeout: float = 60.0

    def limits(self) -> ArchiveLimits:
        """The archive limits these settings describe."""
        return ArchiveLimits(
            max_member_bytes=self.max_member_mb * _MIB,
            max_total_bytes=self.max_package_mb * _MIB,
            max_archive_bytes=self.max_download_mb * _MIB,
        )

    def cache(self) -> PackageCache:
        """A :class:`PackageCache` at ``cache_dir`` with these limits."""
        return PackageCache(self.cache_dir, limits=self.limits())

    def registry(self) -> PackageRegistry:
        """A :class:`PackageRegistry` for ``registry_url`` installing into :meth:`cache`."""
        return PackageRegistry(self.registry_url, cache=self.cache(), timeout=self.timeout)
