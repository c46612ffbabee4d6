import io
import json
import tarfile

import pytest

from tests.schemas.builders import dated_patient, named_patient
from tidemark.core import NotFoundError
from tidemark.fhir.packages import PackageCache
from tidemark.schemas import load_packages


def _archive(name: str, version: str, dependencies: dict[str, str], resources) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        files = {
            "package/package.json": {"name": name, "version": version, "dependencies": dependencies}
        }
        for resource in resources:
            files[f"package/StructureDefinition-{resource['id']}.json"] = resource
        for path, document in files.items():
            data = json.dumps(document).encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path):
    cache = PackageCache(tmp_path / "packages")
    cache.install_archive(_archive("base.profiles", "1.0.0", {}, [named_patient()]))
    cache.install_archive(
        _archive(
            "top.profiles",
            "2.0.0",
            {"base.profiles": "1.0.0", "absent": "9.9.9"},
            [dated_patient()],
        )
    )
    return cache


def test_cached_packages_are_found_by_name_and_version(cache):
    found = load_packages(["top.profiles#2.0.0"], cache=cache)
    assert [p.manifest.package_id for p in found.packages] == ["top.profiles#2.0.0"]
    also = load_packages(["top.profiles@2.0.0"], cache=cache, dependencies=True)
    assert [p.manifest.package_id for p in also.packages] == [
        "top.profiles#2.0.0",
        "base.profiles#1.0.0",
    ]


def test_paths_load_archives_and_folders(tmp_path, cache):
    archive = tmp_path / "top.tgz"
    archive.write_bytes(
        _archive("top.profiles", "2.0.0", {"base.profiles": "1.0.0"}, [dated_patient()])
    )
    found = load_packages([str(archive)], cache=cache, dependencies=True)
    assert [p.manifest.package_id for p in found.packages] == [
        "top.profiles#2.0.0",
        "base.profiles#1.0.0",
    ]
    folder = cache.folder("base.profiles", "1.0.0")
    assert load_packages([str(folder)], cache=cache).packages[0].name == "base.profiles"


def test_a_dependency_named_explicitly_is_not_loaded_twice(cache):
    found = load_packages(
        ["top.profiles#2.0.0", "base.profiles#1.0.0"], cache=cache, dependencies=True
    )
    assert len(found.packages) == 2


@pytest.mark.parametrize("spec", ["no-such-file.tgz", "missing.package#1.0.0"])
def test_a_spec_that_names_nothing_is_not_found(cache, spec):
    with pytest.raises(NotFoundError, match="no such file"):
        load_packages([spec], cache=cache)
