"""A persistent key → bytes cache: one file per entry under a root folder, LRU by total size.

Layout under ``root``: ``<h[:2]>/<h>.entry`` holds an entry whole (a short header, the JSON
integrity record, then the stored value) and ``<h>.json`` beside it is a copy of the record
(the entry's metadata, for listings and for people), where ``h`` is the xxh3-128 hash of the
key. Every file is written under a temporary name and renamed into place, so a reader (in
any process) opens either the previous entry or the new one, never a mix: a hit is one read.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidemark.core import SYSTEM_CLOCK, Clock, CorruptDataError, content_hash, get_logger

from ._memory import CacheStats
from ._record import EntryInfo, Record, StoredEntry, decode_value, encode_value

_log = get_logger("cache.disk")

_MAGIC = b"TMC1"
_HEADER = len(_MAGIC) + 4
_ENTRY = ".entry"
_SIDECAR = ".json"
_TEMP = ".tmp"
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_NAME = re.compile(r"^([0-9a-f]{32})(\.entry|\.json)$")
#: Temporary files older than this are leftovers of a crashed writer; scans remove them.
_STALE_TEMP_SECONDS = 3600.0
#: A read refreshes the file's mtime (recency across restarts) at most this often.
_TOUCH_INTERVAL = 60.0
_STRIPES = 64
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def key_hash(key: str) -> str:
    """The file stem of ``key``: its xxh3-128 hash (32 hex digits)."""
    return content_hash(key)


@dataclass(slots=True)
class _Indexed:
    size: int
    accessed: float
    # Known once the entry was read, written or described (a scan only stats the files).
    key: str | None = None
    stored_at: float | None = None
    meta: Mapping[str, Any] | None = None


def _pack(record_json: bytes, stored: bytes) -> bytes:
    return b"".join((_MAGIC, len(record_json).to_bytes(4, "big"), record_json, stored))


def _unpack(blob: bytes) -> tuple[Record, bytes]:
    if len(blob) < _HEADER or blob[: len(_MAGIC)] != _MAGIC:
        raise CorruptDataError("not a cache entry (bad header)")
    end = _HEADER + int.from_bytes(blob[len(_MAGIC) : _HEADER], "big")
    if end > len(blob):
        raise CorruptDataError("entry is truncated inside its record")
    return Record.from_json(blob[_HEADER:end]), blob[end:]


def _read_file(path: str) -> bytes:
    # os.open/os.read: a third of the cost of open().read() for small files; O_NOFOLLOW
    # refuses an entry file that was replaced by a symbolic link.
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        # Cache files are never rewritten in place (a write renames a new file over the old
        # one), so the size seen here is final: read exactly that much.
        remaining = os.fstat(fd).st_size
        chunks = []
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


class DiskCache:
    """Persistent key → bytes cache in ``root``; thread-safe, and safe to share between processes.

    * ``max_bytes``: cap on the total size of the files; the least recently used entries (last
      read or write; kept in the files' mtime across restarts, to a minute) are removed first.
      A value that cannot fit on its own is refused (``set`` returns False).
    * ``ttl``: seconds after the write an entry expires (wall time from ``clock``, so it holds
      across restarts).
    * ``compress``: store values zstd-compressed (when that makes them smaller). Entries
      written either way are readable whatever the current setting.

    A corrupt, truncated or foreign file is a miss: it is logged, counted (``stats().corrupt``)
    and removed, never raised. Every path is derived from the key's hash inside ``root``; a
    symbolic link met there is never followed. Opening only lists the files; records are read
    when needed. Methods block on file I/O: from async code call them in a worker thread. Each
    process enforces ``max_bytes`` over what it knows (its scan plus its own writes and reads);
    :meth:`scan` refreshes that view.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_bytes: int | None = None,
        ttl: float | None = None,
        compress: bool = False,
        compression_level: int = 3,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "disk",
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        self.root = Path(root).expanduser().resolve()
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.compress = compress
        self.compression_level = compression_level
        self.name = name
        self._clock = clock
        self._base = str(self.root)
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._index: OrderedDict[str, _Indexed] = OrderedDict()
        self._total = 0
        self._counts = dict.fromkeys(
            ("hits", "misses", "evictions", "expirations", "invalidations", "rejected", "corrupt"),
            0,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.scan()

    def __repr__(self) -> str:
        return f"<DiskCache {self.root} entries={len(self)} bytes={self.current_bytes}>"

    # -- paths and helpers -------------------------------------------------------------------
    def _paths(self, digest: str) -> tuple[str, str]:
        stem = os.path.join(self._base, digest[:2], digest)
        return stem + _ENTRY, stem + _SIDECAR

    def _make_shard(self, digest: str) -> None:
        shard = os.path.join(self._base, digest[:2])
        if os.path.islink(shard):
            # A link could lead writes out of the root: remove the link itself (never its
            # target) and make a real folder.
            _log.warning("replacing a symbolic link inside the cache", path=shard)
            os.unlink(shard)
        os.makedirs(shard, exist_ok=True)

    @contextmanager
    def _stripe(self, digest: str) -> Iterator[None]:
        # Serialises file operations on one key within this process.
        with self._stripes[int(digest[:4], 16) % _STRIPES]:
            yield

    def _wall(self) -> float:
        if self._clock is SYSTEM_CLOCK:
            return time.time()
        return self._clock.now().timestamp()

    def _expired(self, stored_at: float | None, now: float) -> bool:
        return self.ttl is not None and stored_at is not None and stored_at + self.ttl <= now

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    # -- scanning ----------------------------------------------------------------------------
    def scan(self) -> int:
        """Rebuild the index from the files (other processes' entries included), by listing
        and stat only. Removes stale temporary files and metadata without an entry. Returns
        the number of entries found."""
        sizes: dict[str, list[float]] = {}
        now = time.time()
        leftovers: list[str] = []
        with os.scandir(self._base) as shards:
            for shard in shards:
                if not _SHARD.fullmatch(shard.name) or not shard.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(shard.path) as files:
                    for item in files:
                        self._scan_file(item, sizes, leftovers, now)
        for path in leftovers:
            _unlink(path)
        found = [
            (digest, _Indexed(int(size), accessed))
            for digest, (size, accessed, has_entry) in sizes.items()
            if has_entry
        ]
        for digest, (_size, accessed, has_entry) in sizes.items():
            if not has_entry and now - accessed > 1.0:
                _unlink(self._paths(digest)[1])  # metadata whose entry is gone
        found.sort(key=lambda item: item[1].accessed)
        with self._lock:
            self._index = OrderedDict(found)
            self._total = sum(item.size for _, item in found)
        self._enforce_cap()
        return len(found)

    def _scan_file(
        self,
        item: os.DirEntry[str],
        sizes: dict[str, list[float]],
        leftovers: list[str],
        now: float,
    ) -> None:
        if item.name.endswith(_TEMP):
            try:
                if now - item.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_SECONDS:
                    leftovers.append(item.path)
            except OSError:
                pass
            return
        match = _NAME.fullmatch(item.name)
        if match is None or item.is_symlink():
            return
        try:
            stat = item.stat(follow_symlinks=False)
        except OSError:
            return
        slot = sizes.setdefault(match.group(1), [0, 0.0, False])
        slot[0] += stat.st_size
        if match.group(2) == _ENTRY:
            slot[1], slot[2] = stat.st_mtime, True
        elif not slot[2]:
            slot[1] = stat.st_mtime

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> StoredEntry | None:
        """The entry stored under ``key``, or ``None`` (absent, expired or corrupt: a miss)."""
        digest = key_hash(key)
        with self._stripes[int(digest[:4], 16) % _STRIPES]:
            entry = self._read(digest, key)
        if entry is None:
            self._count("misses")
        return entry

    def get_many(self, keys: Iterable[str]) -> dict[str, StoredEntry]:
        """The entries found among ``keys`` (each read as :meth:`get` would)."""
        found = {}
        for key in keys:
            entry = self.get(key)
            if entry is not None:
                found[key] = entry
        return found

    def _read(self, digest: str, key: str) -> StoredEntry | None:
        entry_path = self._paths(digest)[0]
        try:
            blob = _read_file(entry_path)
        except FileNotFoundError:
            self._forget(digest)
            return None
        except OSError as exc:  # ELOOP: a symbolic link where the entry should be
            self._drop_corrupt(digest, f"unreadable entry file: {exc}")
            return None
        try:
            record, stored = _unpack(blob)
            if record.key != key:
                raise CorruptDataError(f"entry is for another key ({record.key!r})")
            value = decode_value(stored, record)
        except CorruptDataError as exc:
            self._drop_corrupt(digest, str(exc))
            return None
        now = self._wall()
        if self._expired(record.stored_at, now):
            self._remove_files(digest)
            self._forget(digest)
            self._count("expirations")
            return None
        with self._lock:
            self._counts["hits"] += 1
            known = self._index.get(digest)
            if known is None:
                self._index[digest] = known = _Indexed(len(blob), 0.0)
                self._total += len(blob)
            else:
                self._index.move_to_end(digest)
            touch = now - known.accessed > _TOUCH_INTERVAL
            known.accessed = now
            known.key, known.stored_at, known.meta = key, record.stored_at, record.meta
        if touch:
            try:
                os.utime(entry_path, (now, now))
            except OSError:
                pass  # recency is advisory; a read-only cache still serves hits
        return StoredEntry(key, value, record.meta, record.stored_datetime)

    def _describe(self, digest: str) -> _Indexed | None:
        """The index entry with its key, stored time and metadata filled in (read from the
        metadata file, else from the entry's own header); ``None`` when it is gone or corrupt."""
        with self._lock:
            item = self._index.get(digest)
            if item is None or item.key is not None:
                return item
        entry_path, sidecar_path = self._paths(digest)
        record = None
        for path, from_entry in ((sidecar_path, False), (entry_path, True)):
            try:
                data = _read_file(path)
                record = _unpack(data)[0] if from_entry else Record.from_json(data)
                break
            except (OSError, CorruptDataError):
                continue
        if record is None or key_hash(record.key) != digest:
            if os.path.exists(entry_path):
                self._drop_corrupt(digest, "neither the metadata nor the entry is readable")
            else:
                self._forget(digest)
            return None
        with self._lock:
            item = self._index.get(digest)
            if item is not None and item.key is None:
                item.key, item.stored_at, item.meta = record.key, record.stored_at, record.meta
            return item

    def info(self, key: str) -> EntryInfo | None:
        """The description of ``key``'s entry without reading its value, or ``None``."""
        item = self._describe(key_hash(key))
        return None if item is None or item.key != key else self._info(item)

    def _info(self, item: _Indexed) -> EntryInfo:
        assert item.key is not None and item.stored_at is not None and item.meta is not None
        return EntryInfo(
            key=item.key,
            meta=item.meta,
            stored_at=datetime.fromtimestamp(item.stored_at, UTC),
            size=item.size,
            accessed_at=datetime.fromtimestamp(item.accessed, UTC),
            tier=self.name,
        )

    def entries(self) -> list[EntryInfo]:
        """Every indexed entry, least recently used first (expired ones until swept).

        The first listing after opening reads each entry's metadata file once.
        """
        with self._lock:
            digests = list(self._index)
        described = [self._describe(digest) for digest in digests]
        return [self._info(item) for item in described if item is not None]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        item = self._describe(key_hash(key))
        if item is None or item.key != key:
            return False
        return not self._expired(item.stored_at, self._wall())

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    @property
    def current_bytes(self) -> int:
        """Total size of the indexed entries' files."""
        with self._lock:
            return self._total

    # -- writing -----------------------------------------------------------------------------
    def set(
        self,
        key: str,
        value: bytes,
        meta: Mapping[str, Any] | None = None,
        *,
        stored_at: datetime | None = None,
    ) -> bool:
        """Store ``value`` (and JSON-able ``meta``) under ``key``, replacing any previous entry.

        ``stored_at`` (default now) is when the value was first stored anywhere: the ttl runs
        from it, so a copy written later (behind, or promoted from another tier) does not live
        longer. Returns False, dropping any previous entry, when the entry alone exceeds
        ``max_bytes``. Raises ``OSError`` when the files cannot be written (a full disk).
        """
        digest = key_hash(key)
        now = self._wall()
        born = now if stored_at is None else min(now, stored_at.timestamp())
        stored, record = encode_value(
            key, value, meta or {}, born, compress=self.compress, level=self.compression_level
        )
        record_json = record.to_json()
        blob = _pack(record_json, stored)
        size = len(blob) + len(record_json)
        if self.max_bytes is not None and size > self.max_bytes:
            self._count("rejected")
            self.delete(key)
            return False
        entry_path, sidecar_path = self._paths(digest)
        with self._stripe(digest):
            self._make_shard(digest)
            _atomic_write(entry_path, blob)
            _atomic_write(sidecar_path, record_json)
            try:
                os.utime(entry_path, (now, now))  # recency survives restarts via the mtime
            except OSError:
                pass
            with self._lock:
                old = self._index.pop(digest, None)
                self._total += size - (old.size if old is not None else 0)
                self._index[digest] = _Indexed(size, now, key, born, record.meta)
        self._enforce_cap()
        return True

    def _enforce_cap(self) -> None:
        if self.max_bytes is None:
            return
        victims: list[str] = []
        with self._lock:
            while self._total > self.max_bytes and self._index:
                digest, item = self._index.popitem(last=False)
                self._total -= item.size
                victims.append(digest)
            self._counts["evictions"] += len(victims)
        for digest in victims:
            with self._stripe(digest):
                with self._lock:
                    if digest in self._index:
                        continue  # written again meanwhile: that newer entry stays
                self._remove_files(digest)

    def delete(self, key: str) -> bool:
        """Remove ``key``'s entry; True if there was one."""
        digest = key_hash(key)
        with self._stripe(digest):
            existed = os.path.exists(self._paths(digest)[0])
            self._remove_files(digest)
            existed = self._forget(digest) or existed
        if existed:
            self._count("invalidations")
        return existed

    def delete_where(self, predicate: Callable[[EntryInfo], bool]) -> int:
        """Remove every indexed entry for which ``predicate(info)`` is true; returns how many."""
        doomed = [info.key for info in self.entries() if predicate(info)]
        return sum(1 for key in doomed if self.delete(key))

    def clear(self) -> int:
        """Remove every entry (rescanning first, so other processes' entries go too)."""
        self.scan()
        with self._lock:
            digests = list(self._index)
        for digest in digests:
            with self._stripe(digest):
                self._remove_files(digest)
                self._forget(digest)
        self._count("invalidations", len(digests))
        return len(digests)

    def expire(self) -> int:
        """Remove every expired entry now (expiry is otherwise checked on read)."""
        if self.ttl is None:
            return 0
        now = self._wall()
        doomed = [
            info.key for info in self.entries() if self._expired(info.stored_at.timestamp(), now)
        ]
        removed = 0
        for key in doomed:
            digest = key_hash(key)
            with self._stripe(digest):
                self._remove_files(digest)
                removed += self._forget(digest)
        self._count("expirations", removed)
        return removed

    # -- housekeeping ------------------------------------------------------------------------
    def _forget(self, digest: str) -> bool:
        with self._lock:
            item = self._index.pop(digest, None)
            if item is not None:
                self._total -= item.size
            return item is not None

    def _remove_files(self, digest: str) -> None:
        entry_path, sidecar_path = self._paths(digest)
        _unlink(entry_path)
        _unlink(sidecar_path)

    def _drop_corrupt(self, digest: str, reason: str) -> None:
        _log.warning("corrupt cache entry removed", tier=self.name, entry=digest, reason=reason)
        self._count("corrupt")
        self._remove_files(digest)
        self._forget(digest)

    def stats(self) -> CacheStats:
        """A snapshot of this process's counters and the indexed size."""
        with self._lock:
            counts = dict(self._counts)
            return CacheStats(
                hits=counts["hits"],
                misses=counts["misses"],
                evictions=counts["evictions"],
                expirations=counts["expirations"],
                invalidations=counts["invalidations"],
                loads=0,
                rejected=counts["rejected"],
                entries=len(self._index),
                bytes=self._total,
                corrupt=counts["corrupt"],
            )


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        _log.warning("cannot remove cache file", path=path, error=str(exc))


def _atomic_write(path: str, data: bytes) -> None:
    # No fsync: a cache may lose a write in a power cut, but the checksum turns any torn file
    # into a miss, and readers never see a partial file because of the rename.
    temp = f"{path}.{secrets.token_hex(6)}{_TEMP}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        _unlink(temp)
        raise
