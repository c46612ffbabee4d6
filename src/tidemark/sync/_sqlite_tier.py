"""The local SQLite tier: one row per entity key, each write one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson

from tidemark.core import (
    ConfigurationError,
    CorruptDataError,
    Counters,
    SourceUnavailableError,
    canonical_bytes,
    content_hash,
    get_logger,
)

from ._blob import Blob, is_empty, validate_blob
from ._ids import validate_key
from ._metadata import EntityCounts, KeyMetadata, TierMetadata
from ._stamps import HybridClock
from ._tiers import TIER_COUNTERS, precondition_holds
from ._worker import Worker

_log = get_logger("sync")
P = ParamSpec("P")
R = TypeVar("R")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_blob (
    key        TEXT PRIMARY KEY,
    body       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_meta (
    key        TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    updated_at TEXT,
    entities   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_quarantine (
    id             INTEGER PRIMARY KEY,
    key            TEXT NOT NULL,
    body           BLOB,
    reason         TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);
"""


def _entities_json(meta: KeyMetadata) -> bytes:
    return orjson.dumps({name: [c.count, c.deleted_count] for name, c in meta.entities.items()})


def _parse_counts(entities: bytes) -> dict[str, EntityCounts]:
    return {name: EntityCounts(c[0], c[1]) for name, c in orjson.loads(entities).items()}


