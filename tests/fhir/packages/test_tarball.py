import os
import tarfile

import pytest

from tests.fhir.packages.builders import member, package_files, tgz
from tidemark.core import CorruptDataError
from tidemark.fhir.packages import (
    ArchiveLimits,
    OversizedArchiveError,
    UnsafeArchiveError,
    extract_archive,
    read_archive_files,
)

MANIFEST = package_files("evil.pkg", "1.0.0")


def _everything(parts):
    return True


def _assert_refused(archive: bytes, tmp_path, error=UnsafeArchiveError, limits=ArchiveLimits()):
    target = tmp_path / "target" / "out"
    with pytest.raises(error):
        extract_archive(archive, target, limits)
    assert not target.exists(), "a refused archive leaves nothing behind"
    with pytest.raises(error):
        read_archive_files(archive, _everything, limits)
    # Nothing was written next to or above the target either.
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


@pytest.mark.parametrize(
    "name", ["../escape.json", "package/../../escape.json", "package/..\\..\\escape.json"]
)
def test_member_with_dotdot_is_refused(tmp_path, name):
    _assert_refused(tgz(MANIFEST, [(member(name), b"{}")]), tmp_path)


@pytest.mark.parametrize("name", ["/tmp/escape.json", "C:/escape.json"])
def test_member_with_absolute_path_is_refused(tmp_path, name):
    _assert_refused(tgz(MANIFEST, [(member(name), b"{}")]), tmp_path)


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "package/../../../outside"])
def test_symlink_pointing_outside_is_refused(tmp_path, target):
    _assert_refused(tgz(MANIFEST, [member("package/link", tarfile.SYMTYPE, target)]), tmp_path)


def test_symlink_escaping_through_an_earlier_internal_link_is_refused(tmp_path):
    # "a" -> "." looks harmless, and "a/b" -> "../outside" stays inside *lexically*,
    # but on disk a/.. is the parent of the target.
    archive = tgz(
        MANIFEST,
        [
            member("a", tarfile.SYMTYPE, "."),
            member("a/b", tarfile.SYMTYPE, "../outside"),
        ],
    )
    target = tmp_path / "target" / "out"
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, target)
    assert not target.exists()


def test_file_written_through_a_symlinked_folder_cannot_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tgz(
        MANIFEST,
        [member("dir", tarfile.SYMTYPE, "."), (member("dir/x.json"), b"{}")],
    )
    target = tmp_path / "target" / "out"
    extract_archive(archive, target)  # "dir" -> "." stays inside: allowed
    assert (target / "x.json").read_bytes() == b"{}"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside"])
def test_hard_link_pointing_outside_is_refused(tmp_path, target):
    _assert_refused(tgz(MANIFEST, [member("package/hard", tarfile.LNKTYPE, target)]), tmp_path)


def test_internal_links_are_materialised(tmp_path):
    archive = tgz(
        MANIFEST,
        [
            member("package/copy.json", tarfile.LNKTYPE, "package/package.json"),
            member("package/alias.json", tarfile.SYMTYPE, "package.json"),
        ],
    )
    target = tmp_path / "out"
    extract_archive(archive, target)
    manifest = (target / "package" / "package.json").read_bytes()
    assert (target / "package" / "copy.json").read_bytes() == manifest
    assert (target / "package" / "alias.json").read_bytes() == manifest
    files = read_archive_files(archive, _everything)
    assert files["package/copy.json"] == files["package/alias.json"] == manifest


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_devices_and_fifos_are_refused(tmp_path, kind):
    _assert_refused(tgz(MANIFEST, [member("package/dev", kind)]), tmp_path)


def test_oversized_member_is_refused_before_it_is_read(tmp_path):
    archive = tgz(MANIFEST, [(member("package/big.json"), b"x" * 5000)])
    limits = ArchiveLimits(max_member_bytes=4096)
    _assert_refused(archive, tmp_path, OversizedArchiveError, limits)


def test_many_small_members_over_the_total_limit_are_refused(tmp_path):
    extra = [(member(f"package/f{i}.json"), b"x" * 1000) for i in range(10)]
    limits = ArchiveLimits(max_member_bytes=2000, max_total_bytes=5000)
    _assert_refused(tgz(MANIFEST, extra), tmp_path, OversizedArchiveError, limits)


def test_too_many_members_are_refused(tmp_path):
    extra = [member(f"package/d{i}", tarfile.DIRTYPE) for i in range(20)]
    _assert_refused(
        tgz(MANIFEST, extra), tmp_path, OversizedArchiveError, ArchiveLimits(max_members=10)
    )


def test_unsafe_archive_errors_are_corrupt_data_with_a_stable_code():
    assert issubclass(UnsafeArchiveError, CorruptDataError)
    assert issubclass(OversizedArchiveError, UnsafeArchiveError)
    assert UnsafeArchiveError("x").code == "corrupt-data:unsafe-archive"


def test_extract_refuses_an_existing_target(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        extract_archive(tgz(MANIFEST), tmp_path / "out")


def test_extracted_files_get_plain_permissions(tmp_path):
    info = member("package/setuid.json")
    info.mode = 0o6777
    target = tmp_path / "out"
    extract_archive(tgz(MANIFEST, [(info, b"{}")]), target)
    mode = os.stat(target / "package" / "setuid.json").st_mode
    assert not mode & 0o6000


def test_pax_and_plain_archives_read_the_same(tmp_path):
    long_name = "package/" + "x" * 150 + ".json"
    plain = tgz(MANIFEST, [(member("package/a.json"), b"{}")])
    with_pax = tgz(MANIFEST, [(member("package/a.json"), b"{}"), (member(long_name), b"[]")])
    assert read_archive_files(plain, _everything) == {**MANIFEST, "package/a.json": b"{}"}
    files = read_archive_files(with_pax, _everything)
    assert files[long_name] == b"[]" and files["package/a.json"] == b"{}"


def test_a_decompression_bomb_is_stopped_at_the_limit():
    bomb = tgz(MANIFEST, [(member("package/zeros.json"), bytes(5_000_000))])
    assert len(bomb) < 50_000
    limits = ArchiveLimits(max_member_bytes=10_000_000, max_total_bytes=100_000, max_members=10)
    with pytest.raises(OversizedArchiveError):
        read_archive_files(bomb, _everything, limits)


def test_a_damaged_header_is_corrupt_data():
    import gzip

    raw = bytearray(gzip.decompress(tgz(MANIFEST)))
    raw[0:5] = b"\xff\xfe\xfd\xfc\xfb"  # breaks the first header's checksum
    with pytest.raises(CorruptDataError):
        read_archive_files(gzip.compress(bytes(raw)), _everything)
