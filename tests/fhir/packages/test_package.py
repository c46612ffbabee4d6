import json
import tarfile

import pytest

from tests.fhir.packages.builders import package_files, package_tgz, structure_definition, tgz
from tests.support import require_data
from tidemark.core import CorruptDataError, NotFoundError, canonical_bytes, content_hash
from tidemark.fhir.packages import FhirPackage, PackageSet, read_archive_files

R4 = "fhir/hl7.fhir.r4.core-4.0.1.tgz"
US_CORE = "fhir/hl7.fhir.us.core-6.1.0.tgz"
PATIENT = "http://hl7.org/fhir/StructureDefinition/Patient"


@pytest.fixture(scope="module")
def r4() -> FhirPackage:
    return FhirPackage.load(require_data(R4))


def _unpack(files: dict[str, bytes], root) -> None:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def test_r4_core_archive_indexes_all_655_structure_definitions(r4):
    assert r4.name == "hl7.fhir.r4.core" and r4.version == "4.0.1"
    assert len(r4.structure_definitions()) == 655
    by_url = r4.entry(PATIENT)
    assert by_url is not None and by_url.kind == "resource" and by_url.type == "Patient"
    assert r4.entry(f"{PATIENT}|4.0.1") == by_url
    assert r4.entry(f"{PATIENT}|3.0.2") is None
    assert by_url.canonical == f"{PATIENT}|4.0.1"


def test_every_conformance_resource_is_indexed_by_url(r4):
    value_set = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert value_set in r4
    assert r4.resource(value_set)["resourceType"] == "ValueSet"
    assert len(r4.entries("SearchParameter")) == 1400


def test_resource_returns_a_fresh_dict_and_source_hash_is_canonical(r4):
    first = r4.resource(PATIENT)
    first["name"] = "changed"
    second = r4.resource(PATIENT)
    assert second["name"] == "Patient"
    assert r4.source_hash(PATIENT) == content_hash(canonical_bytes(second))


def test_us_core_manifest_lists_its_dependencies():
    us_core = FhirPackage.load(require_data(US_CORE))
    assert us_core.manifest.dependencies["hl7.fhir.r4.core"] == "4.0.1"
    assert us_core.manifest.fhir_versions == ("4.0.1",)
    assert us_core.manifest.canonical == "http://hl7.org/fhir/us/core"
    assert len(us_core.structure_definitions()) > 50


def test_folder_and_archive_of_the_same_package_index_the_same(tmp_path):
    files = package_files("example.pkg", "1.0.0", resources=[structure_definition("A")])
    _unpack(files, tmp_path)
    archive = tmp_path / "example.tgz"
    archive.write_bytes(tgz(files))
    from_archive = FhirPackage.load(archive)
    from_parent = FhirPackage.load(tmp_path)
    from_package_dir = FhirPackage.load(tmp_path / "package")
    assert from_archive.entries() == from_parent.entries() == from_package_dir.entries()
    url = "http://example.org/fhir/StructureDefinition/A"
    assert from_archive.source_hash(url) == from_parent.source_hash(url)


def test_a_missing_index_is_rebuilt_by_scanning_the_files(tmp_path):
    files = package_files(
        "example.pkg", "1.0.0", resources=[structure_definition("A")], with_index=False
    )
    archive = tmp_path / "p.tgz"
    archive.write_bytes(tgz(files))
    package = FhirPackage.load(archive)
    entry = package.entry("http://example.org/fhir/StructureDefinition/A|1.0.0")
    assert entry is not None and entry.kind == "resource" and entry.type == "Patient"


@pytest.mark.parametrize(
    "index",
    [
        b"{not json",
        json.dumps({"files": [{"filename": "../../etc/passwd", "resourceType": "X"}]}).encode(),
        json.dumps({"files": [{"filename": "Missing.json", "resourceType": "X"}]}).encode(),
        json.dumps({"files": "nope"}).encode(),
    ],
)
def test_an_unusable_index_is_ignored_and_the_files_are_scanned(tmp_path, index):
    files = package_files("example.pkg", "1.0.0", resources=[structure_definition("A")])
    files["package/.index.json"] = index
    _unpack(files, tmp_path)
    package = FhirPackage.load(tmp_path)
    assert [e.filename for e in package.entries()] == ["StructureDefinition-A.json"]


