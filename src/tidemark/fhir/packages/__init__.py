"""tidemark.fhir.packages: FHIR packages, the package cache and registry installs.

- :class:`FhirPackage` loads a package (``.tgz`` as published, or an unpacked folder), reads
  ``package.json`` and ``.index.json``, and indexes every resource by canonical URL and by
  ``url|version``; :meth:`FhirPackage.resource` gives a resource's JSON and
  :meth:`FhirPackage.source_hash` its canonical source hash
  (``content_hash(canonical_bytes(resource))``).
- :class:`PackageSet` resolves canonicals across a package and its dependencies.
- :class:`PackageCache` is the ecosystem cache ``~/.fhir/packages/<name>#<version>/package/``
  (configurable root) with atomic installs.
- :class:`PackageRegistry` installs ``name@version`` and its dependencies from a registry
  speaking the npm protocol (default ``https://packages.fhir.org``).

Archives are read with safety checks: members escaping the target (absolute paths, ``..``,
links pointing outside) raise :class:`UnsafeArchiveError`, members or archives over the
:class:`ArchiveLimits` raise :class:`OversizedArchiveError` (both are ``CorruptDataError``).
"""

from ._package import FhirPackage, PackageManifest, PackageSet, ResourceEntry
from ._package_cache import DEFAULT_PACKAGE_ROOT, PackageCache
from ._registry import (
    DEFAULT_REGISTRY_URL,
    InstalledPackage,
    PackageRegistry,
    PackageVersions,
    parse_package_spec,
    version_key,
)
from ._settings import PackageSettings
from ._tarball import (
    ArchiveLimits,
    OversizedArchiveError,
    UnsafeArchiveError,
    extract_archive,
    read_archive_files,
)

__all__ = [
    "DEFAULT_PACKAGE_ROOT",
    "DEFAULT_REGISTRY_URL",
    "ArchiveLimits",
    "FhirPackage",
    "InstalledPackage",
    "OversizedArchiveError",
    "PackageCache",
    "PackageManifest",
    "PackageRegistry",
    "PackageSet",
    "PackageSettings",
    "PackageVersions",
    "ResourceEntry",
    "UnsafeArchiveError",
    "extract_archive",
    "parse_package_spec",
    "read_archive_files",
    "version_key",
]
