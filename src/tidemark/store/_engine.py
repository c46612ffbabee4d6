"""What the store asks of a database engine: the :class:`Engine` and :class:`Transaction` protocols."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Row = tuple[Any, ...]


class RetryTransaction(Exception):
    """Raised inside a write to ask the engine to run the whole transaction again.

    Concurrent writers on PostgreSQL can race (two inserts of one natural key); the engine
    retries a few times and then raises ``error``. A serialised engine (SQLite) never races, so
    it raises ``error`` at once.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class BatchedWrite:
    """A write that an engine committing writes in groups may run together with its neighbours.

    ``runner(tx, items)`` gets the ``item`` of each of several consecutive writes of a group
    that share the runner, in queue order, and returns the results of the first *k* of them
    (0 <= k <= len(items)), having done what their own functions would have done one after the
    other; the engine runs write *k* through its own function, then offers the rest again. A
    runner raising an exception fails the whole run, as a failing write function does (the
    engine then runs each write on its own). Engines that do not group writes ignore it.
    """

    runner: Callable[[Transaction, list[Any]], list[Any]]
    item: Any


class Transaction(Protocol):
    """One open database transaction. SQL uses ``?`` placeholders. Not thread-safe.

    The store's logic runs synchronously inside a transaction on a worker thread, with SQL
    written once for both engines; an engine supplies only what differs (version allocation, row
    locks, JSON extraction).
    """

    engine_name: str
    #: Row-lock suffixes for SELECT (empty on SQLite, where the writer holds the database lock).
    for_update: str
    for_share: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed (-1 when unknown)."""
        ...

    def insert_id(self, sql: str, params: Sequence[Any] = (), key: str = "doc_pk") -> int:
        """Run an INSERT of one row into a table whose generated key column is ``key``; returns it.

        Written without ``RETURNING``: on PostgreSQL the engine appends ``RETURNING <key>``; on
        SQLite the cursor's ``lastrowid`` is used (SQLite's RETURNING costs ~80 µs a statement).
        """
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def search(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """:meth:`query` for SQL whose best plan depends on the parameter values (a search of
        the index: how many rows each condition reads), planned for those values every time
        (PostgreSQL would otherwise switch a prepared statement to one generic plan)."""
        ...

    def allocate_version(self) -> int:
        """The next value of the global change-version sequence (unique, increasing)."""
        ...

    def announce_stamp(self) -> datetime:
        """This transaction's timestamp from the database's clock, announced first as a floor
        that :meth:`Engine.stamp_horizon` of every process stays below until it ends (engines
        with ``shared_clock`` only)."""
        ...

    def json_value(self, column: str, path: Sequence[str]) -> str:
        """SQL for the JSON value at ``path`` inside a JSON text ``column``, comparable with
        :meth:`json_param` values."""
        ...

    def json_param(self, value: Any) -> Any:
        """The parameter to compare with :meth:`json_value`."""
        ...

    def json_path_param(self, path: Sequence[str]) -> Any:
        """The parameter that :meth:`json_value`'s placeholder takes for ``path``."""
        ...

    def exclusive(self, name: str) -> None:
        """Wait for, then hold until this transaction ends, the lock called ``name``: write
        transactions that take the same name run one after the other, in every process on the
        database (SQLite's single writer serialises every write already)."""
        ...


class Engine(Protocol):
    """A database: runs functions inside transactions on worker threads."""

    name: str
    #: True when the database has a clock every process stamps with (:meth:`stamp_horizon`).
    shared_clock: bool

    async def write(
        self,
        fn: Callable[[Transaction], T],
        on_done: Callable[[], None] | None = None,
        batch: BatchedWrite | None = None,
    ) -> T:
        """Run ``fn`` in a read-write transaction; commit on return, roll back on exception.

        ``on_done`` runs on the worker thread after the commit or rollback. ``batch``, when
        given, is the same write in a form the engine may run together with others (see
        :class:`BatchedWrite`); ``fn`` is what it means.
        """
        ...

    async def read(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` in a read-only transaction (a consistent snapshot)."""
        ...

    async def read_point(self, fn: Callable[[Transaction], T]) -> T:
        """:meth:`read` for one statement that looks rows up by key (a statement reads one
        snapshot on its own), run where it costs least: SQLite runs it on the calling thread,
        which costs less than the hop to a worker thread; PostgreSQL runs it without a
        transaction around it (one round trip)."""
        ...

    def write_sync(self, fn: Callable[[Transaction], T]) -> T:
        """:meth:`write` for callers already on a worker thread."""
        ...

    async def newest_safe_version(self) -> int:
        """The largest change version V such that every version <= V is committed or rolled
        back: the newest version a watermark client may safely store."""
        ...

    async def stamp_horizon(self) -> datetime:
        """A time T (millisecond precision) such that every write stamped at or before T has
        committed or rolled back, and every write not yet announced will be stamped after T
        (engines with ``shared_clock`` only)."""
        ...

    async def close(self) -> None: ...
