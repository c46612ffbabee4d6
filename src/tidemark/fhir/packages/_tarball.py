"""Safe reading and extraction of package archives (``.tgz``).

Every member is checked before a byte of it is used: its name must stay inside the target
(no absolute paths, no ``..``), links must resolve inside the target, only regular files,
directories and links are accepted, and sizes are capped per member and in total. A refused
archive raises :class:`UnsafeArchiveError` and leaves nothing behind.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tidemark.core import CorruptDataError

_MIB = 1024 * 1024


class UnsafeArchiveError(CorruptDataError):
    """An archive member would escape its target folder, is a device/fifo, or breaks a limit."""

    code = "corrupt-data:unsafe-archive"
    title = "Unsafe Archive"


class OversizedArchiveError(UnsafeArchiveError):
    """A member, the sum of the members, or the download exceeds the configured limit."""

    code = "corrupt-data:oversized-archive"
    title = "Oversized Archive"


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps applied while reading an archive (guards against archive bombs).

    ``max_member_bytes`` caps one member, ``max_total_bytes`` the sum of all members (both
    uncompressed), ``max_members`` the member count and ``max_archive_bytes`` the compressed
    download.
    """

    max_member_bytes: int = 256 * _MIB
    max_total_bytes: int = 2048 * _MIB
    max_members: int = 200_000
    max_archive_bytes: int = 512 * _MIB


ArchiveSource = Path | bytes | BinaryIO


