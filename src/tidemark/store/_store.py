"""The async store API over an engine and a resource model."""

from __future__ import annotations

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
    GoneError,
    MalformedBodyError,
    NotFoundError,
    ParameterValidationError,
    get_logger,
    parse_iso_utc,
    parse_json,
)

from . import _feeds
from ._changes import (
    DOC_COLUMNS,
    ChangeSet,
    DocRow,
    Facts,
    check_preconditions,
    history_entries,
    require,
    select_doc,
    select_doc_by_referential_id,
)
from ._engine import Engine, Transaction
from ._model import SERVER_MEMBERS, ResourceModel, ResourceSpec, load_model
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
T = TypeVar("T")

COLLECTION_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
ORDERS = {
    "id": "doc_pk",
    "content_version": "content_version",
    "-content_version": "content_version DESC",
    "last_modified": "content_modified_at, doc_pk",
    "-last_modified": "content_modified_at DESC, doc_pk DESC",
}
_COMPARATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "="}


def _check_collection(collection: str) -> str:
    if not COLLECTION_PATTERN.match(collection):
        raise BadRequestError(f"invalid collection name {collection!r}")
    return collection


def _check_id(id: str) -> str:
    if not ID_PATTERN.match(id):
        raise BadRequestError(f"invalid id {id!r}: 1-64 characters from A-Z a-z 0-9 - .")
    return id