class SqliteTier:
    """Blobs in a local SQLite file (WAL mode): one row per entity key, atomic per key.

    Each key has a row of canonical bytes (``sync_blob``) and a row of metadata (``sync_meta``:
    hash, newest stamp, counts), written in one transaction, so they never disagree; reading
    the metadata of every key scans only the small rows. Metadata is cached in memory and reloaded
    only when another connection has committed (``PRAGMA data_version``), so several processes
    may share the file. A row whose bytes no longer match their hash is moved to
    ``sync_quarantine`` (kept for inspection) and the key reads as absent, so a sync restores it
    from the other tiers. All SQLite work runs on one worker thread.

    ``read_only`` opens an existing file for reading only (nothing is created, converted or
    quarantined; a corrupt row reads as absent and is named in a warning).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "local",
        busy_timeout: float = 5.0,
        read_only: bool = False,
    ) -> None:
        self._path = Path(path)
        self._read_only = read_only
        self._name = name
        self._busy_timeout = busy_timeout
        self._counters = Counters(*TIER_COUNTERS)
        self._worker = Worker(f"tidemark-sync-{name}")
        self._conn: sqlite3.Connection | None = None
        self._cache: dict[str, tuple[str, str | None, bytes]] | None = None
        self._snapshot: TierMetadata | None = None
        self._data_version: int | None = None
        self._clock = HybridClock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def load(self, key: str) -> Blob | None:
        validate_key(key)
        return await self._call(self._load, key)

    async def store(self, key: str, blob: Blob, *, if_hash: str | None = None) -> bool:
        return (await self.store_many([(key, blob, if_hash)]))[0]

    async def clear(self, key: str, *, if_hash: str | None = None) -> bool:
        validate_key(key)
        return (await self._call(self._write_many, [(key, None, if_hash)]))[0]

    async def load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        for key in keys:
            validate_key(key)
        return await self._call(self._load_many, keys)

    async def store_many(self, writes: Sequence[tuple[str, Blob, str | None]]) -> list[bool]:
        """Several conditional writes in one transaction (see :meth:`BlobTier.store_many`)."""
        checked = [
            (validate_key(key), validate_blob(blob), if_hash) for key, blob, if_hash in writes
        ]
        return await self._call(self._write_many, checked)

    async def metadata(self) -> TierMetadata:
        return await self._call(self._metadata)

    async def quarantined(self) -> list[dict[str, Any]]:
        """Rows set aside as corrupt: ``key``, ``reason``, ``quarantined_at`` (newest last)."""
        return await self._call(self._quarantined)

    async def close(self) -> None:
        await self._worker.close(self._close)

    # -- worker thread ------------------------------------------------------------------------

    async def _call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await self._worker.run(fn, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise SourceUnavailableError(f"{self._name}: SQLite {self._path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise CorruptDataError(f"{self._name}: {self._path} is unusable: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._read_only:
            conn = sqlite3.connect(
                f"{self._path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=self._busy_timeout,
                isolation_level=None,
            )
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                conn.close()
                raise ConfigurationError(
                    f"{self._path}: not a sync tier file (schema version {version})"
                )
            self._conn = conn
            return conn
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ConfigurationError(
                    f"{self._path}: sync schema version {version} is not {SCHEMA_VERSION}"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if version == 0:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _current_hash(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT hash FROM sync_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _load(self, key: str) -> Blob | None:
        conn = self._connection()
        row = conn.execute(
            "SELECT b.body, m.hash FROM sync_blob b LEFT JOIN sync_meta m ON m.key = b.key"
            " WHERE b.key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        body, digest = bytes(row[0]), row[1]
        try:
            if content_hash(body) != digest:
                raise CorruptDataError("the stored bytes do not match their hash")
            # Bytes matching their hash are the validated blob this tier wrote.
            blob: Blob = orjson.loads(body)
        except (CorruptDataError, orjson.JSONDecodeError) as exc:
            self._quarantine(conn, key, body, str(exc))
            return None
        self._counters.increment("blobs_read")
        return blob

    def _quarantine(self, conn: sqlite3.Connection, key: str, body: bytes, reason: str) -> None:
        if self._read_only:
            _log.warning(
                f"corrupt blob {key} in {self._path} skipped (read-only: left in place): {reason}",
                tier=self._name,
                key=key,
            )
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO sync_quarantine (key, body, reason, quarantined_at) VALUES (?,?,?,?)",
                (key, body, reason, self._clock.now()),
            )
            conn.execute("DELETE FROM sync_blob WHERE key = ?", (key,))
            conn.execute("DELETE FROM sync_meta WHERE key = ?", (key,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self._cache is not None:
            self._cache.pop(key, None)
            self._snapshot = None
        self._counters.increment("corrupt_quarantined")
        _log.warning(
            f"corrupt blob {key} in {self._path} moved to its sync_quarantine table: {reason}",
            tier=self._name,
            key=key,
            reason=reason,
        )

    def _write_many(self, writes: Sequence[tuple[str, Blob | None, str | None]]) -> list[bool]:
        """Apply ``(key, blob or None to clear, if_hash)`` writes in one transaction, each one
        conditional on its own precondition."""
        if self._read_only:
            raise ConfigurationError(f"{self._name}: {self._path} was opened read-only")
        prepared: list[tuple[str, bytes, str, KeyMetadata, bytes] | tuple[str, None]] = []
        for key, blob, _ in writes:
            if blob is None or is_empty(blob):
                prepared.append((key, None))
                continue
            body = canonical_bytes(blob)
            digest = content_hash(body)
            meta = KeyMetadata.of(blob, digest)
            prepared.append((key, body, digest, meta, _entities_json(meta)))
        conn = self._connection()
        outcomes: list[bool] = []
        changes: list[tuple[str, tuple[str, str | None, bytes] | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item, (_, _, if_hash) in zip(prepared, writes, strict=True):
                key = item[0]
                current = self._current_hash(conn, key)
                if not precondition_holds(if_hash, current):
                    outcomes.append(False)
                    continue
                outcomes.append(True)
                if len(item) == 2:
                    if current is not None:
                        conn.execute("DELETE FROM sync_blob WHERE key = ?", (key,))
                        conn.execute("DELETE FROM sync_meta WHERE key = ?", (key,))
                        changes.append((key, None))
                    continue
                _, body, digest, meta, counts = item
                if current == digest:
                    continue
                conn.execute(
                    "INSERT INTO sync_blob (key, body) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET body = excluded.body",
                    (key, body),
                )
                conn.execute(
                    "INSERT INTO sync_meta (key, hash, updated_at, entities) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET hash = excluded.hash,"
                    " updated_at = excluded.updated_at, entities = excluded.entities",
                    (key, digest, meta.updated_at, counts),
                )
                changes.append((key, (digest, meta.updated_at, counts)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for key, row in changes:
            if self._cache is not None:
                if row is None:
                    self._cache.pop(key, None)
                else:
                    self._cache[key] = row
            self._counters.increment("blobs_cleared" if row is None else "blobs_written")
        if changes:
            self._snapshot = None
        self._counters.increment("preconditions_failed", outcomes.count(False))
        return outcomes

    def _load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        return [self._load(key) for key in keys]

    def _metadata(self) -> TierMetadata:
        conn = self._connection()
        self._counters.increment("metadata_reads")
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        if self._cache is None or data_version != self._data_version:
            rows = conn.execute("SELECT key, hash, updated_at, entities FROM sync_meta")
            self._cache = {row[0]: (row[1], row[2], row[3]) for row in rows}
            self._data_version = data_version
            self._snapshot = None
        if self._snapshot is None:
            self._snapshot = TierMetadata.from_rows(self._cache, _parse_counts)
        return self._snapshot

    def _quarantined(self) -> list[dict[str, Any]]:
        rows = self._connection().execute(
            "SELECT key, reason, quarantined_at FROM sync_quarantine ORDER BY id"
        )
        return [{"key": r[0], "reason": r[1], "quarantined_at": r[2]} for r in rows]

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
