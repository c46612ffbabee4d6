"""The mapping folder: list it with one ``stat`` per relevant file, read only what changed.

Blocking functions, meant to run in a worker thread. A file's *signature* is
``(mtime_ns, size, inode)``: an atomic replace changes the inode, an in-place write the mtime or
size. Reads check the signature before and after, so a file caught mid-write is reported as a
problem (and retried by the caller) instead of being cached half-written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from tidemark.core import parse_json

from ._fume import ALIASES_FILE, FILE_KEY, file_aliases

FileKind = Literal["text", "json", "aliases"]


class FileSignature(NamedTuple):
    """What a ``stat`` says about a file's version: modification time, size, inode."""

    mtime_ns: int
    size: int
    inode: int


@dataclass(frozen=True, slots=True)
class ListedFile:
    """A relevant file of the folder: its kind, mapping key and signature when listed."""

    name: str
    kind: FileKind
    key: str
    path: Path
    signature: FileSignature


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """A file read completely and consistently: its text, and for ``aliases.json`` the aliases."""

    listed: ListedFile
    text: str
    aliases: dict[str, str] | None = None
    warnings: tuple[str, ...] = ()


class FileProblem(Exception):
    """A file could not be taken as it is now (mid-write, invalid JSON, unreadable, too large).

    The caller keeps the previous cache value and tries again on the next tick.
    """


@dataclass
class FolderChanges:
    """What a poll found: new or changed files, names that disappeared, files stat'ed."""

    changed: list[ListedFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    stated: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


_Class = tuple[FileKind, str] | str | None  # (kind, key), a reason to skip, or irrelevant
_FILE_TYPE_BITS = 0o170000


class FolderScanner:
    """Lists one mapping folder. Remembers how it classified each file name, so a poll of an
    unchanged folder costs a directory listing and one ``stat`` per mapping file."""

    def __init__(self, folder: Path, extension: str) -> None:
        self.folder = folder
        self.extension = extension
        self._classes: dict[str, _Class] = {}  # name -> classification, for every poll

    def classify(self, name: str) -> _Class:
        """``(kind, key)`` for a mapping or alias file, a reason string for a skipped one, or
        ``None`` for a file the provider ignores."""
        if name in self._classes:
            return self._classes[name]
        result: _Class
        if name.startswith("."):
            result = None
        elif name == ALIASES_FILE:
            result = ("aliases", "")
        elif name.endswith(".json"):
            result = self._keyed("json", name[: -len(".json")])
        elif name.endswith(self.extension):
            result = self._keyed("text", name[: -len(self.extension)])
        else:
            result = None
        if len(self._classes) > 100_000:
            self._classes.clear()
        self._classes[name] = result
        return result

    @staticmethod
    def _keyed(kind: FileKind, key: str) -> _Class:
        if FILE_KEY.match(key):
            return (kind, key)
        return f"the key {key!r} is not a valid mapping key (letters and digits, a letter first, at most 64)"

    def path_of(self, kind: FileKind, key: str) -> Path:
        """Where the file of a key lives."""
        if kind == "aliases":
            return self.folder / ALIASES_FILE
        return self.folder / (key + (".json" if kind == "json" else self.extension))

    def changes(self, known: Mapping[str, FileSignature]) -> FolderChanges:
        """Compare the folder with the signatures last read. Raises ``OSError`` when the folder
        itself cannot be listed (missing, unmounted, no permission)."""
        # The hot path of every poll: one stat and a few dict operations per file.
        result = FolderChanges()
        root: str | None = None
        seen: set[str] = set()
        classes = self._classes
        stated = hits = 0
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                kind_key = classes[name] if name in classes else self.classify(name)
                if kind_key is None:
                    continue
                if isinstance(kind_key, str):
                    result.skipped.append((name, kind_key))
                    continue
                try:
                    info = entry.stat()
                except OSError:
                    continue  # vanished, or a dangling symlink: as good as absent
                stated += 1
                if info.st_mode & _FILE_TYPE_BITS != stat.S_IFREG:
                    continue
                if entry.is_symlink():
                    root = root or os.path.realpath(self.folder)
                    if not _inside(root, entry.path):
                        result.skipped.append((name, "a symbolic link to outside the folder"))
                        continue
                seen.add(name)
                signature = (info.st_mtime_ns, info.st_size, info.st_ino)
                previous = known.get(name)
                if previous is not None:
                    hits += 1
                if previous != signature:
                    kind, key = kind_key
                    listed = ListedFile(
                        name, kind, key, Path(entry.path), FileSignature(*signature)
                    )
                    result.changed.append(listed)
        result.stated = stated
        if hits != len(known):  # some known file was not seen: it is gone
            result.removed = [name for name in known if name not in seen]
        return result

    def listing(self) -> FolderChanges:
        """Every relevant file of the folder (all reported as changed)."""
        return self.changes({})

    def listed(self, kind: FileKind, key: str) -> ListedFile:
        """A file of the folder by kind and key (signature filled in when it is read)."""
        path = self.path_of(kind, key)
        return ListedFile(path.name, kind, key, path, FileSignature(0, 0, 0))


def _inside(root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def load_file(listed: ListedFile, max_bytes: int, root: Path) -> LoadedFile:
    """Read and check one file. Raises ``FileNotFoundError`` when it is gone and
    :class:`FileProblem` when it cannot be taken as it is now."""
    if os.path.islink(listed.path) and not _inside(os.path.realpath(root), str(listed.path)):
        raise FileProblem("a symbolic link to outside the folder")
    try:
        with open(listed.path, "rb") as handle:
            before = os.fstat(handle.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise FileNotFoundError(str(listed.path))
            if before.st_size > max_bytes:
                raise FileProblem(f"{before.st_size} bytes is over the limit of {max_bytes}")
            data = handle.read(max_bytes + 1)
            after = os.fstat(handle.fileno())
    except (FileNotFoundError, FileProblem):
        raise
    except OSError as exc:
        raise FileProblem(f"cannot be read: {exc}") from exc
    signature = FileSignature(before.st_mtime_ns, before.st_size, before.st_ino)
    if (
        signature != FileSignature(after.st_mtime_ns, after.st_size, after.st_ino)
        or len(data) != before.st_size
    ):
        raise FileProblem("changed while being read")
    actual = ListedFile(listed.name, listed.kind, listed.key, listed.path, signature)
    try:
        text = data.decode("utf-8-sig" if listed.kind != "text" else "utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"is not UTF-8 text: {exc}") from exc
    if listed.kind == "text":
        return LoadedFile(actual, text)
    try:
        value = parse_json(text)
    except ValueError as exc:
        raise FileProblem(f"is not valid JSON (half-written?): {exc}") from exc
    if listed.kind == "json":
        return LoadedFile(actual, text)
    try:
        aliases, warnings = file_aliases(value)
    except ValueError as exc:
        raise FileProblem(str(exc)) from exc
    return LoadedFile(actual, text, aliases, tuple(warnings))


@dataclass
class LoadReport:
    """The outcome of loading several files: loaded, gone, and problems by file name."""

    loaded: list[LoadedFile] = field(default_factory=list)
    gone: list[ListedFile] = field(default_factory=list)
    problems: list[tuple[ListedFile, str]] = field(default_factory=list)


def load_files(files: Iterable[ListedFile], max_bytes: int, root: Path) -> LoadReport:
    """Load each file; never raises for one bad file."""
    report = LoadReport()
    for listed in files:
        try:
            report.loaded.append(load_file(listed, max_bytes, root))
        except FileNotFoundError:
            report.gone.append(listed)
        except FileProblem as exc:
            report.problems.append((listed, str(exc)))
    return report