def _open_stream(source: ArchiveSource) -> tuple[BinaryIO, bool]:
    if isinstance(source, bytes):
        return io.BytesIO(source), True
    if isinstance(source, Path):
        return source.open("rb"), True
    return source, False


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member name, refusing any that could escape.

    Raises :class:`UnsafeArchiveError` for absolute names, drive letters, ``..`` components and
    NUL bytes. ``.`` and empty components are dropped.
    """
    if "\x00" in name:
        raise UnsafeArchiveError(f"archive member name contains a NUL byte: {name!r}")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchiveError(f"archive member has an absolute path: {name!r}")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member escapes the target folder: {name!r}")
    return parts


def _link_target_parts(member: tarfile.TarInfo, parts: tuple[str, ...]) -> tuple[str, ...]:
    """Archive-relative components a link points to, refusing links that leave the archive."""
    target = member.linkname
    if "\x00" in target:
        raise UnsafeArchiveError(f"link {member.name!r} has a NUL byte in its target")
    unified = target.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchiveError(
            f"link {member.name!r} points outside the target folder: {target!r}"
        )
    # A hard link names another member from the archive root; a symlink is relative to its folder.
    base = list(parts[:-1]) if member.issym() else []
    for part in unified.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not base:
                raise UnsafeArchiveError(
                    f"link {member.name!r} points outside the target folder: {target!r}"
                )
            base.pop()
        else:
            base.append(part)
    return tuple(base)


def _checked_members(
    tar: tarfile.TarFile, limits: ArchiveLimits
) -> Iterator[tuple[tarfile.TarInfo, tuple[str, ...]]]:
    total = 0
    count = 0
    for member in tar:
        count += 1
        if count > limits.max_members:
            raise OversizedArchiveError(f"archive has more than {limits.max_members} members")
        parts = member_parts(member.name)
        if member.isreg():
            if member.size > limits.max_member_bytes:
                raise OversizedArchiveError(
                    f"archive member {member.name!r} is {member.size} bytes, over the limit of "
                    f"{limits.max_member_bytes}"
                )
            total += member.size
            if total > limits.max_total_bytes:
                raise OversizedArchiveError(
                    f"archive expands to more than {limits.max_total_bytes} bytes"
                )
        elif not (member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchiveError(
                f"archive member {member.name!r} is not a file, folder or link (type {member.type!r})"
            )
        if not parts:
            if member.isdir():
                continue
            raise UnsafeArchiveError(f"archive member has an empty name: {member.name!r}")
        yield member, parts


def _iterate(
    source: ArchiveSource, limits: ArchiveLimits, visit: Callable[[tarfile.TarFile], None]
) -> None:
    stream, owned = _open_stream(source)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            visit(tar)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorruptDataError(f"not a readable package archive: {exc}") from exc
    finally:
        if owned:
            stream.close()


class _NotPlain(Exception):
    """The archive uses tar features the fast reader leaves to :mod:`tarfile`."""


_BLOCK = 512
_PLAIN_TYPES = frozenset((b"0", b"\x00", b"5"))


def _decompress(data: bytes, limits: ArchiveLimits) -> bytes:
    """The tar bytes of a (possibly gzip-compressed) archive, capped against archive bombs."""
    if data[:2] != b"\x1f\x8b":
        return data
    cap = limits.max_total_bytes + _BLOCK * min(limits.max_members, 1_000_000) * 2
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise CorruptDataError(f"not a readable package archive: {exc}") from exc
    if len(raw) > cap:
        raise OversizedArchiveError(f"archive expands to more than {limits.max_total_bytes} bytes")
    if not inflater.eof:
        raise CorruptDataError("not a readable package archive: truncated gzip stream")
    return raw


def _plain_members(raw: bytes) -> Iterator[tuple[str, bytes, int, int]]:
    """``(name, type, size, offset)`` of a tar made only of ustar files and folders.

    Raises :class:`_NotPlain` on anything else (links, pax or GNU headers, base-256 sizes, bad
    checksums), so that :mod:`tarfile` reads the archive and reports its problems.
    """
    offset = 0
    while offset + _BLOCK <= len(raw):
        header = raw[offset : offset + _BLOCK]
        if header == bytes(_BLOCK):
            return
        kind = header[156:157]
        if kind not in _PLAIN_TYPES or header[257:262] != b"ustar" or header[124] & 0x80:
            raise _NotPlain
        stored = header[148:156].split(b"\x00", 1)[0].strip()
        checksum = sum(header[:148]) + 8 * 32 + sum(header[156:])
        try:
            size = int(header[124:136].split(b"\x00", 1)[0].strip() or b"0", 8)
            if int(stored, 8) != checksum:
                raise _NotPlain
        except ValueError:
            raise _NotPlain from None
        name = header[:100].split(b"\x00", 1)[0]
        prefix = header[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
        start = offset + _BLOCK
        if start + size > len(raw):
            raise _NotPlain
        yield name.decode("utf-8", "surrogateescape"), kind, size, start
        offset = start + (size + _BLOCK - 1) // _BLOCK * _BLOCK
    raise _NotPlain  # no end-of-archive marker: let tarfile judge the truncation


def _plain_entries(
    raw: bytes, limits: ArchiveLimits
) -> list[tuple[tuple[str, ...], bytes, int, int]]:
    """Every member of a plain archive, all checked before any is used."""
    entries = []
    total = 0
    for count, (name, kind, size, start) in enumerate(_plain_members(raw), start=1):
        if count > limits.max_members:
            raise OversizedArchiveError(f"archive has more than {limits.max_members} members")
        parts = member_parts(name)
        if kind == b"5":
            if parts:
                entries.append((parts, kind, 0, start))
            continue
        if size > limits.max_member_bytes:
            raise OversizedArchiveError(
                f"archive member {name!r} is {size} bytes, over the limit of "
                f"{limits.max_member_bytes}"
            )
        total += size
        if total > limits.max_total_bytes:
            raise OversizedArchiveError(
                f"archive expands to more than {limits.max_total_bytes} bytes"
            )
        if not parts:
            raise UnsafeArchiveError(f"archive member has an empty name: {name!r}")
        entries.append((parts, kind, size, start))
    return entries


def read_archive_files(
    source: ArchiveSource,
    keep: Callable[[tuple[str, ...]], bool],
    limits: ArchiveLimits = ArchiveLimits(),
) -> dict[str, bytes]:
    """Read the regular files whose components satisfy ``keep`` into memory, checking every member.

    Keys are the member paths joined with ``/``. Links to kept files yield the target's bytes.
    Raises :class:`UnsafeArchiveError` / :class:`OversizedArchiveError` for unsafe archives and
    :class:`CorruptDataError` for unreadable ones.
    """
    raw = _decompress(_read_capped(source, limits), limits)
    try:
        entries = _plain_entries(raw, limits)
    except _NotPlain:
        pass  # links, pax headers, damage...: the general reader below decides
    else:
        return {
            "/".join(parts): raw[start : start + size]
            for parts, kind, size, start in entries
            if kind != b"5" and keep(parts)
        }
    files: dict[str, bytes] = {}

    def visit(tar: tarfile.TarFile) -> None:
        for member, parts in _checked_members(tar, limits):
            if member.issym() or member.islnk():
                target = _link_target_parts(member, parts)
                if keep(parts) and "/".join(target) in files:
                    files["/".join(parts)] = files["/".join(target)]
                continue
            if member.isreg() and keep(parts):
                handle = tar.extractfile(member)
                if handle is None:
                    raise CorruptDataError(f"archive member {member.name!r} cannot be read")
                files["/".join(parts)] = handle.read()

    _iterate(raw, limits, visit)
    return files


def _read_capped(source: ArchiveSource, limits: ArchiveLimits) -> bytes:
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, Path):
        with source.open("rb") as handle:
            data = handle.read(limits.max_archive_bytes + 1)
    else:
        data = source.read(limits.max_archive_bytes + 1)
    if len(data) > limits.max_archive_bytes:
        raise OversizedArchiveError(f"archive is larger than {limits.max_archive_bytes} bytes")
    return data


def _inside(root: Path, candidate: str) -> bool:
    root_text = str(root)
    return candidate == root_text or candidate.startswith(root_text + os.sep)


def extract_archive(
    source: ArchiveSource, target: Path, limits: ArchiveLimits = ArchiveLimits()
) -> None:
    """Extract ``source`` into the folder ``target`` (created; must not exist), checking every member.

    Nothing is ever written outside ``target``: names are checked lexically and, because earlier
    links could redirect later writes, every write and link is also checked against the real
    path of its folder. On any error the partly extracted ``target`` is removed. Raises like
    :func:`read_archive_files`.
    """
    raw = _decompress(_read_capped(source, limits), limits)
    try:
        entries = _plain_entries(raw, limits)
    except _NotPlain:
        pass  # links, pax headers, damage...: extracted by the general path below
    else:
        _extract_plain(raw, entries, target)
        return
    target.mkdir(parents=True, exist_ok=False)
    root = Path(os.path.realpath(target))

    def folder_for(parts: tuple[str, ...], name: str) -> Path:
        folder = root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        if not _inside(root, os.path.realpath(folder)):
            raise UnsafeArchiveError(f"archive member {name!r} would be written outside the target")
        return folder

    def visit(tar: tarfile.TarFile) -> None:
        for member, parts in _checked_members(tar, limits):
            destination = root.joinpath(*parts)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                if not _inside(root, os.path.realpath(destination)):
                    raise UnsafeArchiveError(f"archive folder {member.name!r} escapes the target")
                continue
            folder = folder_for(parts, member.name)
            if os.path.islink(destination) or destination.is_dir():
                raise UnsafeArchiveError(
                    f"archive member {member.name!r} would overwrite a link or folder"
                )
            target_parts = (
                _link_target_parts(member, parts) if member.issym() or member.islnk() else ()
            )
            if member.issym():
                resolved = os.path.realpath(folder / member.linkname)
                if not _inside(root, resolved):
                    raise UnsafeArchiveError(
                        f"link {member.name!r} points outside the target folder: "
                        f"{member.linkname!r}"
                    )
                os.symlink(member.linkname, destination)
            elif member.islnk():
                source_file = os.path.realpath(root.joinpath(*target_parts))
                if not _inside(root, source_file) or not os.path.isfile(source_file):
                    raise UnsafeArchiveError(
                        f"hard link {member.name!r} does not point to a file inside the archive"
                    )
                shutil.copyfile(source_file, destination)
            else:
                handle = tar.extractfile(member)
                if handle is None:
                    raise CorruptDataError(f"archive member {member.name!r} cannot be read")
                with destination.open("wb") as out:
                    shutil.copyfileobj(handle, out, 1024 * 1024)

    try:
        _iterate(raw, limits, visit)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _extract_plain(
    raw: bytes, entries: list[tuple[tuple[str, ...], bytes, int, int]], target: Path
) -> None:
    """Write a checked plain archive: only files and folders with lexically safe names, into a
    fresh folder, so nothing can redirect a write (no links exist to follow)."""
    target.mkdir(parents=True, exist_ok=False)
    try:
        made: set[tuple[str, ...]] = set()
        for parts, kind, size, start in entries:
            folder_parts = parts if kind == b"5" else parts[:-1]
            if folder_parts not in made:
                target.joinpath(*folder_parts).mkdir(parents=True, exist_ok=True)
                made.add(folder_parts)
            if kind != b"5":
                with open(target.joinpath(*parts), "wb") as out:
                    out.write(raw[start : start + size])
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
