"""The mapping folder as a source: the files last taken from it, kept current by stat and read.

The folder is listed with one ``stat`` per relevant file and only what changed is read
(:class:`FolderScanner` and :func:`load_files` block; :class:`FolderSource` runs them in a worker
thread). A file's *signature* is ``(mtime_ns, size, inode)``: an atomic replace changes the
inode, an in-place write the mtime or size. Reads check the signature before and after, so a file
caught mid-write is reported as a problem (and retried on the next tick) instead of being cached
half-written.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from tidemark.core import Counters, iso_utc, parse_json

from ._fume import ALIASES_FILE, FILE_KEY, file_aliases
from ._log import WarnOnce, log
from ._types import Mapping as CachedMapping
from ._types import MappingMetadata

FileKind = Literal["text", "json", "aliases"]
ALL_KINDS: frozenset[FileKind] = frozenset({"text", "json", "aliases"})
MAPPING_KINDS: frozenset[FileKind] = frozenset({"text", "json"})


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


@dataclass
class FolderRead:
    """What one read of the folder found, not yet taken: the files loaded (or found broken or
    gone) and the names of files to forget."""

    report: LoadReport
    removed: list[str]


class Touched(NamedTuple):
    """What taking a read changed: the mapping keys whose files changed, and ``aliases.json``."""

    keys: set[str]
    aliases_changed: bool


@dataclass(frozen=True, slots=True)
class _FileEntry:
    loaded: LoadedFile
    mapping: CachedMapping


class FolderSource:
    """The mapping folder as a source: the text and JSON mapping files and ``aliases.json`` last
    taken, the signature of every file taken, and the version of each broken file warned about.

    :meth:`read_changes` and :meth:`read_key` do the I/O (in a worker thread) and raise
    ``OSError`` when the folder itself cannot be read, leaving the state untouched;
    :meth:`take` applies what they read. One caller at a time (the provider's file lock).
    """

    def __init__(
        self, folder: Path, extension: str, max_file_bytes: int, counters: Counters
    ) -> None:
        self.folder = folder
        self._scanner = FolderScanner(folder, extension)
        self._max_file_bytes = max_file_bytes
        self._counters = counters
        self._warnings = WarnOnce()
        self._text_files: dict[str, _FileEntry] = {}
        self._json_files: dict[str, _FileEntry] = {}
        self._alias_file: LoadedFile | None = None
        self._known: dict[str, FileSignature] = {}
        self._problems: dict[str, FileSignature] = {}  # file name -> version last warned about

    # -- what the folder holds -----------------------------------------------------------------
    def keys(self) -> set[str]:
        """Every key with a mapping file taken."""
        return set(self._text_files) | set(self._json_files)

    def json_mapping(self, key: str) -> CachedMapping | None:
        """The mapping of ``<key>.json``, if taken."""
        entry = self._json_files.get(key)
        return entry.mapping if entry is not None else None

    def text_mapping(self, key: str) -> CachedMapping | None:
        """The mapping of the text file of ``key``, if taken."""
        entry = self._text_files.get(key)
        return entry.mapping if entry is not None else None

    @property
    def aliases(self) -> dict[str, str] | None:
        """The aliases of ``aliases.json``, or ``None`` when it is absent."""
        return self._alias_file.aliases if self._alias_file is not None else None

    @property
    def aliases_source(self) -> str | None:
        """The path of ``aliases.json`` when it is taken."""
        return str(self._alias_file.listed.path) if self._alias_file is not None else None

    def metadata(self, mapping: CachedMapping) -> MappingMetadata:
        """The metadata of a file mapping: ``last_updated`` is its file's modification time."""
        layer = self._json_files if mapping.format == "json" else self._text_files
        entry = layer.get(mapping.key)
        modified = None
        if entry is not None:
            moment = datetime.fromtimestamp(entry.loaded.listed.signature.mtime_ns / 1e9, UTC)
            modified = iso_utc(moment, timespec="milliseconds")
        return MappingMetadata(mapping.key, "file", mapping.source, mapping.format, None, modified)

    # -- reading -------------------------------------------------------------------------------
    async def read_changes(self, *, full: bool, kinds: frozenset[FileKind]) -> FolderRead:
        """List the folder and read the files of ``kinds`` that are new or changed (all of them
        when ``full``); files of ``kinds`` no longer listed are to be forgotten. Raises
        ``OSError`` when the folder cannot be listed."""
        known = {} if full else self._known
        changes = await asyncio.to_thread(self._scanner.changes, known)
        self._counters.increment("files_stated", changes.stated)
        for name, reason in changes.skipped:
            self._warnings.warn(
                ("skipped-file", name), "mapping folder file skipped", file=name, reason=reason
            )
        changed = [f for f in changes.changed if f.kind in kinds]
        if full:
            listed = {f.name for f in changes.changed}
            removed = [n for n in self._known if n not in listed and self._kind_of(n) in kinds]
        else:
            removed = [n for n in changes.removed if self._kind_of(n) in kinds]
        report = (
            await asyncio.to_thread(load_files, changed, self._max_file_bytes, self.folder)
            if changed
            else LoadReport()
        )
        return FolderRead(report, removed)

    async def read_key(self, key: str) -> FolderRead:
        """Read the JSON and text files of one key (a missing one is to be forgotten). Raises
        ``FileNotFoundError`` when the folder is missing."""
        if not await asyncio.to_thread(os.path.isdir, self.folder):
            raise FileNotFoundError(f"mapping folder {self.folder} is missing")
        wanted = [self._scanner.listed("json", key), self._scanner.listed("text", key)]
        report = await asyncio.to_thread(load_files, wanted, self._max_file_bytes, self.folder)
        gone = [listed.name for listed in report.gone]
        report.gone = []
        return FolderRead(report, gone)

    # -- taking --------------------------------------------------------------------------------
    def take(self, read: FolderRead) -> Touched:
        """Apply a read: files loaded replace the ones held, broken files keep the previous
        value (warned once per version), removed files are forgotten."""
        report = read.report
        keys: set[str] = set()
        aliases_changed = False
        self._counters.increment(
            "files_read", len(report.loaded) + len(report.problems) + len(report.gone)
        )
        for loaded in report.loaded:
            listed = loaded.listed
            self._known[listed.name] = listed.signature
            self._problems.pop(listed.name, None)
            if listed.kind == "aliases":
                for warning in loaded.warnings:
                    self._warnings.warn(
                        ("alias-file", listed.signature, warning),
                        "aliases.json entry skipped",
                        problem=warning,
                    )
                self._alias_file = loaded
                aliases_changed = True
                continue
            mapping = CachedMapping(
                listed.key,
                loaded.text,
                "json" if listed.kind == "json" else "text",
                "file",
                str(listed.path),
            )
            layer = self._json_files if listed.kind == "json" else self._text_files
            layer[listed.key] = _FileEntry(loaded, mapping)
            keys.add(listed.key)
        for listed, problem in report.problems:
            self._counters.increment("file_errors")
            # One warning per version of a broken file, not one per tick while it stays broken.
            if self._problems.get(listed.name) != listed.signature:
                self._problems[listed.name] = listed.signature
                log.warning(
                    "mapping file not taken; keeping the previous value and retrying next tick",
                    file=str(listed.path),
                    problem=problem,
                )
        for name in [*read.removed, *(listed.name for listed in report.gone)]:
            kind_key = self._scanner.classify(name)
            self._known.pop(name, None)
            self._problems.pop(name, None)
            if not isinstance(kind_key, tuple):
                continue
            kind, key = kind_key
            if kind == "aliases":
                if self._alias_file is not None:
                    self._alias_file = None
                    aliases_changed = True
            elif (self._json_files if kind == "json" else self._text_files).pop(key, None):
                keys.add(key)
        return Touched(keys, aliases_changed)

    def _kind_of(self, name: str) -> FileKind | None:
        kind_key = self._scanner.classify(name)
        return kind_key[0] if isinstance(kind_key, tuple) else None
