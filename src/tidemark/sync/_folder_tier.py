"""The local folder tier: one JSON file per entity key, replaced by atomic rename."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import orjson

from tidemark.core import (
    MAX_JSON_DEPTH,
    ConfigurationError,
    Counters,
    DataValidationError,
    SourceUnavailableError,
    canonical_bytes,
    content_hash,
    file_lock,
    get_logger,
    parse_json,
)

from ._blob import Blob, is_empty, validate_blob
from ._ids import is_valid_key, validate_key
from ._metadata import KeyMetadata, TierMetadata
from ._stamps import HybridClock
from ._tiers import TIER_COUNTERS, precondition_holds
from ._worker import Worker

_log = get_logger("sync")
P = ParamSpec("P")
R = TypeVar("R")

INDEX_FILE = ".tidemark-index.json"
LOCK_FILE = ".tidemark-lock"
QUARANTINE_DIR = ".quarantine"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0
_Signature = tuple[int, int, int]


class FolderTier:
    """Blobs as files ``<root>/<key>.json`` holding canonical JSON.

    Each write goes to a temporary file in the same folder, is flushed to disk and renamed over
    the target, so a reader sees the old or the new blob, never a mix. Metadata is kept in an
    index file validated against each file's (inode, size, mtime); a file that changed behind the
    index is re-read. A torn or corrupt file (not JSON, nested deeper than
    :data:`~tidemark.core.MAX_JSON_DEPTH`, not a blob) is moved to ``<root>/.quarantine/`` (a
    warning names both files) and its key reads as absent, so a sync restores it from the other
    tiers. Keys are validated, so every path stays inside ``root``. Writers in several processes
    serialize on a lock file (``fcntl``).

    ``read_only`` opens the folder for reading only: nothing in it is created, moved or
    rewritten (no index file, no quarantine; a corrupt file is skipped and named in a warning),
    and writes raise :class:`~tidemark.core.ConfigurationError`.
    """

    def __init__(self, root: str | Path, *, name: str = "folder", read_only: bool = False) -> None:
        self._root = Path(root)
        self._name = name
        self._read_only = read_only
        self._counters = Counters(*TIER_COUNTERS)
        self._worker = Worker(f"tidemark-sync-{name}")
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[_Signature, KeyMetadata]] | None = None
        self._snapshot: TierMetadata | None = None
        self._index_dirty = False
        self._clock = HybridClock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def root(self) -> Path:
        """The folder holding the blobs."""
        return self._root

    def path_of(self, key: str) -> Path:
        """The file of ``key`` (validated, so always directly inside :attr:`root`)."""
        return self._root / f"{validate_key(key)}.json"

    async def load(self, key: str) -> Blob | None:
        path = self.path_of(key)
        return await self._call(self._load, key, path)

    async def store(self, key: str, blob: Blob, *, if_hash: str | None = None) -> bool:
        path = self.path_of(key)
        normalized = validate_blob(blob)
        return await self._call(self._store, key, path, normalized, if_hash)

    async def clear(self, key: str, *, if_hash: str | None = None) -> bool:
        path = self.path_of(key)
        return await self._call(self._clear, key, path, if_hash)

    async def load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        paths = [(key, self.path_of(key)) for key in keys]
        return await self._call(self._load_many, paths)

    async def store_many(self, writes: Sequence[tuple[str, Blob, str | None]]) -> list[bool]:
        checked = [
            (key, self.path_of(key), validate_blob(blob), if_hash) for key, blob, if_hash in writes
        ]
        return await self._call(self._store_many, checked)

    async def metadata(self) -> TierMetadata:
        return await self._call(self._metadata)

    async def close(self) -> None:
        await self._worker.close()

    # -- worker thread ------------------------------------------------------------------------

    async def _call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await self._worker.run(fn, *args, **kwargs)
        except OSError as exc:
            raise SourceUnavailableError(f"{self._name}: folder {self._root}: {exc}") from exc

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self._read_only:
            raise ConfigurationError(f"{self._name}: folder {self._root} was opened read-only")
        self._root.mkdir(parents=True, exist_ok=True)
        with self._lock, file_lock(self._root / LOCK_FILE):
            yield

    def _read(self, key: str, path: Path) -> tuple[Blob, str, _Signature] | None:
        """The blob, hash and signature of a file; ``None`` when absent or quarantined."""
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                data = handle.read()
        except FileNotFoundError:
            return None
        try:
            blob = validate_blob(parse_json(data, max_depth=MAX_JSON_DEPTH))
        except (ValueError, DataValidationError) as exc:
            self._quarantine(key, path, str(exc))
            return None
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        return blob, content_hash(canonical_bytes(blob)), signature

    def _quarantine(self, key: str, path: Path, reason: str) -> None:
        if self._read_only:
            _log.warning(
                f"corrupt blob file {path} skipped (read-only: left in place): {reason}",
                tier=self._name,
                key=key,
                file=str(path),
            )
            return
        target_dir = self._root / QUARANTINE_DIR
        target_dir.mkdir(exist_ok=True)
        stamp = self._clock.now().replace(":", "").replace("-", "")
        target = target_dir / f"{key}.{stamp}.{secrets.token_hex(3)}.json"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        self._forget(key)
        self._counters.increment("corrupt_quarantined")
        _log.warning(
            f"corrupt blob file {path} quarantined as {target}: {reason}",
            tier=self._name,
            key=key,
            file=str(path),
            reason=reason,
            moved_to=str(target),
        )

    def _forget(self, key: str) -> None:
        if self._entries is not None and self._entries.pop(key, None) is not None:
            self._snapshot = None
            self._index_dirty = True

    def _remember(self, key: str, signature: _Signature, meta: KeyMetadata) -> None:
        if self._entries is not None:
            self._entries[key] = (signature, meta)
            self._snapshot = None
            self._index_dirty = True

    def _load(self, key: str, path: Path) -> Blob | None:
        read = self._read(key, path)
        if read is None:
            self._forget(key)
            return None
        blob, digest, signature = read
        entry = self._entries.get(key) if self._entries is not None else None
        if entry is None or entry[0] != signature:
            self._remember(key, signature, KeyMetadata.of(blob, digest))
        self._counters.increment("blobs_read")
        return blob

    def _load_many(self, paths: Sequence[tuple[str, Path]]) -> list[Blob | None]:
        return [self._load(key, path) for key, path in paths]

    def _store_many(self, writes: Sequence[tuple[str, Path, Blob, str | None]]) -> list[bool]:
        return [self._store(key, path, blob, if_hash) for key, path, blob, if_hash in writes]

    def _store(self, key: str, path: Path, blob: Blob, if_hash: str | None) -> bool:
        if is_empty(blob):
            return self._clear(key, path, if_hash)
        data = canonical_bytes(blob)
        digest = content_hash(data)
        with self._exclusive():
            current = self._read(key, path)
            if not precondition_holds(if_hash, current[1] if current else None):
                self._counters.increment("preconditions_failed")
                return False
            if current is not None and current[1] == digest:
                return True
            temp = self._root / f"{_TMP_PREFIX}{key}.{secrets.token_hex(6)}"
            try:
                with open(temp, "xb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                    # A rename keeps inode, size and mtime: this is the new file's signature.
                    stat = os.fstat(handle.fileno())
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        self._remember(
            key, (stat.st_ino, stat.st_size, stat.st_mtime_ns), KeyMetadata.of(blob, digest)
        )
        self._counters.increment("blobs_written")
        return True

    def _clear(self, key: str, path: Path, if_hash: str | None) -> bool:
        with self._exclusive():
            current = self._read(key, path)
            if not precondition_holds(if_hash, current[1] if current else None):
                self._counters.increment("preconditions_failed")
                return False
            if current is None:
                return True
            path.unlink(missing_ok=True)
        self._forget(key)
        self._counters.increment("blobs_cleared")
        return True

    def _metadata(self) -> TierMetadata:
        self._counters.increment("metadata_reads")
        if self._entries is None:
            self._entries = self._read_index()
            self._snapshot = None
        seen: set[str] = set()
        changed = False
        if self._root.is_dir():
            with os.scandir(self._root) as listing:
                for item in listing:
                    changed |= self._scan_one(item, seen)
        for key in set(self._entries) - seen:
            del self._entries[key]
            changed = True
        if changed:
            self._snapshot = None
        if (changed or self._index_dirty) and not self._read_only:
            self._write_index()
            self._index_dirty = False
        if self._snapshot is None:
            self._snapshot = TierMetadata({k: meta for k, (_, meta) in self._entries.items()})
        return self._snapshot

    def _scan_one(self, item: os.DirEntry[str], seen: set[str]) -> bool:
        name = item.name
        if name.startswith(_TMP_PREFIX):
            self._remove_stale_temp(item)
            return False
        if not name.endswith(".json") or name.startswith("."):
            return False
        key = name[: -len(".json")]
        if not is_valid_key(key) or not item.is_file(follow_symlinks=False):
            return False
        stat = item.stat(follow_symlinks=False)
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        assert self._entries is not None
        entry = self._entries.get(key)
        if entry is not None and entry[0] == signature:
            seen.add(key)
            return False
        read = self._read(key, Path(item.path))
        if read is None:
            return True
        blob, digest, signature = read
        self._entries[key] = (signature, KeyMetadata.of(blob, digest))
        seen.add(key)
        return True

    def _remove_stale_temp(self, item: os.DirEntry[str]) -> None:
        # A temporary file left by a crashed writer; a live writer's file is younger.
        with contextlib.suppress(OSError):
            if time.time() - item.stat().st_mtime > _STALE_TMP_SECONDS:
                os.unlink(item.path)

    def _read_index(self) -> dict[str, tuple[_Signature, KeyMetadata]]:
        try:
            raw = orjson.loads((self._root / INDEX_FILE).read_bytes())
            entries: dict[str, tuple[_Signature, KeyMetadata]] = {}
            for key, entry in raw["entries"].items():
                signature = tuple(entry["signature"])
                if not is_valid_key(key) or len(signature) != 3:
                    raise ValueError(f"bad index entry {key!r}")
                entries[key] = (
                    (int(signature[0]), int(signature[1]), int(signature[2])),
                    KeyMetadata.from_json(entry["metadata"]),
                )
            return entries
        except FileNotFoundError:
            return {}
        except Exception as exc:
            # The index is only a cache of what the files say: rebuild it from them.
            _log.warning("folder index unreadable; rebuilding", tier=self._name, reason=str(exc))
            return {}

    def _write_index(self) -> None:
        assert self._entries is not None
        document = {
            "version": 1,
            "entries": {
                key: {"signature": list(signature), "metadata": meta.to_json()}
                for key, (signature, meta) in sorted(self._entries.items())
            },
        }
        self._root.mkdir(parents=True, exist_ok=True)
        temp = self._root / f"{_TMP_PREFIX}index.{secrets.token_hex(6)}"
        try:
            temp.write_bytes(orjson.dumps(document))
            os.replace(temp, self._root / INDEX_FILE)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            _log.warning("folder index not saved", tier=self._name, reason=str(exc))
