"""Build small FHIR package archives (and hostile ones) in memory for the package tests."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any


def structure_definition(name: str, base_url: str = "http://example.org/fhir") -> dict[str, Any]:
    """A minimal StructureDefinition resource with a canonical URL."""
    return {
        "resourceType": "StructureDefinition",
        "id": name,
        "url": f"{base_url}/StructureDefinition/{name}",
        "version": "1.0.0",
        "name": name,
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient", "path": "Patient"}]},
    }


def package_files(
    name: str,
    version: str,
    *,
    dependencies: Mapping[str, str] | None = None,
    resources: Iterable[Mapping[str, Any]] = (),
    with_index: bool = True,
) -> dict[str, bytes]:
    """The files of a package (``package/...`` paths) with its manifest and optional index."""
    files: dict[str, bytes] = {}
    manifest: dict[str, Any] = {"name": name, "version": version, "fhirVersions": ["4.0.1"]}
    if dependencies:
        manifest["dependencies"] = dict(dependencies)
    files["package/package.json"] = json.dumps(manifest).encode()
    index = []
    for resource in resources:
        filename = f"{resource['resourceType']}-{resource['id']}.json"
        files[f"package/{filename}"] = json.dumps(resource, indent=2).encode()
        entry = {
            "filename": filename,
            "resourceType": resource["resourceType"],
            "id": resource["id"],
        }
        for key in ("url", "version", "kind", "type"):
            if key in resource:
                entry[key] = resource[key]
        index.append(entry)
    if with_index:
        files["package/.index.json"] = json.dumps({"index-version": 1, "files": index}).encode()
    return files


def tgz(
    files: Mapping[str, bytes],
    extra: Iterable[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]] = (),
) -> bytes:
    """A gzip tar of ``files`` plus ``extra`` raw members (for hostile archives)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for item in extra:
            if isinstance(item, tuple):
                info, data = item
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(item)
    return buffer.getvalue()


def package_tgz(name: str, version: str, **kwargs: Any) -> bytes:
    """A well-formed package archive (see :func:`package_files`)."""
    return tgz(package_files(name, version, **kwargs))


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    """A raw tar header (symlinks, hard links, fifos...)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info
