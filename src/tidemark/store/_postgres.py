"""The PostgreSQL engine: a psycopg connection pool, retried writes and the safe-watermark floors."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tidemark.core import ConflictError, SourceUnavailableError, get_logger

from ._engine import BatchedWrite, RetryTransaction, Row, Transaction
from ._migrations import POSTGRES_MIGRATIONS
from ._types import stamp_moment

T = TypeVar("T")
log = get_logger("store")

#: Advisory-lock keys of in-flight writers: ``tag * 2**48 + floor`` (see PostgresEngine).
_LOCK_SHIFT = 2**48
_STAMP_STEP = timedelta(milliseconds=1)
#: First key of the advisory locks of :meth:`_PostgresTransaction.exclusive`.
_EXCLUSIVE_KEY = -0x5EA1

# A writer's stamp floor: the database clock in epoch milliseconds, published as a shared
# two-key advisory lock (objsubid 2, apart from the one-key version floors) whose first key
# carries the store's tag and the high 16 bits of the milliseconds, the second key the low 32
# bits. The stamp itself is read from the clock after the lock is visible (outer query), so a
# horizon reader that does not see the lock yet is earlier than the stamp.
_ANNOUNCE_STAMP = """
SELECT s.floor_ms, s.locked, clock_timestamp() FROM (
    SELECT a.floor_ms, pg_advisory_xact_lock_shared(
        (%s * 65536 + (a.floor_ms >> 32))::int,
        ((a.floor_ms & 4294967295) - CASE WHEN (a.floor_ms & 4294967295) >= 2147483648
                                          THEN 4294967296 ELSE 0 END)::int
    ) AS locked
    FROM (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS floor_ms) a
    OFFSET 0
) s
"""
_STAMP_FLOORS = (
    "SELECT min(((l.classid::bigint & 65535) << 32) | l.objid::bigint) FROM pg_locks l "
    "WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND (l.classid::bigint >> 16) = %s "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _epoch_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


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

    def search(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # Not prepared: after five executions PostgreSQL may keep a prepared statement's
        # generic plan, which cannot tell a key matching ten rows from one matching a million.
        rows: list[Row] = self._conn.execute(self._sql(sql), params, prepare=False).fetchall()
        return rows

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

    def announce_stamp(self) -> datetime:
        row = self._conn.execute(_ANNOUNCE_STAMP, (self._lock_tag,), prepare=True).fetchone()
        return max(_epoch_ms(int(row[0])), stamp_moment(row[2]))

    def json_value(self, column: str, path: Sequence[str]) -> str:
        return f"({column}::jsonb #> ?::text[])"

    def json_param(self, value: Any) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def json_path_param(self, path: Sequence[str]) -> list[str]:
        return list(path)

    def exclusive(self, name: str) -> None:
        # A two-key advisory lock whose first key is negative: as an unsigned classid it is
        # above every lock tag's range, so the floors above never count it.
        self._conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_EXCLUSIVE_KEY, name), prepare=True
        )


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
#: Server states that end a session (administrator shutdown or termination, crash shutdown).
_SESSION_ENDED_SQLSTATES = {"57P01", "57P02", "57P03"}


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection itself is gone (server restarted, backend
    terminated, network cut) rather than a statement failing on a live connection."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if not isinstance(exc, psycopg.OperationalError) or isinstance(exc, PoolTimeout):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SESSION_ENDED_SQLSTATES


class PostgresEngine:
    """PostgreSQL through a psycopg connection pool; transactions run on worker threads.

    Serialization failures, deadlocks and unique-key races between concurrent writers are retried
    (the whole transaction function runs again), so callers see either success or a real error.

    A lost connection (PostgreSQL restarted, backends terminated) is detected when it is used:
    the pool then tests its idle connections and replaces the dead ones at once, and the
    transaction runs once more on a fresh connection — a read always, a write only when it
    failed before its commit was sent (one lost during the commit may have been applied, so it
    is reported as 503 instead). So a restart costs at most one failed request, not one per
    pooled connection.
    """

    name = "postgresql"
    shared_clock = True

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
            applied = {
                int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()
            }
            for version, statements in POSTGRES_MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("migration applied", engine="postgresql", version=version)
            tag = conn.execute("SELECT value FROM store_settings WHERE key = 'lock_tag'").fetchone()
            self.lock_tag = int(tag[0])

    def _replace_lost_connections(self, exc: BaseException) -> None:
        log.warning(
            "PostgreSQL connection lost; replacing the pool's dead connections", error=str(exc)
        )
        try:
            self._pool.check()
        except Exception as check_error:  # the server may still be down: the retry will say so
            log.warning("PostgreSQL pool check failed", error=str(check_error))

    def _once_more_if_lost(self, read: Callable[[], T]) -> T:
        """Run a read-only ``read``; after a lost connection, replace dead connections and run
        it once more. Raises :class:`SourceUnavailableError` when it still fails."""
        import psycopg

        try:
            return read()
        except psycopg.OperationalError as exc:
            if not _lost_connection(exc):
                raise SourceUnavailableError(f"PostgreSQL error: {exc}") from exc
            self._replace_lost_connections(exc)
        try:
            return read()
        except psycopg.OperationalError as exc:
            raise SourceUnavailableError(f"PostgreSQL error: {exc}") from exc

    def newest_safe_version_sync(self) -> int:
        """The largest change version V such that every version <= V is committed or rolled back.

        Read in two steps, in this order, each with a fresh view: the sequence's last value L,
        then the floors of in-flight writers (their advisory locks). A writer announces its floor
        before it allocates, so any allocation counted in L by a transaction still running is at
        or above a floor seen in the second step; the answer is min(L, smallest floor - 1).
        """
        return self._once_more_if_lost(self._newest_safe_version)

    def _newest_safe_version(self) -> int:
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

    def stamp_horizon_sync(self) -> datetime:
        """The newest time every writer stamped at or before has ended (see
        :meth:`Store.timestamp_horizon`).

        Fresh reads, in this order: the database clock T, the clock again until it has passed
        the millisecond of T (at most a millisecond's wait), then the stamp floors of writers in
        flight. A writer whose floor is not seen yet reads its stamp after that, so it is stamped
        after T's millisecond; a writer that committed before is stamped at or before it. The
        answer is T to the millisecond, kept below the smallest floor.
        """
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                now = stamp_moment(conn.execute("SELECT clock_timestamp()").fetchone()[0])
                boundary = now + _STAMP_STEP
                while True:
                    later = conn.execute("SELECT clock_timestamp()").fetchone()[0]
                    if later >= boundary:
                        break
                    time.sleep((boundary - later).total_seconds())
                row = conn.execute(_STAMP_FLOORS, (self.lock_tag,)).fetchone()
            finally:
                conn.autocommit = False
        horizon = now
        if row and row[0] is not None:
            horizon = min(horizon, _epoch_ms(int(row[0])) - _STAMP_STEP)
        return horizon

    async def stamp_horizon(self) -> datetime:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.stamp_horizon_sync)

    def write_sync(self, fn: Callable[[Transaction], T]) -> T:
        import psycopg

        attempt = 0
        reconnected = False
        while True:
            attempt += 1
            committing = False
            try:
                with self._pool.connection() as conn, conn.transaction():
                    result = fn(_PostgresTransaction(conn, self.lock_tag))
                    committing = True  # leaving the block commits
                return result
            except RetryTransaction as retry:
                if attempt < self._retries:
                    time.sleep(random.uniform(0, 0.002 * attempt))
                    continue
                raise retry.error from None
            except psycopg.Error as exc:
                if _lost_connection(exc):
                    self._replace_lost_connections(exc)
                    if committing:
                        raise SourceUnavailableError(
                            "The connection to PostgreSQL was lost while the write was being "
                            "committed; it may or may not have been applied. Read it back "
                            f"before retrying. ({exc})"
                        ) from exc
                    if not reconnected:
                        reconnected = True  # nothing was committed: run it on a fresh connection
                        continue
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
        def read() -> T:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return fn(_PostgresTransaction(conn))

        return self._once_more_if_lost(read)

    async def write(
        self,
        fn: Callable[[Transaction], T],
        on_done: Callable[[], None] | None = None,
        batch: BatchedWrite | None = None,
    ) -> T:
        # Each write is a transaction of its own here: ``batch`` has nothing to join.
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
