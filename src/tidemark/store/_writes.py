"""The write path: each write request's transaction, top to bottom, down to its SQL."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidemark.core import (
    ConflictError,
    DependentItemExistsError,
    KeyChangeNotSupportedError,
    NotFoundError,
    PreconditionFailedError,
    TidemarkError,
    UnresolvedReferenceError,
    canonical_bytes,
    content_hash,
    etag_matches,
    parse_iso_utc,
    parse_json,
    version_etag,
)

from . import _index_sql
from ._engine import RetryTransaction, Transaction
from ._ids import new_document_id
from ._index import IndexEntry
from ._indexing import Indexes
from ._model import Facts, ResolvedReference, ResourceModel, ResourceSpec, referential_id
from ._rows import DOC_COLUMNS, DocRow
from ._types import DeleteDocument, PutDocument, StoredDocument, Tombstone, WriteOutcome

#: An identity cascade longer than this is a modelling error (a cycle), not a real workload.
MAX_CASCADE_STEPS = 1_000_000


# -- the requests: one function per write, run by the engine inside one transaction ------------
def upsert(
    changes: ChangeSet, spec: ResourceSpec, facts: Facts, if_none_match: str | None
) -> WriteOutcome:
    """Ed-Fi ``POST``: update the document with the body's natural key, or insert it."""
    rid = facts.referential_id
    assert rid is not None  # model resources always have a natural key
    existing = _locked_doc_by_referential_id(changes.tx, rid)
    _check_preconditions(existing, None, if_none_match)
    if existing is None:
        return WriteOutcome(changes.insert(spec.collection, spec, facts), True, True)
    return _replace_in(changes, spec, existing, facts)


def replace(
    changes: ChangeSet,
    spec: ResourceSpec,
    id: str,
    facts: Facts,
    if_match: str | None,
    if_none_match: str | None,
) -> WriteOutcome:
    """Ed-Fi ``PUT``: replace the model document ``id``; 404 when it does not exist."""
    found = _locked_doc(changes.tx, spec.collection, id)
    _check_preconditions(found, if_match, if_none_match)
    existing = _require(found, f"{spec.resource_name} {id}")
    return _replace_in(changes, spec, existing, facts)


def put(
    changes: ChangeSet,
    collection: str,
    id: str,
    spec: ResourceSpec | None,
    facts: Facts,
    if_match: str | None,
    if_none_match: str | None,
    displace: bool = False,
) -> WriteOutcome:
    """Create or replace document ``id`` of ``collection`` (a model collection when ``spec``);
    ``displace`` as :class:`PutDocument` describes it."""
    changes.displace = displace
    existing = _locked_doc(changes.tx, collection, id)
    _check_preconditions(existing, if_match, if_none_match)
    if existing is None:
        return WriteOutcome(changes.insert(collection, spec, facts, id), True, True)
    if spec is not None:
        # A replica's write follows its source, which changed the key by its own rules.
        return _replace_in(changes, spec, existing, facts, any_identity=displace)
    changes.set_body(existing, None, facts)
    written = changes.finalize()
    if written:
        return WriteOutcome(written[0], False, True)
    return WriteOutcome(existing.document(), False, False)


def delete(
    changes: ChangeSet, collection: str, id: str, spec: ResourceSpec | None, if_match: str | None
) -> Tombstone:
    """Delete document ``id`` of ``collection``: 404 when absent, 412 on a failed ``If-Match``,
    409 when referenced."""
    found = _locked_doc(changes.tx, collection, id)
    _check_preconditions(found, if_match, None)
    row = _require(found, f"{spec.resource_name if spec else collection} {id}")
    return changes.delete(row, spec)


def write_many(
    changes: ChangeSet,
    operations: Sequence[tuple[PutDocument | DeleteDocument, ResourceSpec | None, Facts | None]],
    first: int = 0,
) -> list[WriteOutcome | Tombstone]:
    """Several puts and deletes in one transaction, in order, each seeing the ones before it.

    Each operation gets a change set of its own (a change set is finalised once) sharing the
    transaction and its stamp. An error names the failing operation's index (counted from
    ``first``) in ``error.data["operation"]`` and, raised through the engine, rolls back every
    operation.
    """
    results: list[WriteOutcome | Tombstone] = []
    for index, (operation, spec, facts) in enumerate(operations, start=first):
        step = changes.fork()
        try:
            if isinstance(operation, DeleteDocument):
                results.append(
                    delete(step, operation.collection, operation.id, spec, operation.if_match)
                )
            else:
                assert facts is not None
                results.append(
                    put(
                        step,
                        operation.collection,
                        operation.id,
                        spec,
                        facts,
                        operation.if_match,
                        operation.if_none_match,
                        operation.displace,
                    )
                )
        except TidemarkError as error:
            error.data.setdefault("operation", index)
            raise
        except RetryTransaction as retry:
            if isinstance(retry.error, TidemarkError):
                retry.error.data.setdefault("operation", index)
            raise
        finally:
            changes.allocated += step.allocated
            changes.journaled += step.journaled
    return results