def _client_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise MalformedBodyError("The request body must be a JSON object.")
    return {k: v for k, v in body.items() if k not in SERVER_MEMBERS}


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
        self._inflight: dict[int, str] = {}
        self._tokens = itertools.count()
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

    async def _write(self, fn: Callable[[Transaction, ChangeSet], T]) -> T:
        # Each attempt of a write transaction registers the timestamp it stamps documents with,
        # until it has committed or rolled back, so that :meth:`timestamp_horizon` never reports a
        # time at or after a stamp that readers cannot see yet.
        tokens: list[int] = []
        attempts: list[ChangeSet] = []

        def work(tx: Transaction) -> T:
            with self._inflight_lock:
                moment = stamp_moment(self.clock.now())
                now = stamp_text(moment)
                token = next(self._tokens)
                self._inflight[token] = now
                tokens.append(token)
            changes = ChangeSet(tx, self.model, now, moment)
            attempts.append(changes)
            return fn(tx, changes)

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
            now = stamp_moment(self.clock.now())
            candidates = [now] + [parse_iso_utc(stamp) for stamp in self._inflight.values()]
        return min(candidates) - timedelta(milliseconds=1)

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
        clean = _client_body(body)
        spec.validate(clean)
        facts = Facts.of(spec, clean)  # computed here, outside the writer's critical section
        rid = facts.referential_id
        assert rid is not None  # model resources always have a natural key

        def work(tx: Transaction, changes: ChangeSet) -> WriteOutcome:
            existing = select_doc_by_referential_id(tx, rid, lock=True)
            check_preconditions(existing, None, if_none_match)
            if existing is None:
                return WriteOutcome(
                    changes.insert(spec.collection, spec, clean, facts=facts), True, True
                )
            return self._replace_in(changes, spec, existing, clean, facts)

        return await self._write(work)

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
        clean = _client_body(body)
        spec.validate(clean)
        facts = Facts.of(spec, clean)

        def work(tx: Transaction, changes: ChangeSet) -> WriteOutcome:
            found = select_doc(tx, spec.collection, id, lock=True)
            check_preconditions(found, if_match, if_none_match)
            existing = require(found, f"{spec.resource_name} {id}")
            return self._replace_in(changes, spec, existing, clean, facts)

        return await self._write(work)

    @staticmethod
    def _replace_in(
        changes: ChangeSet,
        spec: ResourceSpec,
        existing: DocRow,
        body: dict[str, Any],
        facts: Facts,
    ) -> WriteOutcome:
        if facts.text == existing.body_text:
            return WriteOutcome(existing.document(body), False, False)  # a no-op: nothing to do
        changes.set_body(
            existing, spec, body, facts=facts, identity_may_change=spec.allow_identity_updates
        )
        changes.cascade()
        for document in changes.finalize():
            if document.id == existing.id and document.collection == existing.collection:
                return WriteOutcome(document, False, True)
        return WriteOutcome(existing.document(), False, False)

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
        clean = _client_body(body) if spec is not None else dict(body)
        if spec is not None:
            spec.validate(clean)
        facts = Facts.of(spec, clean)

        def work(tx: Transaction, changes: ChangeSet) -> WriteOutcome:
            existing = select_doc(tx, collection, id, lock=True)
            check_preconditions(existing, if_match, if_none_match)
            if existing is None:
                return WriteOutcome(
                    changes.insert(collection, spec, clean, id, facts=facts), True, True
                )
            if spec is not None:
                return self._replace_in(changes, spec, existing, clean, facts)
            changes.set_body(existing, None, clean, facts=facts)
            written = changes.finalize()
            if written:
                return WriteOutcome(written[0], False, True)
            return WriteOutcome(existing.document(), False, False)

        return await self._write(work)

    async def get(self, collection: str, id: str) -> StoredDocument | None:
        """The current document, or ``None`` when it does not exist (see :meth:`get_tombstone`)."""

        def work(tx: Transaction) -> StoredDocument | None:
            row = select_doc(tx, collection, id)
            return row.document() if row else None

        return await self.engine.read(work)

    async def get_tombstone(self, collection: str, id: str) -> Tombstone | None:
        """The latest tombstone of ``id`` if the document is currently deleted, else ``None``."""

        def work(tx: Transaction) -> Tombstone | None:
            if select_doc(tx, collection, id) is not None:
                return None
            row = tx.query_one(
                "SELECT change_version, deleted_at, key_values, last_content_version FROM tombstones "
                "WHERE collection = ? AND id = ? ORDER BY change_version DESC LIMIT 1",
                (collection, id),
            )
            if row is None:
                return None
            return Tombstone(
                collection,
                id,
                int(row[0]),
                parse_iso_utc(row[1]),
                parse_json(row[2]) if row[2] else None,
                int(row[3]),
            )

        return await self.engine.read(work)

    async def delete(self, collection: str, id: str, *, if_match: str | None = None) -> Tombstone:
        """Delete a document. 404 when absent, 412 on a failed ``If-Match``, 409 when other
        documents reference it. Returns the tombstone (with the change version it allocated)."""
        spec = self.model.by_collection(collection)

        def work(tx: Transaction, changes: ChangeSet) -> Tombstone:
            found = select_doc(tx, collection, id, lock=True)
            check_preconditions(found, if_match, None)
            row = require(found, f"{spec.resource_name if spec else collection} {id}")
            return changes.delete(row, spec)

        return await self._write(work)

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
        if order not in ORDERS:
            raise ParameterValidationError(
                f"unknown order {order!r}", errors=[f"order must be one of {sorted(ORDERS)}"]
            )
        if limit < 0 or offset < 0:
            raise ParameterValidationError("limit and offset must be >= 0")

        def work(tx: Transaction) -> Page[StoredDocument]:
            clauses = ["collection = ?"]
            params: list[Any] = [collection]
            if ids is not None:
                if not ids:
                    return Page([], 0 if total_count else None)
                clauses.append(f"id IN ({', '.join('?' * len(ids))})")
                params.extend(ids)
            filters, filter_params = _feeds.json_filters(tx, where, "body")
            clauses.extend(filters)
            params.extend(filter_params)
            for op, moment in modified:
                if op not in _COMPARATORS:
                    raise ParameterValidationError(f"unknown comparison {op!r}")
                clauses.append(f"content_modified_at {_COMPARATORS[op]} ?")
                params.append(stamp_text(moment))
            where_sql = " AND ".join(clauses)
            rows, total = _feeds.paged(
                tx,
                DOC_COLUMNS,
                f"FROM documents WHERE {where_sql}",
                params,
                ORDERS[order],
                limit,
                offset,
                total_count,
            )
            return Page([DocRow.from_row(r).document() for r in rows], total)

        return await self.engine.read(work)

    async def history(self, collection: str, id: str) -> list[HistoryEntry]:
        """Every previous representation of ``id``, newest first (including a deleted one)."""

        def work(tx: Transaction) -> list[HistoryEntry]:
            rows = tx.query(
                "SELECT collection, id, body, content_version, valid_from, valid_to, superseded_by, deleted "
                "FROM history WHERE collection = ? AND id = ? ORDER BY content_version DESC",
                (collection, id),
            )
            return history_entries(rows)

        return await self.engine.read(work)

    async def newest_change_version(self) -> int:
        """The newest change version a watermark client may store: every version at or below it
        is committed or rolled back (on PostgreSQL, concurrent writers are accounted for)."""
        return await self.engine.newest_safe_version()

    # -- Change Queries --------------------------------------------------------------------------
    async def available_change_versions(self) -> ChangeVersions:
        """``oldestChangeVersion`` / ``newestChangeVersion`` of the Change Queries API."""
        newest = await self.engine.newest_safe_version()
        oldest = await self.engine.read(_feeds.oldest_retained)
        return ChangeVersions(oldest=oldest, newest=newest)

    def _window(self, tx: Transaction, low: int | None, high: int | None) -> int:
        if (low is not None and low < 0) or (high is not None and high < 0):
            raise ParameterValidationError(
                "Change versions must be numeric values greater than or equal to 0."
            )
        if low is not None and high is not None and low > high:
            raise ParameterValidationError(
                "MinChangeVersion must be less than or equal to MaxChangeVersion."
            )
        oldest = _feeds.oldest_retained(tx)
        start = low or 0
        if start < oldest:
            raise GoneError(
                f"Changes before change version {oldest} are no longer retained "
                f"(minChangeVersion {start} was requested). Resynchronise from a full read of the "
                "resources, then continue from the newestChangeVersion reported by "
                "availableChangeVersions.",
                data={"oldestChangeVersion": oldest},
            )
        return start

    async def _read_window(
        self, feed: Callable[[Transaction, int], Page[T]], low: int | None, high: int | None
    ) -> Page[T]:
        def work(tx: Transaction) -> Page[T]:
            return feed(tx, self._window(tx, low, high))

        return await self.engine.read(work)

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
        return await self._read_window(
            lambda tx, low: _feeds.live_changes(
                tx, collection, low, max_version, limit, offset, where, total_count
            ),
            min_version,
            max_version,
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
        return await self._read_window(
            lambda tx, low: _feeds.deletes(
                tx, collection, low, max_version, limit, offset, total_count
            ),
            min_version,
            max_version,
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
        return await self._read_window(
            lambda tx, low: _feeds.key_changes(
                tx, collection, low, max_version, limit, offset, total_count
            ),
            min_version,
            max_version,
        )

    async def purge_changes(self, older_than: datetime, *, batch: int = 1000) -> int:
        """Forget journal, tombstone and key-change rows recorded before ``older_than``.

        First records the new oldest retained version (so readers get 410 for older windows
        instead of partial answers), then deletes in batches of ``batch`` rows, one short
        transaction each. Returns the number of rows deleted. Documents and history are kept.
        """
        horizon = stamp_text(older_than)
        # Never declare unanswerable a version that a writer still in flight may commit: the
        # oldest retained version stays at or below the newest safe one + 1.
        safe = await self.engine.newest_safe_version()

        def mark(tx: Transaction) -> int | None:
            row = tx.query_one(
                "SELECT max(v) FROM ("
                "SELECT max(change_version) AS v FROM journal WHERE recorded_at < ? UNION ALL "
                "SELECT max(change_version) FROM tombstones WHERE deleted_at < ? UNION ALL "
                "SELECT max(change_version) FROM key_changes WHERE changed_at < ?) m",
                (horizon, horizon, horizon),
            )
            through = min(int(row[0]), safe) if row and row[0] is not None else None
            if through is None or through <= 0:
                return None
            current = tx.query_one("SELECT value FROM store_settings WHERE key = 'purged_through'")
            if current is not None and int(current[0]) >= through:
                return int(current[0])
            tx.execute(
                "INSERT INTO store_settings (key, value) VALUES ('purged_through', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(through),),
            )
            return through

        through = await self.engine.write(mark)
        if through is None:
            return 0
        deleted = 0

        def journal_collections(tx: Transaction) -> list[str]:
            # A skip scan over the journal's (collection, change_version) key: one probe per
            # collection instead of a pass over every row.
            rows = tx.query(
                "WITH RECURSIVE c(name) AS (SELECT min(collection) FROM journal UNION ALL "
                "SELECT (SELECT min(collection) FROM journal WHERE collection > c.name) FROM c "
                "WHERE c.name IS NOT NULL) SELECT name FROM c WHERE name IS NOT NULL"
            )
            return [str(r[0]) for r in rows]

        targets: list[tuple[str, str | None]] = [
            ("journal", name) for name in await self.engine.read(journal_collections)
        ]
        targets += [("tombstones", None), ("key_changes", None)]
        for table, collection in targets:
            while True:

                def chunk(
                    tx: Transaction, table: str = table, collection: str | None = collection
                ) -> int:
                    if collection is None:
                        return tx.execute(
                            f"DELETE FROM {table} WHERE change_version IN (SELECT change_version FROM {table} "
                            "WHERE change_version <= ? ORDER BY change_version LIMIT ?)",
                            (through, batch),
                        )
                    return tx.execute(
                        "DELETE FROM journal WHERE collection = ? AND change_version IN (SELECT change_version "
                        "FROM journal WHERE collection = ? AND change_version <= ? ORDER BY change_version LIMIT ?)",
                        (collection, collection, through, batch),
                    )

                removed = await self.engine.write(chunk)
                deleted += removed
                if removed < batch:
                    break
        log.info("changes purged", through_version=through, rows=deleted)
        return deleted


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
    import asyncio

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
