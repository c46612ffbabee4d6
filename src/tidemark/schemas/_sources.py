"""Finding the FHIR packages a command names: archive or folder paths, or cached packages."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tidemark.core import NotFoundError, get_logger
from tidemark.fhir.packages import FhirPackage, PackageCache, PackageSet, parse_package_spec

_log = get_logger("schemas")


def load_packages(
    specs: Iterable[str],
    *,
    cache: PackageCache | None = None,
    dependencies: bool = False,
) -> PackageSet:
    """The packages named by ``specs``, in order (first = highest precedence).

    A spec is a path (a ``.tgz`` as published, or an unpacked folder) or ``name#version`` /
    ``name@version`` of a package installed in ``cache`` (default ``~/.fhir/packages``). With
    ``dependencies``, the dependencies each package declares are added after them from
    ``cache`` when installed there (those that are not are logged and skipped). Raises
    ``FileNotFoundError``/:class:`NotFoundError` for a spec that names nothing, and
    :class:`~tidemark.core.CorruptDataError` for a package that cannot be read. Blocking.
    """
    cache = cache or PackageCache()
    result = PackageSet()
    for spec in specs:
        path = Path(spec).expanduser()
        if path.exists():
            package = FhirPackage.load(path)
        else:
            name, version = parse_package_spec(spec)
            if version is None:
                raise NotFoundError(f"{spec}: no such file, and not a name#version package")
            if not cache.contains(name, version):
                raise NotFoundError(f"{spec}: no such file, nor a package in {cache.root}")
            package = cache.load(name, version)
        result.add(package)
        if dependencies:
            for name, version in package.manifest.dependencies.items():
                if cache.contains(name, version):
                    for dependency in cache.load_with_dependencies(
                        name, version, skip_missing=True
                    ).packages:
                        result.add(dependency)
                else:
                    _log.warning(
                        "dependency not in the package cache",
                        package=package.manifest.package_id,
                        dependency=f"{name}#{version}",
                    )
    return result