def test_source_hash_ignores_key_order_and_whitespace(tmp_path):
    sd = structure_definition("A")
    compact = package_files("p.one", "1.0.0", resources=[sd])
    reordered = dict(reversed(list(sd.items())))
    pretty = package_files("p.two", "1.0.0", resources=[reordered])
    pretty["package/StructureDefinition-A.json"] = json.dumps(reordered, indent=7).encode()
    (tmp_path / "one.tgz").write_bytes(tgz(compact))
    (tmp_path / "two.tgz").write_bytes(tgz(pretty))
    url = sd["url"]
    assert FhirPackage.load(tmp_path / "one.tgz").source_hash(url) == FhirPackage.load(
        tmp_path / "two.tgz"
    ).source_hash(url)


def test_an_archive_without_package_json_is_corrupt_data(tmp_path):
    archive = tmp_path / "p.tgz"
    archive.write_bytes(tgz({"package/StructureDefinition-A.json": b"{}"}))
    with pytest.raises(CorruptDataError, match=r"package\.json"):
        FhirPackage.load(archive)


@pytest.mark.parametrize(
    "manifest",
    [b"{oops", b"[]", b'{"name": "x"}', b'{"name": "../evil", "version": "1"}'],
)
def test_a_malformed_package_json_is_corrupt_data(tmp_path, manifest):
    archive = tmp_path / "p.tgz"
    archive.write_bytes(tgz({"package/package.json": manifest}))
    with pytest.raises(CorruptDataError):
        FhirPackage.load(archive)


def test_a_resource_file_with_malformed_json_is_corrupt_data_naming_the_file(tmp_path):
    files = package_files("example.pkg", "1.0.0", resources=[structure_definition("A")])
    files["package/StructureDefinition-A.json"] = b'{"resourceType": "Struct'
    archive = tmp_path / "p.tgz"
    archive.write_bytes(tgz(files))
    package = FhirPackage.load(archive)  # the index still lists it
    with pytest.raises(CorruptDataError, match=r"StructureDefinition-A\.json"):
        package.resource("http://example.org/fhir/StructureDefinition/A")


def test_unknown_canonical_raises_not_found_and_missing_path_file_not_found(tmp_path, r4):
    with pytest.raises(NotFoundError):
        r4.resource("http://example.org/nothing")
    with pytest.raises(FileNotFoundError):
        FhirPackage.load(tmp_path / "absent.tgz")


def test_a_truncated_archive_is_corrupt_data(tmp_path):
    data = package_tgz("example.pkg", "1.0.0", resources=[structure_definition("A")])
    archive = tmp_path / "p.tgz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError):
        FhirPackage.load(archive)


def test_not_an_archive_at_all_is_corrupt_data(tmp_path):
    archive = tmp_path / "p.tgz"
    archive.write_bytes(b"this is not gzip")
    with pytest.raises(CorruptDataError):
        FhirPackage.load(archive)


def test_examples_and_nested_files_are_not_indexed(tmp_path):
    files = package_files("example.pkg", "1.0.0", resources=[structure_definition("A")])
    files["package/example/Patient-x.json"] = b'{"resourceType": "Patient", "id": "x"}'
    archive = tmp_path / "p.tgz"
    archive.write_bytes(tgz(files))
    assert [e.filename for e in FhirPackage.load(archive).entries()] == [
        "StructureDefinition-A.json"
    ]
    kept = read_archive_files(archive, lambda parts: parts[0] == "package")
    assert "package/example/Patient-x.json" in kept


def test_package_set_resolves_across_packages_first_listed_wins(tmp_path):
    shared = structure_definition("A")
    own = structure_definition("B")
    first = dict(shared, name="FromFirst")
    (tmp_path / "one.tgz").write_bytes(package_tgz("p.one", "1.0.0", resources=[first, own]))
    (tmp_path / "two.tgz").write_bytes(package_tgz("p.two", "1.0.0", resources=[shared]))
    one, two = FhirPackage.load(tmp_path / "one.tgz"), FhirPackage.load(tmp_path / "two.tgz")
    packages = PackageSet([one, two, one])
    assert [p.name for p in packages.packages] == ["p.one", "p.two"]
    found = packages.resource(shared["url"])
    assert found is not None and found["name"] == "FromFirst"
    assert packages.resource("http://example.org/none") is None
    assert own["url"] in packages
    assert [e.url for _, e in packages.structure_definitions()] == [shared["url"], own["url"]]


def test_tar_without_gzip_is_also_accepted(tmp_path):
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in package_files("plain.tar", "1.0.0").items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "p.tar").write_bytes(buffer.getvalue())
    assert FhirPackage.load(tmp_path / "p.tar").name == "plain.tar"
