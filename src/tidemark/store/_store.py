"""The async store API: checks a request's arguments and runs its transaction on the engine."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
    PreconditionFailedError,
    TidemarkError,
    get_logger,
)

from . import _index_sql, _reads, _retention, _write_batch, _writes
from ._engine import BatchedWrite, Engine, Transaction
from ._index import Condition, Indexer, IndexOrder, IndexStatus, Order, check_conditions
from ._indexing import REINDEX_BATCH, Indexes, ensure_indexed
from ._model import Facts, ResourceModel, ResourceSpec, generic_facts, load_model
from ._model_record import check_model
from ._postgres import PostgresEngine
from ._query_fields import ModelIndexer, where_conditions
from ._sqlite import SqliteEngine
from ._types import (
    ChangeVersions,
    Cursor,
    DeleteDocument,
    HistoryEntry,
    KeyChange,
    Page,
    PutDocument,
    SearchAfter,
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


@dataclass(slots=True)
class _BatchedUpsert:
    """An upsert as its write's :class:`BatchedWrite` item: the request, and where the write
    keeps its stamp tokens and the tally of the attempt that ran it."""

    request: _write_batch.UpsertRequest
    tokens: list[int]
    attempts: list[Any]


def _unmatched_lock(
    collection: str,
    conditions: Sequence[Condition],
    ids: Sequence[str] | None,
    modified: Sequence[tuple[str, datetime]],
) -> str:
    """The name of the lock that serialises conditional creates with these conditions."""
    return repr((collection, sorted(map(repr, conditions)), sorted(ids or ()), list(modified)))


def _plain_put(
    planned: tuple[PutDocument | DeleteDocument, ResourceSpec | None, Facts | None],
) -> bool:
    """Whether a planned :meth:`Store.write_many` operation is a put of a model document without
    preconditions (one the group-commit planner may take)."""
    operation, spec, _facts = planned
    return (
        isinstance(operation, PutDocument)
        and spec is not None
        and operation.if_match is None
        and operation.if_none_match is None
        and operation.unless is None
    )


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
        # On an engine with a clock of its own (PostgreSQL) stamps and horizons come from the
        # database, one clock for every process; a clock given by the caller (tests,
        # simulations) takes over stamps and keeps the horizon to this process's writers.
        self._database_clock = clock is SYSTEM_CLOCK and engine.shared_clock
        self._inflight_lock = threading.Lock()
        self._inflight: dict[int, datetime] = {}
        self._tokens = itertools.count()
        # The latest horizon handed out: later writes are stamped after it, even within the
        # same millisecond, so that a poller passing it back sees each write exactly once.
        self._horizon: datetime | None = None
        self._last_stamp: datetime | None = None
        self._stamp_text: tuple[datetime | None, str] = (None, "")
        self._resources: dict[str, ResourceSpec] = {}  # resource() by the name it was given
        #: Counters a user can read (and the server exports): change_versions_allocated,
        #: journal_rows (representation changes), noop_writes (writes that changed nothing),
        #: documents_reindexed (by background reindexes).
        self.counters = Counters(
            "change_versions_allocated", "journal_rows", "noop_writes", "documents_reindexed"
        )
        #: The search index's indexers by collection prefix: the model's query fields under each
        #: project (``ed-fi:``), and those given to :meth:`register_indexer`.
        self.indexes = Indexes()
        self._index_status: dict[str, IndexStatus] = {}
        self._index_tasks: dict[str, asyncio.Task[None]] = {}
        for project in model.project_endpoints:
            fields = {s.collection: s.query_fields for s in model if s.project_endpoint == project}
            self.indexes.register(f"{project}:", ModelIndexer(fields))

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop background reindexes, release connections and worker threads. The store cannot
        be used afterwards."""
        tasks = list(self._index_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.engine.close()

    def _stamp(self, tokens: list[int]) -> tuple[datetime, str]:
        """A new write's stamp (parsed, and as text), registered in flight under a token added
        to ``tokens`` until the write's ``done`` removes it."""
        with self._inflight_lock:
            moment = stamp_moment(self.clock.now())
            if self._horizon is not None and moment <= self._horizon:
                moment = self._horizon + _STAMP_STEP
            if self._last_stamp is None or moment > self._last_stamp:
                self._last_stamp = moment
            # Writes of one burst share their millisecond: format each stamp once.
            if self._stamp_text[0] != moment:
                self._stamp_text = (moment, stamp_text(moment))
            token = next(self._tokens)
            self._inflight[token] = moment
            tokens.append(token)
            return moment, self._stamp_text[1]

    async def _write(
        self,
        request: Callable[[_writes.ChangeSet], T],
        upsert: _write_batch.UpsertRequest | None = None,
        exclusive: Sequence[str] = (),
    ) -> T:
        # Each attempt of a write transaction registers the timestamp it stamps documents with,
        # until it has committed or rolled back, so that :meth:`timestamp_horizon` never reports a
        # time at or after a stamp that readers cannot see yet.
        tokens: list[int] = []
        attempts: list[_writes.ChangeSet | _write_batch.UpsertDone] = []

        def work(tx: Transaction) -> T:
            for name in sorted(set(exclusive)):  # one order: two writers cannot deadlock
                tx.exclusive(name)  # before the stamp: waiting must not hold horizons back
            if self._database_clock:
                moment = tx.announce_stamp()
                changes = _writes.ChangeSet(tx, self.model, stamp_text(moment), moment)
                attempts.append(changes)
                return request(changes)
            moment, now = self._stamp(tokens)
            changes = _writes.ChangeSet(tx, self.model, now, moment, self.indexes)
            attempts.append(changes)
            return request(changes)

        def done() -> None:
            with self._inflight_lock:
                for token in tokens:
                    self._inflight.pop(token, None)

        if upsert is not None and not self._database_clock:
            batch = BatchedWrite(self._run_upserts, _BatchedUpsert(upsert, tokens, attempts))
            result = await self.engine.write(work, on_done=done, batch=batch)
        else:
            result = await self.engine.write(work, on_done=done)
        committed = attempts[-1]  # earlier attempts (retried on PostgreSQL) were rolled back
        if committed.allocated:
            self.counters.increment("change_versions_allocated", committed.allocated)
        if committed.journaled:
            self.counters.increment("journal_rows", committed.journaled)
        if isinstance(result, WriteOutcome) and not result.changed:
            self.counters.increment("noop_writes")
        return result

    def _run_upserts(self, tx: Transaction, items: list[_BatchedUpsert]) -> list[WriteOutcome]:
        """The engine's runner for consecutive upserts of one group (see :class:`BatchedWrite`):
        one stamp for the run, registered with the first write (every write of a group is done
        when its transaction is)."""
        moment, now = self._stamp(items[0].tokens)
        done = _write_batch.upsert_many(
            tx, [item.request for item in items], now, moment, self.indexes
        )
        for item, one in zip(items, done, strict=False):
            item.attempts.append(one)
        return [one.outcome for one in done]

    async def timestamp_horizon(self) -> datetime:
        """A time T such that every write stamped at or before T is visible to readers now, and
        every later write will be stamped after T. Use it as the server time of a search whose
        results a client polls with ``_lastUpdated=gt<T>``.

        On PostgreSQL (with the default clock) stamps come from the database's clock and T stays
        below the stamp of every write in flight in any process on the database, as the Change
        Queries watermark does; on SQLite, or with a clock given to :func:`open_store`, T
        accounts for this process's writers.
        """
        if self._database_clock:
            return await self.engine.stamp_horizon()
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
        spec = self._resources.get(resource)
        if spec is not None:
            return spec
        spec = self.model.by_collection(resource)
        if spec is None and ":" not in resource:
            for project in self.model.project_endpoints:
                spec = self.model.find(project, resource)
                if spec is not None:
                    break
        if spec is None:
            raise NotFoundError(f"Unknown resource {resource!r}.")
        if len(self._resources) < 4096:  # names that resolve: bounded by the model's size
            self._resources[resource] = spec
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
        facts = self._facts(spec, body)  # computed here, outside the writer's critical section
        return await self._write(
            lambda changes: _writes.upsert(changes, spec, facts, if_none_match),
            _write_batch.UpsertRequest(spec, facts, if_none_match),
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
        facts = self._facts(spec, body)
        return await self._write(
            lambda changes: _writes.replace(changes, spec, id, facts, if_match, if_none_match)
        )

    def _facts(self, spec: ResourceSpec, body: Any) -> Facts:
        """A client body's validated facts with its index entries (outside the writer)."""
        facts = spec.client_facts(body)
        facts.index = self.indexes.entries_for(spec.collection, facts.body)
        return facts

    def _generic_facts(self, collection: str, body: dict[str, Any]) -> Facts:
        """A generic collection's body facts (any JSON object without NUL) with its entries."""
        facts = generic_facts(body)
        facts.index = self.indexes.entries_for(collection, facts.body)
        return facts

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
        generic collection the body is any JSON object without NUL characters (``\\u0000``:
        400 naming each path, on both engines). ``if_match`` / ``if_none_match`` take
        raw header values; a failed precondition raises ``PreconditionFailedError`` (412).
        """
        _check_collection(collection)
        _check_id(id)
        if not isinstance(body, dict):
            raise MalformedBodyError("The document must be a JSON object.")
        spec = self.model.by_collection(collection)
        facts = (
            self._facts(spec, body) if spec is not None else self._generic_facts(collection, body)
        )
        return await self._write(
            lambda changes: _writes.put(
                changes, collection, id, spec, facts, if_match, if_none_match
            )
        )

    async def put_unless_matched(
        self,
        collection: str,
        id: str,
        body: Any,
        conditions: Sequence[Condition] = (),
        *,
        ids: Sequence[str] | None = None,
        modified: Sequence[tuple[str, datetime]] = (),
        if_none_match: str | None = None,
    ) -> tuple[WriteOutcome | None, list[StoredDocument]]:
        """:meth:`put` ``body`` as document ``id`` unless a document of ``collection`` matches
        ``conditions``, ``ids`` and ``modified`` (as :meth:`search` takes them): a conditional
        create. Returns the outcome of the put (``None`` when something matched) and up to two
        matching documents (two: more than one matched).

        The search and the put are one write transaction, serialised with every other
        conditional create of the same collection and conditions (in every process on the
        database): concurrent ones with the same conditions create one document, the others
        find it.
        """
        _check_collection(collection)
        _check_id(id)
        if not isinstance(body, dict):
            raise MalformedBodyError("The document must be a JSON object.")
        checked = list(check_conditions(conditions))
        spec = self.model.by_collection(collection)
        facts = (
            self._facts(spec, body) if spec is not None else self._generic_facts(collection, body)
        )
        if ids is not None and not ids:
            return await self.put(collection, id, body, if_none_match=if_none_match), []

        def request(changes: _writes.ChangeSet) -> tuple[WriteOutcome | None, list[StoredDocument]]:
            found = _reads.query(
                changes.tx, collection, 2, 0, ids, None, modified, ["id"], False, checked
            )
            if found.items:
                return None, found.items
            return _writes.put(changes, collection, id, spec, facts, None, if_none_match), []

        return await self._write(
            request, exclusive=[_unmatched_lock(collection, checked, ids, modified)]
        )

    async def write_many(
        self, operations: Sequence[PutDocument | DeleteDocument]
    ) -> list[WriteOutcome | Tombstone]:
        """Run puts and deletes in one transaction, in order: all of them or none.

        Each operation behaves as :meth:`put` / :meth:`delete` would, seeing the operations
        before it; all documents written get the same timestamp. The first error rolls back
        every operation and is raised with the failing operation's index in
        ``error.data["operation"]``. Returns one :class:`WriteOutcome` (put) or
        :class:`Tombstone` (delete) per operation.
        """
        planned: list[tuple[PutDocument | DeleteDocument, ResourceSpec | None, Facts | None]] = []
        for index, operation in enumerate(operations):
            try:
                _check_collection(operation.collection)
                _check_id(operation.id)
                spec = self.model.by_collection(operation.collection)
                if isinstance(operation, DeleteDocument):
                    planned.append((operation, spec, None))
                    continue
                if not isinstance(operation.body, dict):
                    raise MalformedBodyError("The document must be a JSON object.")
                facts = (
                    self._facts(spec, operation.body)
                    if spec is not None
                    else self._generic_facts(operation.collection, operation.body)
                )
                if operation.unless is not None:
                    check_conditions(operation.unless.conditions)
            except TidemarkError as error:
                error.data.setdefault("operation", index)
                raise
            planned.append((operation, spec, facts))
        guarded = [
            (index, operation)
            for index, operation in enumerate(operations)
            if isinstance(operation, PutDocument) and operation.unless is not None
        ]

        def request(changes: _writes.ChangeSet) -> list[WriteOutcome | Tombstone]:
            for index, operation in guarded:
                unless = operation.unless
                assert unless is not None
                found = _reads.query(
                    changes.tx,
                    operation.collection,
                    1,
                    0,
                    unless.ids,
                    None,
                    unless.modified,
                    ["id"],
                    False,
                    unless.conditions,
                )
                if found.items:
                    raise PreconditionFailedError(
                        f"{found.items[0].id} of {operation.collection} matches the conditions "
                        "of a conditional create (written concurrently).",
                        data={"operation": index},
                    )
            return self._write_runs(changes, planned)

        locks = [
            _unmatched_lock(o.collection, o.unless.conditions, o.unless.ids, o.unless.modified)
            for _index, o in guarded
            if o.unless is not None
        ]
        results = await self._write(request, exclusive=locks)
        unchanged = sum(1 for r in results if isinstance(r, WriteOutcome) and not r.changed)
        if unchanged:
            self.counters.increment("noop_writes", unchanged)
        return results

    def _write_runs(
        self,
        changes: _writes.ChangeSet,
        planned: Sequence[tuple[PutDocument | DeleteDocument, ResourceSpec | None, Facts | None]],
    ) -> list[WriteOutcome | Tombstone]:
        """:meth:`write_many`'s operations in order. On SQLite (one writer) each run of plain
        puts of model documents goes through the group-commit planner (a few multi-row
        statements for the run, as :mod:`._write_batch` describes); the puts it leaves, and
        every other operation, run one by one. Outcomes are those of one-by-one writes."""
        if changes.tx.engine_name != "sqlite":
            return _writes.write_many(changes, planned)
        results: list[WriteOutcome | Tombstone] = []
        index, budget = 0, len(planned)
        while index < len(planned):
            end = index
            while end < len(planned) and end - index < budget and _plain_put(planned[end]):
                end += 1
            if end > index:
                run = []
                for operation, spec, facts in planned[index:end]:
                    assert spec is not None and facts is not None
                    run.append(_write_batch.UpsertRequest(spec, facts, None, operation.id))
                done = _write_batch.upsert_many(
                    changes.tx, run, changes.now, changes.moment, self.indexes
                )
                for one in done:
                    changes.allocated += one.allocated
                    changes.journaled += one.journaled
                    results.append(one.outcome)
                index += len(done)
                # A run the planner refuses at once is retried on fewer operations, so that a
                # page of key changes costs no lookups of the whole page per operation.
                budget = len(planned) if done else max(1, (end - index) // 4)
                if index == end:
                    continue
            results.extend(_writes.write_many(changes, planned[index : index + 1], index))
            index += 1
        return results

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

    async def get_representation(
        self, collection: str, id: str
    ) -> tuple[int, dict[str, Any]] | None:
        """``(content_version, representation)`` of the current document, or ``None``: what a
        GET by id answers, read without building a :class:`StoredDocument`."""
        return await self.engine.read_point(lambda tx: _reads.representation(tx, collection, id))

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
        order: Order | Sequence[Order] = "id",
        total_count: bool = False,
    ) -> Page[StoredDocument]:
        """A page of current documents.

        ``where`` maps query-field names (``schoolId``; a string value is coerced to the
        field's type, 400 naming the field when it cannot be) or JSON paths
        (``$.schoolReference.schoolId``, values as typed) to required values. On a model
        collection, query fields and the JSON paths of single-path query fields are index
        lookups; other JSON paths, and every ``where`` on a generic collection, filter the
        stored JSON (a scan). ``modified`` holds ``(op, moment)`` pairs on the last-modified
        time with op one of ``lt le gt ge eq``; ``order`` as :meth:`search` takes it.
        """
        return await self.search(
            collection,
            limit=limit,
            offset=offset,
            ids=ids,
            where=where,
            modified=modified,
            order=order,
            total_count=total_count,
        )

    async def search(
        self,
        collection: str,
        conditions: Sequence[Condition] = (),
        *,
        order: Order | Sequence[Order] = "id",
        limit: int = 25,
        offset: int = 0,
        total_count: bool = False,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        modified: Sequence[tuple[str, datetime]] = (),
        after: SearchAfter | None = None,
    ) -> Page[StoredDocument]:
        """A page of the current documents of ``collection`` matching every condition (see
        :class:`KeyIn`, :class:`KeyPrefix`, :class:`KeyContains`, :class:`Missing`,
        :class:`RangeMatch`, :class:`Not`, :class:`AnyOf`), and ``ids``, ``where`` and
        ``modified`` as :meth:`query` takes them.

        ``order``: ``id`` (insertion order) or ``-id``, ``content_version``, ``last_modified``
        (``-`` for descending), or :class:`IndexOrder` (several: ties broken by the next).
        Cost: one exact key in id order reads about ``limit + offset`` index rows however many
        documents match; other conditions are probed per document, and the condition matching
        fewest documents drives. A page in id order, or by one :class:`IndexOrder` (of keys, or
        of ranges in one unit), stops reading when full; when the driving condition matches
        few documents they are all read and sorted instead. A page walked by an
        :class:`IndexOrder` reads about ``limit * N / matches`` index rows (the driving
        condition's matches read once as a set when fewer than ``SET_LIMIT``, 32,768). Several
        orders, other orders, and ``total_count`` read every match.
        Sorted by one :class:`IndexOrder` whose name has key entries or range entries (not
        both), the page gives each document's position (``Page.positions``); ``after=`` one of
        them continues after it without ``offset`` (a walk seeks there in the index), and a
        write between the pages neither repeats nor skips the others. A position that does not
        fit the search is a :class:`ParameterValidationError`.
        Entries are those of the prefix's indexer; while a background reindex runs (see
        :meth:`index_status`), documents it has not reached yet match by their former entries.
        """
        orders = [order] if isinstance(order, str | IndexOrder) else list(order)
        _index_sql.order_sql(orders)  # unknown orders fail before any I/O
        if limit < 0 or offset < 0:
            raise ParameterValidationError("limit and offset must be >= 0")
        if after is not None and offset:
            raise ParameterValidationError("give after or offset, not both")
        checked = list(check_conditions(conditions))
        split = self._where(collection, where)
        if split is None:
            return Page([], 0 if total_count else None)
        checked += split[0]
        json_where = split[1]
        return await self.engine.read(
            lambda tx: _reads.query(
                tx,
                collection,
                limit,
                offset,
                ids,
                json_where,
                modified,
                orders,
                total_count,
                checked,
                after,
            )
        )

    def _where(
        self, collection: str, where: Mapping[str, Any] | None
    ) -> tuple[list[Condition], dict[str, Any] | None] | None:
        """``where`` split into index conditions and JSON-path filters (see :meth:`query`);
        ``None`` when some condition can never match."""
        spec = self.model.by_collection(collection)
        if spec is None or not where:
            return [], dict(where) if where else None
        split = where_conditions(spec.query_fields, where)
        if split is None:
            return None
        return list(split[0]), split[1] or None

    async def walk(
        self,
        collection: str,
        *,
        cursor: Cursor | None = None,
        limit: int = 25,
        where: Mapping[str, Any] | None = None,
        min_version: int | None = None,
        max_version: int | None = None,
        total_count: bool = False,
    ) -> Page[StoredDocument]:
        """One page of a keyset walk (cursor paging); ``page.next`` continues it, ``None`` once
        no row remains.

        Without ``cursor`` a walk starts: in storage-key order, or, when a change-version
        window is given, in change-version order over the documents whose ContentVersion lies
        in it. A cursor from :meth:`partitions` walks its key range (window applied to the
        ContentVersion). The cost of a page does not depend on how deep the walk is, and a key
        walk returns every document that exists throughout it exactly once, whatever is
        written meanwhile. 410 when the window starts before the oldest retained version.
        """
        if limit < 0:
            raise ParameterValidationError("limit must be >= 0")
        if cursor is not None and cursor.order not in ("key", "change"):
            raise ParameterValidationError(f"unknown cursor order {cursor.order!r}")
        split = self._where(collection, where)
        if split is None:
            return Page([], 0 if total_count else None)
        conditions, json_where = split
        return await self.engine.read(
            lambda tx: _reads.walk(
                tx,
                collection,
                cursor,
                limit,
                json_where,
                min_version,
                max_version,
                total_count,
                conditions,
            )
        )

    async def partitions(
        self,
        collection: str,
        count: int,
        *,
        where: Mapping[str, Any] | None = None,
        min_version: int | None = None,
        max_version: int | None = None,
    ) -> list[Cursor]:
        """Split the matching documents into at most ``count`` key ranges of about equal size,
        one cursor each, for walking them in parallel with :meth:`walk` (same ``where`` and
        window). Empty when nothing matches."""
        if count < 1:
            raise ParameterValidationError("count must be >= 1")
        split = self._where(collection, where)
        if split is None:
            return []
        conditions, json_where = split
        return await self.engine.read(
            lambda tx: _reads.partitions(
                tx, collection, count, json_where, min_version, max_version, conditions
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
        retained version. ``where`` as :meth:`query` takes it."""
        conditions: list[Condition] = []
        json_where: dict[str, Any] | None = dict(where) if where else None
        spec = self.model.by_collection(collection)
        if spec is not None and where:
            split = where_conditions(spec.query_fields, where)
            if split is None:
                return Page([], 0 if total_count else None)
            conditions, json_where = list(split[0]), split[1]
        return await self.engine.read(
            lambda tx: _reads.live_changes(
                tx,
                collection,
                min_version,
                max_version,
                limit,
                offset,
                json_where,
                total_count,
                conditions,
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

    # -- the search index ----------------------------------------------------------------------
    async def register_indexer(
        self, prefix: str, indexer: Indexer, *, batch: int = REINDEX_BATCH
    ) -> IndexStatus:
        """Index the documents of every collection starting with ``prefix`` (``fhir:``) with
        ``indexer`` from now on; register before writing to those collections.

        When the fingerprint recorded for ``prefix`` differs from ``indexer.fingerprint`` (a new
        indexer, new search parameters, a new model), the prefix's documents are reindexed in the
        background while writes keep indexing themselves; the returned status tells the
        progress (``await status.wait()`` until it is done). A reindex reads, indexes and
        writes ``batch`` documents per transaction. A later registration for the same prefix
        replaces this one and stops its reindex.
        """
        if batch < 1:
            raise BadRequestError("batch must be at least 1")
        self.indexes.register(prefix, indexer)
        return self._start_reindex(prefix, indexer, batch)

    def index_status(self, prefix: str) -> IndexStatus | None:
        """The indexing status of ``prefix`` (``None`` when nothing indexes it, or before
        :func:`open_store` starts indexing)."""
        return self._index_status.get(prefix)

    def _start_reindex(
        self, prefix: str, indexer: Indexer, batch: int = REINDEX_BATCH
    ) -> IndexStatus:
        previous = self._index_tasks.pop(prefix, None)
        if previous is not None:
            previous.cancel()
        status = IndexStatus(prefix, indexer.fingerprint)
        self._index_status[prefix] = status
        task = asyncio.create_task(
            ensure_indexed(self.engine, self.indexes, prefix, self.counters, status, batch),
            name=f"tidemark-reindex-{prefix}",
        )
        self._index_tasks[prefix] = task
        task.add_done_callback(
            lambda done: (
                self._index_tasks.pop(prefix, None)
                if self._index_tasks.get(prefix) is done
                else None
            )
        )
        return status

    def _start_indexing(self) -> None:
        # Check every registered prefix's fingerprint and start the reindexes it needs (in the
        # background): open_store calls it once the store is migrated.
        for prefix in self.indexes.prefixes():
            indexer = self.indexes.get(prefix)
            if indexer is not None and prefix not in self._index_status:
                self._start_reindex(prefix, indexer)

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
    migrate_model: bool = False,
) -> Store:
    """Open (creating or upgrading the schema on first use) the store at ``url``, and start
    indexing the model's query fields (in the background when the model changed: see
    :meth:`Store.index_status`).

    ``url``: a SQLite file path, ``sqlite:///path`` or ``postgresql://…``. ``model``: a loaded
    :class:`ResourceModel`, a path to an Ed-Fi ApiSchema JSON file, or ``None`` for the bundled
    sample model. Raises ``ConfigurationError`` / ``SourceUnavailableError`` on bad settings or
    an unreachable database.

    The database records the fingerprint of its model. Opening it with a different model
    raises :class:`~tidemark.core.ModelMismatchError` while it holds documents of the recorded
    one (generic collections — FHIR, sync — do not count), unless ``migrate_model`` adopts the
    new model deliberately (documents are not rewritten).
    """
    resource_model = model if isinstance(model, ResourceModel) else load_model(model)
    engine = engine_for(url)
    if isinstance(engine, PostgresEngine):
        await asyncio.to_thread(engine.open)
    try:
        await asyncio.to_thread(engine.migrate)
        await engine.write(lambda tx: check_model(tx, resource_model, migrate=migrate_model))
    except BaseException:
        await engine.close()
        raise
    log.info(
        "store opened",
        engine=engine.name,
        resources=len(resource_model),
        model=resource_model.source,
    )
    store = Store(engine, resource_model, clock)
    store._start_indexing()
    return store


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