def _replace_in(
    changes: ChangeSet,
    spec: ResourceSpec,
    existing: DocRow,
    facts: Facts,
    *,
    any_identity: bool = False,
) -> WriteOutcome:
    if facts.text == existing.body_text:
        return WriteOutcome(_unchanged(existing, facts.body), False, False)  # a no-op
    may_change = any_identity or spec.allow_identity_updates
    changes.set_body(existing, spec, facts, identity_may_change=may_change)
    changes.cascade()
    for document in changes.finalize():
        if document.id == existing.id and document.collection == existing.collection:
            return WriteOutcome(document, False, True)
    return WriteOutcome(existing.document(), False, False)


def _unchanged(row: DocRow, body: dict[str, Any]) -> StoredDocument:
    """``row`` as stored, carrying ``body``: the client's body, equal to the stored one (a no-op
    write answers with the body as sent, and does not parse the stored text)."""
    return StoredDocument(
        collection=row.collection,
        id=row.id,
        body=body,
        content_version=int(row.content_version),
        content_last_modified_at=parse_iso_utc(row.content_modified_at),
        identity_version=int(row.identity_version),
        identity_last_modified_at=parse_iso_utc(row.identity_modified_at),
        content_hash=row.content_hash,
        created_at=parse_iso_utc(row.created_at),
    )


# -- the document a request writes: locked, and checked against its preconditions ---------------
def _locked_doc(tx: Transaction, collection: str, id: str) -> DocRow | None:
    """The document ``(collection, id)``, locked for update."""
    row = tx.query_one(
        f"SELECT {DOC_COLUMNS} FROM documents WHERE collection = ? AND id = ?" + tx.for_update,
        (collection, id),
    )
    return DocRow.from_row(row) if row else None


def _locked_doc_by_referential_id(tx: Transaction, rid: str) -> DocRow | None:
    """The document that answers to a natural key (referential id), locked for update."""
    row = tx.query_one(
        f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_pk = "
        "(SELECT doc_pk FROM reference_targets WHERE referential_id = ?)" + tx.for_update,
        (rid,),
    )
    return DocRow.from_row(row) if row else None


def _check_preconditions(
    current: DocRow | None, if_match: str | None, if_none_match: str | None
) -> None:
    """Apply ``If-Match`` / ``If-None-Match`` to a write; raise 412 when one fails."""
    if if_match is None and if_none_match is None:
        return
    tag = version_etag(current.content_version) if current is not None else None
    try:
        if if_match is not None and not etag_matches(if_match, tag):
            raise PreconditionFailedError("The item has been modified by another user.")
        if if_none_match is not None and etag_matches(if_none_match, tag):
            raise PreconditionFailedError(
                "The item already exists."
                if if_none_match.strip() == "*"
                else "The item has not changed."
            )
    except ValueError as exc:
        raise PreconditionFailedError(f"Malformed precondition header: {exc}") from exc


def _require(row: DocRow | None, what: str) -> DocRow:
    """``row``, or a 404 naming ``what``."""
    if row is None:
        raise NotFoundError(f"{what} was not found.")
    return row


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


# -- the documents one transaction changes -----------------------------------------------------
@dataclass(slots=True)
class _Touched:
    """A document this transaction changes: its stored row and its state so far.

    ``body`` stays ``None`` while the stored body is unchanged (it is parsed only if needed);
    ``text`` is its canonical text when already known; ``reference_ids`` is read from
    ``document_references`` the first time it is needed; ``index`` holds the new body's index
    entries when they were computed before the transaction.
    """

    row: DocRow
    spec: ResourceSpec | None
    body: dict[str, Any] | None = None
    text: str | None = None
    referential_id: str | None = None
    key_values: str | None = None
    reference_ids: set[str] | None = None
    index: frozenset[IndexEntry] | None = None

    def current_body(self) -> dict[str, Any]:
        if self.body is None:
            self.body = parse_json(self.row.body_text)
        return self.body


