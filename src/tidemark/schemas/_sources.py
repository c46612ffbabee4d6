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
    ``dependencies``, the dependencies the packages declare (and are not named themselves) are
    added after them from ``cache`` when installed there; the others are skipped (logged). Raises
    ``FileNotFoundError``/:class:`NotFoundError` for a spec that names nothing, and
    :class:`~tidemark.core.CorruptDataError` for a package that cannot be read. Blocking.
    """
    cache = cache or PackageCache()
    result = PackageSet()
    for spec in specs:
        path = Path(spec).expanduser()
        if path.exists():
            result.add(FhirPackage.load(path))
            continue
        name, version = parse_package_spec(spec)
        if version is None:
            raise NotFoundError(f"{spec}: no such file, and not a name#version package")
        if not cache.contains(name, version):
            raise NotFoundError(f"{spec}: no such file, nor a package in {cache.root}")
        result.add(cache.load(name, version))
    if dependencies:
        # After every named package is in, so that a dependency named explicitly is not sought.
        present = {p.manifest.package_id for p in result.packages}
        for package in list(result.packages):
            for name, version in package.manifest.dependencies.items():
                if f"{name}#{version}" in present:
                    continue
                if cache.contains(name, version):
                    for found in cache.load_with_dependencies(
                        name, version, skip_missing=True
                    ).packages:
                        result.add(found)
                        present.add(found.manifest.package_id)
                else:
                    _log.info(
                        "dependency not in the package cache",
                        package=package.manifest.package_id,
                        dependency=f"{name}#{version}",
                    )
    return result
