"""The PostgreSQL engine: a psycopg connection pool, retried writes and the safe-watermark floors."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tidemark.core import ConflictError, SourceUnavailableError, get_logger

from ._engine import RetryTransaction, Row, Transaction
from ._migrations import POSTGRES_MIGRATIONS

T = TypeVar("T")
log = get_logger("store")

#: Advisory-lock keys of in-flight writers: ``tag * 2**48 + floor`` (see PostgresEngine).
_LOCK_SHIFT = 2**48


class _PostgresTransaction:
    engine_name = "postgresql"
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"

    def __init__(self, conn: Any, lock_tag: int = 0) -> None:
        self._conn = conn
        self._lock_tag = lock_tag
        self._announced = False

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._conn.execute(self._sql(sql), params, prepare=True).rowcount)

    def insert_id(self, sql: str, params: Sequence[Any] = (), key: str = "doc_pk") -> int:
        row = self._conn.execute(
            self._sql(sql) + f" RETURNING {key}", params, prepare=True
        ).fetchone()
        return int(row[0])

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._sql(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(self._sql(sql), params, prepare=True).fetchall()
        return rows

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._conn.execute(self._sql(sql), params, prepare=True).fetchone()
        return row

    def allocate_version(self) -> int:
        if not self._announced and self._lock_tag:
            # Before the first allocation, publish a floor below every version this transaction
            # can get: a shared advisory lock keyed by (tag, sequence value + 1), held until
            # commit or rollback and visible to other sessions at once. Readers never report a
            # newest change version at or above the floor of an in-flight writer.
            self._conn.execute(
                "SELECT pg_advisory_xact_lock_shared(%s * %s + (SELECT CASE WHEN is_called "
                "THEN last_value + 1 ELSE last_value END FROM change_version_seq))",
                (self._lock_tag, _LOCK_SHIFT),
                prepare=True,
            )
            self._announced = True
        row = self._conn.execute("SELECT nextval('change_version_seq')", prepare=True).fetchone()
        return int(row[0])

    def json_value(self, column: str, path: Sequence[str]) -> str:
        return f"({column}::jsonb #> ?::text[])"

    def json_param(self, value: Any) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def json_path_param(self, path: Sequence[str]) -> list[str]:
        return list(path)


def _run_then(
    write_sync: Callable[[Callable[[Transaction], T]], T],
    fn: Callable[[Transaction], T],
    on_done: Callable[[], None] | None,
) -> T:
    try:
        return write_sync(fn)
    finally:
        if on_done is not None:
            on_done()


_RETRYABLE_SQLSTATES = {"40001", "40P01", "23505"}


class PostgresEngine:
    """PostgreSQL through a psycopg connection pool; transactions run on worker threads.

    Serialization failures, deadlocks and unique-key races between concurrent writers are retried
    (the whole transaction function runs again), so callers see either success or a real error.
    """

    name = "postgresql"

    def __init__(self, dsn: str, *, pool_size: int = 8, retries: int = 8) -> None:
        self.dsn = dsn
        self._retries = retries
        self._pool_size = pool_size
        self._pool: Any = None
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="tidemark-pg")
        self.lock_tag = 0

    def open(self) -> None:
        """Open the pool (blocking); raises :class:`SourceUnavailableError` when unreachable."""
        import psycopg
        from psycopg_pool import ConnectionPool

        # One direct attempt first: it fails at once with the server's reason (refused, no such
        # database, bad password) where the pool would retry quietly until its timeout.
        try:
            psycopg.connect(self.dsn, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise SourceUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
        pool = ConnectionPool(
            self.dsn, min_size=1, max_size=self._pool_size, open=False, kwargs={"autocommit": False}
        )
        try:
            pool.open(wait=True, timeout=10)
        except (psycopg.Error, Exception) as exc:
            pool.close()
            raise SourceUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
        self._pool = pool

    def migrate(self) -> None:
        """Create or upgrade the schema; safe when several processes start at once."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7283514)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            current = conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            for version, statements in POSTGRES_MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("migration applied", engine="postgresql", version=version)
            tag = conn.execute("SELECT value FROM store_settings WHERE key = 'lock_tag'").fetchone()
            self.lock_tag = int(tag[0])

    def newest_safe_version_sync(self) -> int:
        """The largest change version V such that every version <= V is committed or rolled back.

        Read in two steps, in this order, each with a fresh view: the sequence's last value L,
        then the floors of in-flight writers (their advisory locks). A writer announces its floor
        before it allocates, so any allocation counted in L by a transaction still running is at
        or above a floor seen in the second step; the answer is min(L, smallest floor - 1).
        """
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                row = conn.execute(
                    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_version_seq"
                ).fetchone()
                newest = int(row[0])
                row = conn.execute(
                    "SELECT min(((l.classid::bigint & 65535) << 32) | l.objid::bigint) FROM pg_locks l "
                    "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND (l.classid::bigint >> 16) = %s "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    (self.lock_tag,),
                ).fetchone()
            finally:
                conn.autocommit = False
        floor = row[0] if row else None
        if floor is not None:
            newest = min(newest, int(floor) - 1)
        return newest

    async def newest_safe_version(self) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.newest_safe_version_sync)

    def write_sync(self, fn: Callable[[Transaction], T]) -> T:
        import psycopg

        attempt = 0
        while True:
            attempt += 1
            try:
                with self._pool.connection() as conn, conn.transaction():
                    return fn(_PostgresTransaction(conn, self.lock_tag))
            except RetryTransaction as retry:
                if attempt < self._retries:
                    time.sleep(random.uniform(0, 0.002 * attempt))
                    continue
                raise retry.error from None
            except psycopg.Error as exc:
                state = exc.sqlstate
                if state in _RETRYABLE_SQLSTATES and attempt < self._retries:
                    # Another writer won a race (same natural key, lock order): run again on
                    # fresh data after a short randomised pause.
                    time.sleep(random.uniform(0, 0.002 * attempt))
                    continue
                if state == "23505":
                    raise ConflictError(
                        f"concurrent writes conflicted on a unique key: {exc}"
                    ) from exc
                if isinstance(exc, psycopg.OperationalError):
                    raise SourceUnavailableError(f"PostgreSQL error: {exc}") from exc
                raise

    def _read_sync(self, fn: Callable[[Transaction], T]) -> T:
        import psycopg

        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return fn(_PostgresTransaction(conn))
        except psycopg.OperationalError as exc:
            raise SourceUnavailableError(f"PostgreSQL error: {exc}") from exc

    async def write(
        self, fn: Callable[[Transaction], T], on_done: Callable[[], None] | None = None
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _run_then, self.write_sync, fn, on_done)

    async def read(self, fn: Callable[[Transaction], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read_sync, fn)

    def _read_point_sync(self, fn: Callable[[Transaction], T]) -> T:
        import psycopg

        # One statement needs no transaction: in autocommit it is one round trip instead of
        # four (BEGIN, SET TRANSACTION, the statement, COMMIT).
        try:
            with self._pool.connection() as conn:
                conn.autocommit = True
                try:
                    return fn(_PostgresTransaction(conn))
                finally:
                    conn.autocommit = False
        except psycopg.OperationalError as exc:
            raise SourceUnavailableError(f"PostgreSQL error: {exc}") from exc

    async def read_point(self, fn: Callable[[Transaction], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read_point_sync, fn)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
