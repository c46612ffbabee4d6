"""The async store API: checks a request's arguments and runs its transaction on the engine."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlparse

from tidemark.core import (
    SYSTEM_CLOCK,
    BadRequestError,
    Clock,
    ConfigurationError,
    Counters,
    DataValidationError,
    MalformedBodyError,
    NotFoundError,
    ParameterValidationError,
    get_logger,
)

from . import _reads, _retention, _writes
from ._engine import Engine, Transaction
from ._model import Facts, ResourceModel, ResourceSpec, load_model
from ._postgres import PostgresEngine
from ._sqlite import SqliteEngine
from ._types import (
    ChangeVersions,
    HistoryEntry,
    KeyChange,
    Page,
    StoredDocument,
    Tombstone,
    WriteOutcome,
    stamp_moment,
    stamp_text,
)

log = get_logger("store")
#: The store's timestamp precision: two stamps that differ differ by at least this much.
_STAMP_STEP = timedelta(milliseconds=1)
T = TypeVar("T")

COLLECTION_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _check_collection(collection: str) -> str:
    if not COLLECTION_PATTERN.match(collection):
        raise BadRequestError(f"invalid collection name {collection!r}")
    return collection


def _check_id(id: str) -> str:
    if not ID_PATTERN.match(id):
        raise BadRequestError(f"invalid id {id!r}: 1-64 characters from A-Z a-z 0-9 - .")
    return id


class Store:
    """The change-tracked document store (Ed-Fi resources and generic collections).

    Every document carries representation stamps from one global change-version sequence; a
    write whose canonical body equals the stored one allocates nothing. All methods are
    coroutines, safe to call concurrently from many tasks; transactions run on worker threads.
    Open one with :func:`open_store`.
    """

    def __init__(self, engine: Engine, model: ResourceModel, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.model = model
        self.clock = clock
        self._inflight_lock = threading.Lock()
        self._inflight: dict[int, datetime] = {}
        self._tokens = itertools.count()
        # The latest horizon handed out: later writes are stamped after it, even within the
        # same millisecond, so that a poller passing it back sees each write exactly once.
        self._horizon: datetime | None = None
        self._last_stamp: datetime | None = None
        #: Counters a user can read (and the server exports): change_versions_allocated,
        #: journal_rows (representation changes), noop_writes (writes that changed nothing).
        self.counters = Counters("change_versions_allocated", "journal_rows", "noop_writes")

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release connections and worker threads. The store cannot be used afterwards."""
        await self.engine.close()

    async def _write(self, request: Callable[[_writes.ChangeSet], T]) -> T:
        # Each attempt of a write transaction registers the timestamp it stamps documents with,
        # until it has committed or rolled back, so that :meth:`timestamp_horizon` never reports a
        # time at or after a stamp that readers cannot see yet.
        tokens: list[int] = []
        attempts: list[_writes.ChangeSet] = []

        def work(tx: Transaction) -> T:
            with self._inflight_lock:
                moment = stamp_moment(self.clock.now())
                if self._horizon is not None and moment <= self._horizon:
                    moment = self._horizon + _STAMP_STEP
                if self._last_stamp is None or moment > self._last_stamp:
                    self._last_stamp = moment
                now = stamp_text(moment)
                token = next(self._tokens)
                self._inflight[token] = moment
                tokens.append(token)
            changes = _writes.ChangeSet(tx, self.model, now, moment)
            attempts.append(changes)
            return request(changes)

        def done() -> None:
            with self._inflight_lock:
                for token in tokens:
                    self._inflight.pop(token, None)

        result = await self.engine.write(work, on_done=done)
        committed = attempts[-1]  # earlier attempts (retried on PostgreSQL) were rolled back
        if committed.allocated:
            self.counters.increment("change_versions_allocated", committed.allocated)
        if committed.journaled:
            self.counters.increment("journal_rows", committed.journaled)
        if isinstance(result, WriteOutcome) and not result.changed:
            self.counters.increment("noop_writes")
        return result

    def timestamp_horizon(self) -> datetime:
        """A time T such that every write stamped at or before T is visible to readers now, and
        every later write will be stamped after T. Use it as the server time of a search whose
        results a client polls with ``_lastUpdated=gt<T>``. (In-process writers only: several
        server processes on one PostgreSQL database need the shared horizon of Change Queries.)
        """
        with self._inflight_lock:
            horizon = stamp_moment(self.clock.now())
            if self._last_stamp is not None and self._last_stamp > horizon:
                horizon = self._last_stamp  # stamped ahead of the clock by an earlier horizon
            if self._inflight:
                horizon = min(horizon, min(self._inflight.values()) - _STAMP_STEP)
            if self._horizon is None or horizon > self._horizon:
                self._horizon = horizon
            return horizon

    # -- model resources -------------------------------------------------------------------------
    def resource(self, resource: str | ResourceSpec) -> ResourceSpec:
        """The model resource for a spec, a collection name (``ed-fi:sessions``) or an endpoint
        (``sessions``). Raises :class:`NotFoundError` for an unknown resource."""
        if isinstance(resource, ResourceSpec):
            return resource
        spec = self.model.by_collection(resource)
        if spec is None and ":" not in resource:
            for project in self.model.project_endpoints:
                spec = self.model.find(project, resource)
                if spec is not None:
                    break
        if spec is None:
            raise NotFoundError(f"Unknown resource {resource!r}.")
        return spec

    async def upsert(
        self, resource: str | ResourceSpec, body: Any, *, if_none_match: str | None = None
    ) -> WriteOutcome:
        """Create or update a model document by its natural key (Ed-Fi ``POST``).

        Validates the body (400 with every error), resolves its references (409 naming each
        missing one) and returns whether a document was created and whether anything changed.
        ``id``, ``_etag`` and ``_lastModifiedDate`` in ``body`` are ignored.
        """
        spec = self.resource(resource)
        facts = spec.client_facts(body)  # computed here, outside the writer's critical section
        return await self._write(
            lambda changes: _writes.upsert(changes, spec, facts, if_none_match)
        )

    async def replace(
        self,
        resource: str | ResourceSpec,
        id: str,
        body: Any,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> WriteOutcome:
        """Replace the model document ``id`` (Ed-Fi ``PUT``); 404 when it does not exist.

        A body ``id`` must equal ``id``. Changing the natural key is a 400
        (``key-change-not-supported``) unless the resource allows identity updates, in which case
        the change cascades to every referrer in the same transaction.
        """
        spec = self.resource(resource)
        if isinstance(body, dict) and "id" in body and body["id"] != id:
            raise DataValidationError(
                "The identifier in the body does not match the identifier in the URL.",
                validation_errors={"$.id": ["Must match the id in the URL."]},
            )
        facts = spec.client_facts(body)
        return await self._write(
            lambda changes: _writes.replace(changes, spec, id, facts, if_match, if_none_match)
        )

    # -- generic collections -----------------------------------------------------------------------
    async def put(
        self,
        collection: str,
        id: str,
        body: Any,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> WriteOutcome:
        """Create or replace document ``id`` of ``collection``.

        On a model collection the model's rules apply (validation, references, identity); on a
        generic collection the body is any JSON object. ``if_match`` / ``if_none_match`` take
        raw header values; a failed precondition raises ``PreconditionFailedError`` (412).
        """
        _check_collection(collection)
        _check_id(id)
        if not isinstance(body, dict):
            raise MalformedBodyError("The document must be a JSON object.")
        spec = self.model.by_collection(collection)
        facts = spec.client_facts(body) if spec is not None else Facts.of(None, dict(body))
        return await self._write(
            lambda changes: _writes.put(
                changes, collection, id, spec, facts, if_match, if_none_match
            )
        )

    async def delete(self, collection: str, id: str, *, if_match: str | None = None) -> Tombstone:
        """Delete a document. 404 when absent, 412 on a failed ``If-Match``, 409 when other
        documents reference it. Returns the tombstone (with the change version it allocated)."""
        spec = self.model.by_collection(collection)
        return await self._write(
            lambda changes: _writes.delete(changes, collection, id, spec, if_match)
        )

    # -- reads -------------------------------------------------------------------------------------
    async def get(self, collection: str, id: str) -> StoredDocument | None:
        """The current document, or ``None`` when it does not exist (see :meth:`get_tombstone`)."""
        return await self.engine.read_point(lambda tx: _reads.get(tx, collection, id))

    async def current_version(self, collection: str, id: str) -> int | None:
        """The ``content_version`` of the current document (what its ETag is made of), or
        ``None`` when it does not exist: a conditional read checks it without loading the body."""
        return await self.engine.read_point(lambda tx: _reads.current_version(tx, collection, id))

    async def get_tombstone(self, collection: str, id: str) -> Tombstone | None:
        """The latest tombstone of ``id`` if the document is currently deleted, else ``None``."""
        return await self.engine.read(lambda tx: _reads.get_tombstone(tx, collection, id))

    async def query(
        self,
        collection: str,
        *,
        limit: int = 25,
        offset: int = 0,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        modified: Sequence[tuple[str, datetime]] = (),
        order: str = "id",
        total_count: bool = False,
    ) -> Page[StoredDocument]:
        """A page of current documents.

        ``where`` maps JSON paths (``$.schoolReference.schoolId``) to required values;
        ``modified`` holds ``(op, moment)`` pairs on the last-modified time with op one of
        ``lt le gt ge eq``; ``order`` one of ``id``, ``content_version``, ``-content_version``,
        ``last_modified``, ``-last_modified``.
        """
        if order not in _reads.ORDERS:
            raise ParameterValidationError(
                f"unknown order {order!r}", errors=[f"order must be one of {sorted(_reads.ORDERS)}"]
            )
        if limit < 0 or offset < 0:
            raise ParameterValidationError("limit and offset must be >= 0")
        return await self.engine.read(
            lambda tx: _reads.query(
                tx, collection, limit, offset, ids, where, modified, order, total_count
            )
        )

    async def history(self, collection: str, id: str) -> list[HistoryEntry]:
        """Every previous representation of ``id``, newest first (including a deleted one)."""
        return await self.engine.read(lambda tx: _reads.history(tx, collection, id))

    async def newest_change_version(self) -> int:
        """The newest change version a watermark client may store: every version at or below it
        is committed or rolled back (on PostgreSQL, concurrent writers are accounted for)."""
        return await self.engine.newest_safe_version()

    # -- Change Queries --------------------------------------------------------------------------
    async def available_change_versions(self) -> ChangeVersions:
        """``oldestChangeVersion`` / ``newestChangeVersion`` of the Change Queries API."""
        newest = await self.engine.newest_safe_version()
        oldest = await self.engine.read(_reads.oldest_retained)
        return ChangeVersions(oldest=oldest, newest=newest)

    async def changes(
        self,
        collection: str,
        *,
        min_version: int | None = None,
        max_version: int | None = None,
        limit: int = 25,
        offset: int = 0,
        where: Mapping[str, Any] | None = None,
        total_count: bool = False,
    ) -> Page[StoredDocument]:
        """Current documents whose ContentVersion is in [min_version, max_version] (inclusive,
        either open), ordered by change version. 410 when the window starts before the oldest
        retained version."""
        return await self.engine.read(
            lambda tx: _reads.live_changes(
                tx, collection, min_version, max_version, limit, offset, where, total_count
            )
        )

    async def deletes(
        self,
        collection: str,
        *,
        min_version: int | None = None,
        max_version: int | None = None,
        limit: int = 25,
        offset: int = 0,
        total_count: bool = False,
    ) -> Page[Tombstone]:
        """Deletions in the window (a natural key deleted and created again is not listed)."""
        return await self.engine.read(
            lambda tx: _reads.deletes(
                tx, collection, min_version, max_version, limit, offset, total_count
            )
        )

    async def key_changes(
        self,
        collection: str,
        *,
        min_version: int | None = None,
        max_version: int | None = None,
        limit: int = 25,
        offset: int = 0,
        total_count: bool = False,
    ) -> Page[KeyChange]:
        """Natural-key changes in the window, collapsed per document (A→B→C is A→C)."""
        return await self.engine.read(
            lambda tx: _reads.key_changes(
                tx, collection, min_version, max_version, limit, offset, total_count
            )
        )

    async def purge_changes(self, older_than: datetime, *, batch: int = 1000) -> int:
        """Forget journal, tombstone and key-change rows recorded before ``older_than``.

        First records the new oldest retained version (so readers get 410 for older windows
        instead of partial answers), then deletes in batches of ``batch`` rows, one short
        transaction each. Returns the number of rows deleted. Documents and history are kept.
        """
        return await _retention.purge_changes(self.engine, older_than, batch=batch)


async def open_store(
    url: str | Path = "tidemark.db",
    *,
    model: ResourceModel | str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Store:
    """Open (creating or upgrading the schema on first use) the store at ``url``.

    ``url``: a SQLite file path, ``sqlite:///path`` or ``postgresql://…``. ``model``: a loaded
    :class:`ResourceModel`, a path to an Ed-Fi ApiSchema JSON file, or ``None`` for the bundled
    sample model. Raises ``ConfigurationError`` / ``SourceUnavailableError`` on bad settings or
    an unreachable database.
    """
    resource_model = model if isinstance(model, ResourceModel) else load_model(model)
    engine = engine_for(url)
    if isinstance(engine, PostgresEngine):
        await asyncio.to_thread(engine.open)
    await asyncio.to_thread(engine.migrate)
    log.info(
        "store opened",
        engine=engine.name,
        resources=len(resource_model),
        model=resource_model.source,
    )
    return Store(engine, resource_model, clock)


def engine_for(url: str | Path) -> SqliteEngine | PostgresEngine:
    """An engine for a database URL: ``postgresql://…``, ``sqlite:///path`` or a file path."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresEngine(text)
    if text.startswith("sqlite://"):
        parsed = urlparse(text)
        path = unquote(parsed.path)
        if parsed.netloc:
            raise ConfigurationError(f"use sqlite:///relative or sqlite:////absolute, not {text!r}")
        options = dict(parse_qsl(parsed.query))
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigurationError(f"unknown SQLite URL option(s): {', '.join(sorted(unknown))}")
        # sqlite:///relative.db → "relative.db"; sqlite:////abs/path.db → "/abs/path.db"
        return SqliteEngine(path[1:], synchronous=options.get("synchronous", "FULL"))
    if "://" in text:
        raise ConfigurationError(
            f"unsupported database URL {text!r} (use a path, sqlite:/// or postgresql://)"
        )
    return SqliteEngine(text)