class ChangeSet:
    """The documents one transaction changes. Use once: set bodies, :meth:`cascade`, :meth:`finalize`.

    Each document is kept with its original state, whether the request changes it directly or
    through an identity cascade. References and natural-key aliases are updated as soon as a body
    changes (later cascade steps must find them), while stamps are written once per document in
    :meth:`finalize`, so a document reached twice in one cascade gets one new change version, and
    a change followed by its reversal allocates nothing. Journal, history and key-change rows are
    written by database triggers whenever stamps move (see ``_migrations``). Search-index
    entries are written with the document: all on insert, the differences from the stored ones
    when a body changes (computed here only for bodies rewritten by a cascade), none left on
    delete.
    """

    def __init__(
        self,
        tx: Transaction,
        model: ResourceModel | None,
        now: str,
        moment: datetime | None = None,
        indexes: Indexes | None = None,
    ) -> None:
        """``now`` is the stamp text of this transaction; ``moment`` the same instant, parsed;
        ``indexes`` the store's indexers."""
        self.tx = tx
        self.model = model
        self.indexes = indexes
        self.now = now
        self._now_parsed = moment if moment is not None else parse_iso_utc(now)
        self._touched: dict[int, _Touched] = {}
        self._queue: deque[tuple[ResourceSpec, dict[str, Any], dict[str, Any]]] = deque()
        #: Change versions allocated and representation changes (journal rows) written so far.
        self.allocated = 0
        self.journaled = 0
        #: Whether a natural key held by another document is taken from it (see ``PutDocument``).
        self.displace = False

    @property
    def moment(self) -> datetime:
        """This transaction's stamp, parsed."""
        return self._now_parsed

    def fork(self) -> ChangeSet:
        """A fresh change set in the same transaction, with the same stamp."""
        return ChangeSet(self.tx, self.model, self.now, self._now_parsed)

    def _allocate(self) -> int:
        self.allocated += 1
        return self.tx.allocate_version()

    # -- references ------------------------------------------------------------------------------
    def _link_references(self, pk: int, references: dict[str, ResolvedReference]) -> None:
        """Record ``pk``'s references, raising 409 naming every one whose target does not exist.

        One statement checks and inserts: only references to existing targets are inserted
        (share-locked on PostgreSQL so a concurrent delete waits for us), and any difference
        between what was asked and what was inserted is a missing target.
        """
        wanted = sorted(references)
        linked = 0
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            linked += self.tx.execute(
                "INSERT INTO document_references (referrer_pk, referential_id) "
                "SELECT ?, referential_id FROM reference_targets "
                f"WHERE referential_id IN ({_placeholders(len(chunk))}){self.tx.for_share}",
                [pk, *chunk],
            )
        if linked == len(wanted):
            return
        found = {
            row[0]
            for row in self.tx.query(
                f"SELECT referential_id FROM document_references WHERE referrer_pk = ? "
                f"AND referential_id IN ({_placeholders(len(wanted))})",
                [pk, *wanted],
            )
        }
        missing = [references[rid] for rid in wanted if rid not in found]
        if missing:
            names = sorted({ref.target for ref in missing})
            problems: dict[str, list[str]] = {}
            for ref in missing:
                problems.setdefault(ref.location, []).append(
                    f"The referenced {ref.target} item does not exist ({ref.describe()})."
                )
            raise UnresolvedReferenceError(
                "The referenced " + ", ".join(f"'{n}'" for n in names) + " item(s) do not exist.",
                validation_errors=problems,
                data={
                    "unresolved": [
                        {"resource": r.target, "location": r.location, "identity": r.identity}
                        for r in missing
                    ]
                },
            )

    def _claim_aliases(
        self, spec: ResourceSpec, facts: Facts, pk: int, *, inserting: bool = False
    ) -> None:
        """Register the natural keys of ``pk``; 409 when another document already has one.

        When a new document (``inserting``) finds its own natural key taken, another transaction
        inserted the same key concurrently (we looked it up first): the transaction is retried,
        and the retry finds that document and updates it, as an upsert must.
        """
        rids = facts.alias_ids
        values = ", ".join("(?, ?)" for _ in rids)
        params: list[Any] = []
        for rid in rids:
            params += [rid, pk]
        inserted = self.tx.execute(
            f"INSERT INTO reference_targets (referential_id, doc_pk) VALUES {values} ON CONFLICT DO NOTHING",
            params,
        )
        if inserted == len(rids):
            return
        # Some natural key is taken: find which (rare, so the extra query is fine).
        owners: dict[str, int] = dict(
            self.tx.query(
                f"SELECT referential_id, doc_pk FROM reference_targets WHERE referential_id IN ({_placeholders(len(rids))})",
                rids,
            )
        )
        if self.displace:
            self._displace({owner for owner in owners.values() if owner != pk})
            self.tx.execute(
                f"INSERT INTO reference_targets (referential_id, doc_pk) VALUES {values} ON CONFLICT DO NOTHING",
                params,
            )
            return
        clash = [
            name for name, rid in zip(facts.alias_names, rids, strict=True) if owners.get(rid) != pk
        ]
        conflict = ConflictError(
            f"A {', '.join(clash)} with the same identity already exists.",
            data={"identity": facts.identity},
        )
        if inserting and owners.get(rids[0]) != pk:
            raise RetryTransaction(conflict)
        raise conflict

    def _release_aliases(
        self, pk: int, spec: ResourceSpec, identity: dict[str, Any], held: str | None
    ) -> list[str]:
        """Delete the natural-key rows of document ``pk``, whose body has ``identity`` and whose
        own key is ``held``; returns their referential ids.

        The rows are found by key (no index by document is kept: every write would pay for it),
        computed from the identity as they were claimed. Should that give another own key or no
        row (a store written under other naming rules), every row of ``pk`` is found by a scan.
        """
        rids = [referential_id(p, n, i) for p, n, i in spec.aliases(identity)]
        if rids and rids[0] == held:
            gone = self.tx.query(
                f"DELETE FROM reference_targets WHERE referential_id IN ({_placeholders(len(rids))}) "
                "AND doc_pk = ? RETURNING referential_id",
                [*rids, pk],
            )
            if gone:
                return [r[0] for r in gone]
        rows = self.tx.query(
            "DELETE FROM reference_targets WHERE doc_pk = ? RETURNING referential_id", (pk,)
        )
        return [r[0] for r in rows]

    # -- inserts ---------------------------------------------------------------------------------
    def insert(
        self, collection: str, spec: ResourceSpec | None, facts: Facts, id: str | None = None
    ) -> StoredDocument:
        """Insert a new document (the caller checked that its id and natural key are free)."""
        text = facts.text
        digest = content_hash(text)
        version = self._allocate()
        doc_id = id or new_document_id()
        pk = self.tx.insert_id(
            "INSERT INTO documents (collection, id, body, content_hash, key_values, content_version, "
            "content_modified_at, identity_version, identity_modified_at, created_at, referential_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                collection,
                doc_id,
                text,
                digest,
                facts.key_values,
                version,
                self.now,
                version,
                self.now,
                self.now,
                facts.referential_id,
            ),
        )
        entries = facts.index
        if entries is None and self.indexes is not None:
            entries = self.indexes.entries_for(collection, facts.body)
        if entries:
            _index_sql.insert_entries(self.tx, collection, pk, entries)
        if spec is not None:
            self._claim_aliases(spec, facts, pk, inserting=True)
            if facts.references:
                self._link_references(pk, facts.references)
        self.journaled += 1
        return self._document(
            collection, doc_id, facts.body, digest, version, version, self.now, self.now
        )

    def _document(
        self,
        collection: str,
        id: str,
        body: dict[str, Any],
        digest: str,
        version: int,
        identity_version: int,
        identity_at: str,
        created_at: str,
    ) -> StoredDocument:
        now = self._now_parsed
        return StoredDocument(
            collection=collection,
            id=id,
            body=body,
            content_version=version,
            content_last_modified_at=now,
            identity_version=identity_version,
            identity_last_modified_at=now
            if identity_at == self.now
            else parse_iso_utc(identity_at),
            content_hash=digest,
            created_at=now if created_at == self.now else parse_iso_utc(created_at),
        )

    # -- updates ---------------------------------------------------------------------------------
    def _working(self, row: DocRow, spec: ResourceSpec | None) -> _Touched:
        touched = self._touched.get(row.pk)
        if touched is None:
            touched = _Touched(
                row, spec, referential_id=row.referential_id, key_values=row.key_values_text
            )
            self._touched[row.pk] = touched
        return touched

    def set_body(
        self,
        row: DocRow,
        spec: ResourceSpec | None,
        after: Facts,
        *,
        identity_may_change: bool = True,
    ) -> None:
        """Give ``row`` the body of ``after``. Updates its references and aliases now; queues the
        cascade when its identity changed; stamps it in :meth:`finalize`.

        Raises :class:`KeyChangeNotSupportedError` when the identity changes and
        ``identity_may_change`` is false (a direct write to a resource without identity updates).
        """
        touched = self._working(row, spec)
        touched.index = after.index
        if spec is None:
            touched.body, touched.text = after.body, after.text
            return
        identity_changed = after.referential_id != touched.referential_id
        if identity_changed and not identity_may_change:
            raise KeyChangeNotSupportedError(
                f"Identifying values for the {spec.resource_name} resource cannot be changed. "
                "Delete and recreate the resource item instead.",
            )
        old_identity = spec.identity(touched.current_body()) if identity_changed else None
        old_rid = touched.referential_id
        if touched.reference_ids is None:
            touched.reference_ids = {
                r[0]
                for r in self.tx.query(
                    "SELECT referential_id FROM document_references WHERE referrer_pk = ?",
                    (row.pk,),
                )
            }
        removed = sorted(touched.reference_ids - after.references.keys())
        added = {
            rid: ref for rid, ref in after.references.items() if rid not in touched.reference_ids
        }
        if removed:
            self.tx.executemany(
                "DELETE FROM document_references WHERE referrer_pk = ? AND referential_id = ?",
                [(row.pk, rid) for rid in removed],
            )
        if added:
            self._link_references(row.pk, added)
        touched.body, touched.text, touched.key_values, touched.referential_id = (
            after.body,
            after.text,
            after.key_values,
            after.referential_id,
        )
        touched.reference_ids = set(after.references)
        if old_identity is not None:
            self._release_aliases(row.pk, spec, old_identity, old_rid)
            self._claim_aliases(spec, after, row.pk)
            self._queue.append((spec, old_identity, after.identity))

    def cascade(self) -> None:
        """Propagate queued identity changes to every referrer, recursively."""
        steps = 0
        while self._queue:
            spec, old_identity, new_identity = self._queue.popleft()
            for (project, name, old_alias), (_p, _n, new_alias) in zip(
                spec.aliases(old_identity), spec.aliases(new_identity), strict=True
            ):
                if old_alias == new_alias:
                    continue
                referrers = self.tx.query(
                    f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_pk IN "
                    "(SELECT referrer_pk FROM document_references WHERE referential_id = ?) ORDER BY doc_pk"
                    + self.tx.for_update,
                    (referential_id(project, name, old_alias),),
                )
                for raw in referrers:
                    steps += 1
                    if steps > MAX_CASCADE_STEPS:
                        raise ConflictError("identity cascade did not converge")
                    row = DocRow.from_row(raw)
                    known = self._touched.get(row.pk)
                    referrer = (
                        known.spec
                        if known
                        else (self.model.by_collection(row.collection) if self.model else None)
                    )
                    if referrer is None:
                        continue
                    working = self._working(row, referrer)
                    body = parse_json(
                        canonical_bytes(working.current_body())
                    )  # a private copy to rewrite
                    if referrer.rewrite_references(body, (project, name), old_alias, new_alias):
                        self.set_body(working.row, referrer, Facts.of(referrer, body))

    def finalize(self) -> list[StoredDocument]:
        """Stamp every changed document once (the triggers add journal, history, key changes).

        Returns the new state of each document whose representation changed, in the order the
        documents were first touched.
        """
        written: list[StoredDocument] = []
        for touched in self._touched.values():
            row = touched.row
            if touched.body is None:
                continue
            text = touched.text or canonical_bytes(touched.body).decode()
            if text == row.body_text:
                continue  # changed and changed back: nothing to record
            version = self._allocate()
            digest = content_hash(text)
            identity_changed = touched.referential_id != row.referential_id
            identity_version = version if identity_changed else int(row.identity_version)
            identity_at = self.now if identity_changed else row.identity_modified_at
            self.tx.execute(
                "UPDATE documents SET body = ?, content_hash = ?, key_values = ?, content_version = ?, "
                "content_modified_at = ?, identity_version = ?, identity_modified_at = ?, referential_id = ? "
                "WHERE doc_pk = ?",
                (
                    text,
                    digest,
                    touched.key_values,
                    version,
                    self.now,
                    identity_version,
                    identity_at,
                    touched.referential_id,
                    row.pk,
                ),
            )
            self._reindex(touched)
            self.journaled += 1
            written.append(
                self._document(
                    row.collection,
                    row.id,
                    touched.body,
                    digest,
                    version,
                    identity_version,
                    identity_at,
                    row.created_at,
                )
            )
        return written

    def _reindex(self, touched: _Touched) -> None:
        """Write the differences between the stored index entries of a changed document and
        those of its new body."""
        collection = touched.row.collection
        entries = touched.index
        if entries is None:
            if self.indexes is None or touched.body is None:
                return
            entries = self.indexes.entries_for(collection, touched.body)
            if entries is None:
                return  # a collection no indexer covers
        _index_sql.replace_entries(self.tx, collection, touched.row.pk, entries)

    def _displace(self, owners: set[int]) -> None:
        """Delete the documents ``owners`` whose natural keys a displacing write takes over; the
        references to those keys stay, and resolve to the new holder."""
        for owner in sorted(owners):
            raw = self.tx.query_one(
                f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_pk = ?" + self.tx.for_update,
                (owner,),
            )
            if raw is None:
                continue
            row = DocRow.from_row(raw)
            spec = self.model.by_collection(row.collection) if self.model is not None else None
            self.delete(row, spec, keep_referrers=True)

    # -- deletes ---------------------------------------------------------------------------------
    def _resource_name(self, collection: str) -> str:
        spec = self.model.by_collection(collection) if self.model is not None else None
        return spec.resource_name if spec is not None else collection

    def delete(
        self, row: DocRow, spec: ResourceSpec | None, *, keep_referrers: bool = False
    ) -> Tombstone:
        """Delete ``row``: 409 when referenced (unless ``keep_referrers``: another document takes
        its keys in this transaction); leaves a tombstone and a final history entry."""
        own_rid = None
        if spec is not None:
            # Remove (and so lock) our natural-key rows first: a concurrent writer that wants to
            # reference us then waits for our outcome instead of racing the referrer check.
            touched = self._touched.get(row.pk)
            body = touched.current_body() if touched else parse_json(row.body_text)
            held = touched.referential_id if touched else row.referential_id
            rids = self._release_aliases(row.pk, spec, spec.identity(body), held)
            if rids and not keep_referrers:
                referrers = self.tx.query(
                    "SELECT d.collection, count(*) FROM document_references r JOIN documents d ON d.doc_pk = r.referrer_pk "
                    f"WHERE r.referential_id IN ({_placeholders(len(rids))}) AND r.referrer_pk <> ? "
                    "GROUP BY d.collection ORDER BY d.collection",
                    [*rids, row.pk],
                )
                if referrers:
                    names = [self._resource_name(c) for c, _n in referrers]
                    raise DependentItemExistsError(
                        "The requested action cannot be performed because this item is referenced by existing "
                        + ", ".join(f"'{n}'" for n in names)
                        + " item(s).",
                        data={"referencedBy": {c: int(n) for c, n in referrers}},
                    )
            self.tx.execute("DELETE FROM document_references WHERE referrer_pk = ?", (row.pk,))
            own_rid = row.referential_id
        version = self._allocate()
        self.tx.execute("DELETE FROM documents WHERE doc_pk = ?", (row.pk,))
        _index_sql.delete_entries(self.tx, row.pk)
        self.tx.execute(
            "INSERT INTO tombstones (change_version, collection, id, referential_id, key_values, "
            "last_content_version, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                version,
                row.collection,
                row.id,
                own_rid,
                row.key_values_text,
                row.content_version,
                self.now,
            ),
        )
        self.tx.execute(
            "INSERT INTO history (collection, id, body, content_version, valid_from, valid_to, superseded_by, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.collection,
                row.id,
                row.body_text,
                row.content_version,
                row.content_modified_at,
                self.now,
                version,
                True,
            ),
        )
        return Tombstone(
            collection=row.collection,
            id=row.id,
            change_version=version,
            deleted_at=parse_iso_utc(self.now),
            key_values=parse_json(row.key_values_text) if row.key_values_text else None,
            last_content_version=int(row.content_version),
        )
