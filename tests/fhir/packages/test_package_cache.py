import os
import time
from pathlib import Path

import pytest

from tests.fhir.packages.builders import (
    member,
    package_files,
    package_tgz,
    structure_definition,
    tgz,
)
from tidemark.core import CorruptDataError, NotFoundError, Settings
from tidemark.fhir.packages import (
    ArchiveLimits,
    OversizedArchiveError,
    PackageCache,
    PackageSettings,
    UnsafeArchiveError,
)


def test_install_lays_out_the_ecosystem_folders(tmp_path):
    cache = PackageCache(tmp_path)
    manifest, fresh = cache.install_archive(
        package_tgz("example.pkg", "1.0.0", resources=[structure_definition("A")])
    )
    assert fresh and manifest.package_id == "example.pkg#1.0.0"
    assert (tmp_path / "example.pkg#1.0.0" / "package" / "package.json").is_file()
    assert cache.installed() == [("example.pkg", "1.0.0")]
    package = cache.load("example.pkg", "1.0.0")
    assert "http://example.org/fhir/StructureDefinition/A" in package


def test_installing_again_keeps_the_existing_package(tmp_path):
    cache = PackageCache(tmp_path)
    cache.install_archive(package_tgz("example.pkg", "1.0.0"))
    marker = tmp_path / "example.pkg#1.0.0" / "package" / "marker"
    marker.write_text("kept")
    _, fresh = cache.install_archive(package_tgz("example.pkg", "1.0.0"))
    assert not fresh and marker.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["example.pkg#1.0.0"]


@pytest.mark.parametrize(
    ("archive", "error"),
    [
        (
            tgz(package_files("evil.pkg", "1.0.0"), [(member("../x.json"), b"{}")]),
            UnsafeArchiveError,
        ),
        (tgz({"package/other.json": b"{}"}), CorruptDataError),
        (b"garbage", CorruptDataError),
    ],
)
def test_a_refused_install_leaves_no_package_and_no_staging_folder(tmp_path, archive, error):
    root = tmp_path / "cache"
    cache = PackageCache(root)
    with pytest.raises(error):
        cache.install_archive(archive)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "x.json").exists()


def test_an_oversized_member_refuses_the_install(tmp_path):
    cache = PackageCache(tmp_path, limits=ArchiveLimits(max_member_bytes=100))
    archive = tgz(package_files("big.pkg", "1.0.0"), [(member("package/big.json"), b"x" * 200)])
    with pytest.raises(OversizedArchiveError):
        cache.install_archive(archive)
    assert cache.installed() == []


def test_an_archive_that_is_not_the_expected_package_is_refused(tmp_path):
    cache = PackageCache(tmp_path)
    with pytest.raises(CorruptDataError, match="expected"):
        cache.install_archive(package_tgz("other.pkg", "2.0.0"), expect=("example.pkg", "1.0.0"))
    assert cache.installed() == []


def test_leftovers_of_a_crashed_install_are_invisible_and_purged(tmp_path):
    cache = PackageCache(tmp_path)
    # What a process killed mid-extraction leaves: a hidden staging folder with half a package.
    staging = tmp_path / ".tmp-0123456789abcdef" / "package"
    staging.mkdir(parents=True)
    (staging / "StructureDefinition-A.json").write_text("{")
    assert cache.installed() == []
    assert not cache.contains("example.pkg", "1.0.0")
    assert cache.purge_incomplete(older_than=3600) == 0  # may still be running
    old = time.time() - 7200
    os.utime(tmp_path / ".tmp-0123456789abcdef", (old, old))
    assert cache.purge_incomplete(older_than=3600) == 1
    assert list(tmp_path.iterdir()) == []


def test_debris_without_package_json_is_replaced_by_a_real_install(tmp_path):
    cache = PackageCache(tmp_path)
    (tmp_path / "example.pkg#1.0.0" / "package").mkdir(parents=True)
    assert not cache.contains("example.pkg", "1.0.0")
    _, fresh = cache.install_archive(package_tgz("example.pkg", "1.0.0"))
    assert fresh and cache.contains("example.pkg", "1.0.0")


def test_names_that_would_leave_the_root_are_refused(tmp_path):
    cache = PackageCache(tmp_path)
    for name, version in [("../evil", "1.0.0"), ("a/b", "1"), ("ok", "../1"), ("ok", "..")]:
        with pytest.raises(ValueError):
            cache.folder(name, version)


def test_load_of_a_package_not_installed_is_not_found(tmp_path):
    with pytest.raises(NotFoundError):
        PackageCache(tmp_path).load("example.pkg", "1.0.0")
    with pytest.raises(NotFoundError):
        PackageCache(tmp_path).manifest("example.pkg", "1.0.0")


def test_load_with_dependencies_follows_them_transitively(tmp_path):
    cache = PackageCache(tmp_path)
    cache.install_archive(package_tgz("p.a", "1.0.0", dependencies={"p.b": "1.0.0"}))
    cache.install_archive(
        package_tgz("p.b", "1.0.0", dependencies={"p.c": "2.0.0", "p.a": "1.0.0"})
    )
    cache.install_archive(package_tgz("p.c", "2.0.0"))
    names = [p.manifest.package_id for p in cache.load_with_dependencies("p.a", "1.0.0").packages]
    assert names == ["p.a#1.0.0", "p.b#1.0.0", "p.c#2.0.0"]


def test_load_with_dependencies_reports_or_skips_a_missing_one(tmp_path):
    cache = PackageCache(tmp_path)
    cache.install_archive(package_tgz("p.a", "1.0.0", dependencies={"p.missing": "1.0.0"}))
    with pytest.raises(NotFoundError, match=r"p\.missing"):
        cache.load_with_dependencies("p.a", "1.0.0")
    loaded = cache.load_with_dependencies("p.a", "1.0.0", skip_missing=True)
    assert [p.name for p in loaded.packages] == ["p.a"]


def test_remove_deletes_the_package_folder(tmp_path):
    cache = PackageCache(tmp_path)
    cache.install_archive(package_tgz("example.pkg", "1.0.0"))
    assert cache.remove("example.pkg", "1.0.0") is True
    assert cache.remove("example.pkg", "1.0.0") is False
    assert list(tmp_path.iterdir()) == []


def test_settings_configure_root_registry_and_limits(tmp_path):
    settings = Settings(
        {"packages": {"cache_dir": str(tmp_path / "from-file"), "max_member_mb": 1}},
        env={"TIDEMARK_PACKAGES_REGISTRY_URL": "http://127.0.0.1:1"},
    )
    section = settings.section("packages", PackageSettings)
    assert section.cache().root == tmp_path / "from-file"
    assert section.limits().max_member_bytes == 1024 * 1024
    assert section.registry().url == "http://127.0.0.1:1"


def test_default_root_is_the_ecosystem_cache():
    assert PackageCache().root == Path.home() / ".fhir" / "packages"


def test_an_archive_torn_midway_installs_nothing(tmp_path):
    import gzip

    # A torn archive is handed to the streaming extractor, which writes members as it reads
    # them: the tear is found after several files are already in the staging folder.
    files = package_files("torn.pkg", "1.0.0")
    extra = [(member(f"package/f{i}.json"), b"{" + bytes(2000) + b"}") for i in range(20)]
    raw = gzip.decompress(tgz(files, extra))
    torn = gzip.compress(raw[: len(raw) // 2])
    cache = PackageCache(tmp_path)
    with pytest.raises(CorruptDataError):
        cache.install_archive(torn)
    assert list(tmp_path.iterdir()) == []
