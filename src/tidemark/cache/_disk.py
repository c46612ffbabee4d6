"""A persistent key → bytes cache: one file per entry under a root folder, LRU by total size.

Layout under ``root``: ``<h[:2]>/<h>.json`` is the entry's record (key, codec, sizes, checksum,
stored time, the caller's metadata) and ``<h>.<t>.data`` its value, where ``h`` is the xxh3-128
hash of the key and ``t`` a token unique to the write. Files are written to a temporary
name and renamed into place, value first, record last: the record is the commit. Because a new
value gets a new data file name, a reader holding the previous record still finds the previous
value, so concurrent readers in other processes never see a torn entry.
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

_SHARD = re.compile(r"^[0-9a-f]{2}$")
_RECORD_NAME = re.compile(r"^([0-9a-f]{32})\.json$")
_DATA_NAME = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{16})\.data$")
_TEMP_SUFFIX = ".tmp"
#: Temporary files older than this are leftovers of a crashed writer and are removed by scans.
_STALE_TEMP_SECONDS = 3600.0
_STRIPES = 64
#: How often a read follows a record replaced under it before it gives up (a miss).
_READ_ATTEMPTS = 5


def key_hash(key: str) -> str:
    """The file stem of ``key``: its xxh3-128 hash (32 hex digits)."""
    return content_hash(key)


@dataclass(slots=True)
class _Indexed:
    key: str
    size: int
    stored_at: float
    accessed: float
    meta: Mapping[str, Any]


class DiskCache:
    """Persistent key → bytes cache in ``root``; thread-safe, and safe to share between processes.

    * ``max_bytes``: cap on the total size of the files; the least recently used entries (by
      last read or write, kept in the record's mtime across restarts) are removed first. A
      value that cannot fit on its own is refused (``set`` returns False).
    * ``ttl`` seconds after the write an entry expires (wall time from ``clock``, so it holds
      across restarts).
    * ``compress``: store values zstd-compressed (when that makes them smaller). Entries
      written either way are readable whatever the current setting.

    A corrupt, truncated or foreign file is a miss: it is logged, counted (``stats().corrupt``)
    and removed, never raised. Every path is derived from hashes inside ``root``; a record that
    names any other file is corrupt. Methods block on file I/O: from async code call them in a
    worker thread. Each process enforces ``max_bytes`` over what it knows (the scan made when it
    opened plus its own writes); :meth:`scan` refreshes that view.
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

    # -- paths -------------------------------------------------------------------------------
    def _shard(self, digest: str, *, create: bool = False) -> Path:
        shard = self.root / digest[:2]
        if shard.is_symlink():
            # A link could lead reads and writes out of the root. Readers refuse it; a writer
            # removes the link itself (never its target) and makes a real folder.
            if not create:
                raise CorruptDataError(f"{shard} is a symbolic link; cache paths stay in the root")
            _log.warning("replacing a symbolic link inside the cache", path=str(shard))
            shard.unlink()
        if create:
            shard.mkdir(exist_ok=True)
        return shard

    def _record_path(self, digest: str, *, create: bool = False) -> Path:
        return self._shard(digest, create=create) / f"{digest}.json"

    @contextmanager
    def _stripe(self, digest: str) -> Iterator[None]:
        # Serialises file operations on one key within this process.
        with self._stripes[int(digest[:4], 16) % _STRIPES]:
            yield

    def _wall(self) -> float:
        return self._clock.now().timestamp()

    def _expired(self, stored_at: float, now: float) -> bool:
        return self.ttl is not None and stored_at + self.ttl <= now

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    # -- scanning ----------------------------------------------------------------------------
    def scan(self) -> int:
        """Rebuild the index from the files (entries written by other processes included).

        Removes unreadable records, data files no record names, and stale temporary files.
        Returns the number of entries found.
        """
        found: list[tuple[str, _Indexed]] = []
        now = time.time()
        for shard in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not _SHARD.fullmatch(shard.name) or not shard.is_dir() or shard.is_symlink():
                continue
            names = {p.name: p for p in shard.iterdir()}
            referenced: set[str] = set()
            for name, path in names.items():
                match = _RECORD_NAME.fullmatch(name)
                if match is None:
                    continue
                digest = match.group(1)
                try:
                    raw = path.read_bytes()
                    accessed = path.stat().st_mtime
                    record = Record.from_json(raw)
                    data_name = self._data_name(digest, record)
                    data_size = (shard / data_name).stat().st_size
                except FileNotFoundError:
                    continue  # removed meanwhile, or its value is missing: handled on read
                except (OSError, CorruptDataError) as exc:
                    self._drop_corrupt(digest, str(exc))
                    continue
                referenced.add(data_name)
                found.append(
                    (
                        digest,
                        _Indexed(
                            record.key,
                            len(raw) + data_size,
                            record.stored_at,
                            accessed,
                            record.meta,
                        ),
                    )
                )
            for name, path in names.items():
                stale_temp = name.endswith(_TEMP_SUFFIX) and _age(path, now) > _STALE_TEMP_SECONDS
                orphan = _DATA_NAME.fullmatch(name) is not None and name not in referenced
                if stale_temp or (orphan and _age(path, now) > 1.0):
                    _unlink(path)
        found.sort(key=lambda item: item[1].accessed)
        with self._lock:
            self._index = OrderedDict(found)
            self._total = sum(item.size for _, item in found)
        self._enforce_cap()
        return len(found)

    def _data_name(self, digest: str, record: Record) -> str:
        name = record.extra.get("data")
        if not isinstance(name, str):
            raise CorruptDataError("record names no data file")
        match = _DATA_NAME.fullmatch(name)
        if match is None or match.group(1) != digest:
            raise CorruptDataError(f"record names a file outside its entry: {name!r}")
        return name

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> StoredEntry | None:
        """The entry stored under ``key``, or ``None`` (absent, expired or corrupt: a miss)."""
        digest = key_hash(key)
        with self._stripe(digest):
            entry = self._read(digest, key)
        self._count("hits" if entry is not None else "misses")
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
        try:
            record_path = self._record_path(digest)
        except CorruptDataError as exc:
            _log.warning("refusing cache path", path=str(self.root / digest[:2]), reason=str(exc))
            return None
        previous_raw: bytes | None = None
        for _attempt in range(_READ_ATTEMPTS):
            try:
                raw = record_path.read_bytes()
            except FileNotFoundError:
                self._forget(digest)
                return None
            except OSError as exc:
                _log.warning("cannot read cache record", path=str(record_path), error=str(exc))
                return None
            try:
                record = Record.from_json(raw)
                data_path = record_path.with_name(self._data_name(digest, record))
                if record.key != key:
                    raise CorruptDataError(f"record is for another key ({record.key!r})")
            except CorruptDataError as exc:
                self._drop_corrupt(digest, str(exc))
                return None
            now = self._wall()
            if self._expired(record.stored_at, now):
                self._remove_files(digest, record_path)
                self._forget(digest)
                self._count("expirations")
                return None
            try:
                stored = data_path.read_bytes()
            except FileNotFoundError:
                if raw != previous_raw:
                    previous_raw = raw
                    continue  # replaced by a concurrent writer: read the new record
                self._drop_corrupt(digest, "the record's data file is missing")
                return None
            try:
                value = decode_value(stored, record)
            except CorruptDataError as exc:
                self._drop_corrupt(digest, str(exc))
                return None
            try:
                os.utime(record_path, (now, now))
            except OSError:
                pass  # recency is advisory; a read-only cache still serves hits
            with self._lock:
                known = self._index.get(digest)
                if known is None:
                    self._index[digest] = _Indexed(
                        key, len(raw) + len(stored), record.stored_at, now, record.meta
                    )
                    self._total += len(raw) + len(stored)
                else:
                    known.accessed = now
                    self._index.move_to_end(digest)
            return StoredEntry(key, value, record.meta, record.stored_datetime)
        return None

    def info(self, key: str) -> EntryInfo | None:
        """The indexed description of ``key`` (no file read, no recency change), or ``None``."""
        with self._lock:
            item = self._index.get(key_hash(key))
            return None if item is None else self._info(item)

    def _info(self, item: _Indexed) -> EntryInfo:
        return EntryInfo(
            key=item.key,
            meta=item.meta,
            stored_at=datetime.fromtimestamp(item.stored_at, UTC),
            size=item.size,
            accessed_at=datetime.fromtimestamp(item.accessed, UTC),
            tier=self.name,
        )

    def entries(self) -> list[EntryInfo]:
        """Every indexed entry, least recently used first (expired ones until swept)."""
        with self._lock:
            return [self._info(item) for item in self._index.values()]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            item = self._index.get(key_hash(key))
            return item is not None and not self._expired(item.stored_at, self._wall())

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
        # A fresh name per write: no two records ever share a data file, so removing the
        # previous value can never take away the one a newer record names.
        data_name = f"{digest}.{secrets.token_hex(8)}.data"
        record = Record(
            record.key,
            record.codec,
            record.size,
            record.stored_bytes,
            record.checksum,
            record.stored_at,
            record.meta,
            {"data": data_name},
        )
        record_bytes = record.to_json()
        size = len(stored) + len(record_bytes)
        if self.max_bytes is not None and size > self.max_bytes:
            self._count("rejected")
            self.delete(key)
            return False
        with self._stripe(digest):
            record_path = self._record_path(digest, create=True)
            previous = self._previous_data_name(digest, record_path)
            _atomic_write(record_path.with_name(data_name), stored)
            _atomic_write(record_path, record_bytes)
            try:
                os.utime(record_path, (now, now))  # recency survives restarts via the mtime
            except OSError:
                pass
            if previous is not None and previous != data_name:
                _unlink(record_path.with_name(previous))
            with self._lock:
                old = self._index.pop(digest, None)
                self._total += size - (old.size if old is not None else 0)
                self._index[digest] = _Indexed(key, size, born, now, record.meta)
        self._enforce_cap()
        return True

    def _previous_data_name(self, digest: str, record_path: Path) -> str | None:
        try:
            return self._data_name(digest, Record.from_json(record_path.read_bytes()))
        except (OSError, CorruptDataError):
            return None

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
                self._remove_files(digest, self._record_path(digest))

    def delete(self, key: str) -> bool:
        """Remove ``key``'s entry; True if there was one."""
        digest = key_hash(key)
        with self._stripe(digest):
            try:
                record_path = self._record_path(digest)
            except CorruptDataError:
                return False
            existed = record_path.exists()
            self._remove_files(digest, record_path)
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
        return self.delete_where(lambda _info: True)

    def expire(self) -> int:
        """Remove every expired entry now (expiry is otherwise checked on read)."""
        if self.ttl is None:
            return 0
        now = self._wall()
        with self._lock:
            doomed = [i.key for i in self._index.values() if self._expired(i.stored_at, now)]
        removed = 0
        for key in doomed:
            digest = key_hash(key)
            with self._stripe(digest):
                self._remove_files(digest, self._record_path(digest))
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

    def _remove_files(self, digest: str, record_path: Path) -> None:
        # The record goes first: without it the entry is a plain miss for every reader.
        data = self._previous_data_name(digest, record_path)
        _unlink(record_path)
        if data is not None:
            _unlink(record_path.with_name(data))

    def _drop_corrupt(self, digest: str, reason: str) -> None:
        _log.warning("corrupt cache entry removed", tier=self.name, entry=digest, reason=reason)
        self._count("corrupt")
        try:
            shard = self._shard(digest)
        except CorruptDataError:
            return
        for path in list(shard.glob(f"{digest}.*")):
            if _RECORD_NAME.fullmatch(path.name) or _DATA_NAME.fullmatch(path.name):
                _unlink(path)
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


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        _log.warning("cannot remove cache file", path=str(path), error=str(exc))


def _atomic_write(path: Path, data: bytes) -> None:
    # No fsync: a cache may lose a write in a power cut, but the checksum turns any torn file
    # into a miss, and readers never see a partial file because of the rename.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        _unlink(temp)
        raise
