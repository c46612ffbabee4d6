"""The write path: everything that happens inside one store transaction.

A :class:`ChangeSet` collects the documents a request changes — directly or through an identity
cascade — keeping each one's original state. References and natural-key aliases are updated as
soon as a body changes (later cascade steps must find them), while stamps, journal, history and
key-change rows are written once per document in :meth:`ChangeSet.finalize`, so a document
reached twice in one cascade gets one new change version, and a change followed by its reversal
allocates nothing.
"""

from __future__ import annotations

import copy
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tidemark.core import (
    ConflictError,
    DependentItemExistsError,
    NotFoundError,
    PreconditionFailedError,
    UnresolvedReferenceError,
    canonical_bytes,
    content_hash,
    etag_matches,
    parse_iso_utc,
    parse_json,
    version_etag,
)

from ._engine import Transaction
from ._model import ResourceModel, ResourceSpec, referential_id
from ._types import HistoryEntry, StoredDocument, Tombstone

DOC_COLUMNS = (
    "doc_pk, collection, id, body, content_hash, key_values, content_version, "
    "content_modified_at, identity_version, identity_modified_at, created_at"
)

#: An identity cascade longer than this is a modelling error (a cycle), not a real workload.
MAX_CASCADE_STEPS = 1_000_000


@dataclass(slots=True)
class DocRow:
    """One ``documents`` row as read inside a transaction."""

    pk: int
    collection: str
    id: str
    body_text: str
    content_hash: str
    key_values_text: str | None
    content_version: int
    content_modified_at: str
    identity_version: int
    identity_modified_at: str
    created_at: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> DocRow:
        return cls(*row)

    def document(self) -> StoredDocument:
        return StoredDocument(
            collection=self.collection,
            id=self.id,
            body=parse_json(self.body_text),
            content_version=int(self.content_version),
            content_last_modified_at=parse_iso_utc(self.content_modified_at),
            identity_version=int(self.identity_version),
            identity_last_modified_at=parse_iso_utc(self.identity_modified_at),
            content_hash=self.content_hash,
            created_at=parse_iso_utc(self.created_at),
        )


def check_preconditions(
    current: DocRow | None, if_match: str | None, if_none_match: str | None
) -> None:
    """Apply ``If-Match`` / ``If-None-Match`` to a write; raise 412 when one fails."""
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


def select_doc(tx: Transaction, collection: str, id: str, *, lock: bool = False) -> DocRow | None:
    """The document ``(collection, id)``, locked for update when ``lock``."""
    row = tx.query_one(
        f"SELECT {DOC_COLUMNS} FROM documents WHERE collection = ? AND id = ?"
        + (tx.for_update if lock else ""),
        (collection, id),
    )
    return DocRow.from_row(row) if row else None


def select_doc_by_referential_id(tx: Transaction, rid: str, *, lock: bool = False) -> DocRow | None:
    """The document that answers to a natural key (referential id)."""
    row = tx.query_one(
        f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_pk = "
        "(SELECT doc_pk FROM reference_targets WHERE referential_id = ?)"
        + (tx.for_update if lock else ""),
        (rid,),
    )
    return DocRow.from_row(row) if row else None


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


@dataclass(slots=True)
class _Touched:
    row: DocRow
    spec: ResourceSpec | None
    original_body: dict[str, Any]
    body: dict[str, Any]


class ChangeSet:
    """The documents one transaction changes. Use once: set bodies, :meth:`cascade`, :meth:`finalize`."""

    def __init__(self, tx: Transaction, model: ResourceModel | None, now: str) -> None:
        self.tx = tx
        self.model = model
        self.now = now
        self._touched: dict[int, _Touched] = {}
        self._queue: deque[tuple[ResourceSpec, dict[str, Any], dict[str, Any]]] = deque()

    # -- references ----------------------------------------------------------------------------
    def check_references_exist(
        self, spec: ResourceSpec, body: dict[str, Any], only: set[str] | None = None
    ) -> set[str]:
        """Raise 409 naming every reference (documents and descriptors) that does not resolve.

        Returns the referential ids of the body's references. On PostgreSQL the targets are
        share-locked so that a concurrent delete cannot remove them before commit.
        """
        refs = spec.resolve_references(body)
        rids = {ref.referential_id for ref in refs}
        wanted = sorted(rids if only is None else rids & only)
        if not wanted:
            return rids
        lock = " FOR SHARE" if self.tx.engine_name == "postgresql" else ""
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(
                r[0]
                for r in self.tx.query(
                    f"SELECT referential_id FROM reference_targets WHERE referential_id IN ({_placeholders(len(chunk))})"
                    + lock,
                    chunk,
                )
            )
        missing = [ref for ref in refs if ref.referential_id in set(wanted) - found]
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
        return rids

    def _claim_aliases(self, spec: ResourceSpec, identity: dict[str, Any], pk: int) -> None:
        rids = spec.referential_ids(identity)
        taken = self.tx.query(
            f"SELECT referential_id, doc_pk FROM reference_targets WHERE referential_id IN ({_placeholders(len(rids))})",
            rids,
        )
        clash = [rid for rid, owner in taken if owner != pk]
        if clash:
            names = [
                name
                for (_p, name, _i), rid in zip(spec.aliases(identity), rids, strict=True)
                if rid in clash
            ]
            raise ConflictError(
                f"A {', '.join(names)} with the same identity already exists.",
                data={"identity": identity},
            )
        self.tx.executemany(
            "INSERT INTO reference_targets (referential_id, doc_pk) VALUES (?, ?)",
            [(rid, pk) for rid in rids if rid not in {r for r, _ in taken}],
        )

    # -- inserts -------------------------------------------------------------------------------
    def insert(
        self,
        collection: str,
        spec: ResourceSpec | None,
        body: dict[str, Any],
        id: str | None = None,
    ) -> StoredDocument:
        """Insert a new document (no existing row with this id or natural key)."""
        text = canonical_bytes(body).decode()
        digest = content_hash(text)
        key_values = None
        refs: set[str] = set()
        identity: dict[str, Any] = {}
        if spec is not None:
            identity = spec.identity(body)
            key_values = canonical_bytes(spec.key_values(body)).decode()
            refs = self.check_references_exist(spec, body)
        version = self.tx.allocate_version()
        doc_id = id or uuid.uuid4().hex
        row = self.tx.query_one(
            "INSERT INTO documents (collection, id, body, content_hash, key_values, content_version, "
            "content_modified_at, identity_version, identity_modified_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING doc_pk",
            (
                collection,
                doc_id,
                text,
                digest,
                key_values,
                version,
                self.now,
                version,
                self.now,
                self.now,
            ),
        )
        assert row is not None
        pk = int(row[0])
        if spec is not None:
            self._claim_aliases(spec, identity, pk)
            if refs:
                self.tx.executemany(
                    "INSERT INTO document_references (referrer_pk, referential_id) VALUES (?, ?)",
                    [(pk, rid) for rid in sorted(refs)],
                )
        self.tx.execute(
            "INSERT INTO journal (change_version, collection, doc_pk, recorded_at) VALUES (?, ?, ?, ?)",
            (version, collection, pk, self.now),
        )
        return DocRow(
            pk,
            collection,
            doc_id,
            text,
            digest,
            key_values,
            version,
            self.now,
            version,
            self.now,
            self.now,
        ).document()

    # -- updates -------------------------------------------------------------------------------
    def _working(self, row: DocRow, spec: ResourceSpec | None) -> _Touched:
        touched = self._touched.get(row.pk)
        if touched is None:
            original = parse_json(row.body_text)
            touched = _Touched(row, spec, original, copy.deepcopy(original))
            self._touched[row.pk] = touched
        return touched

    def set_body(self, row: DocRow, spec: ResourceSpec | None, body: dict[str, Any]) -> None:
        """Give ``row`` a new body. Updates its references and aliases now; queues the cascade
        when its identity changed; stamps it in :meth:`finalize`."""
        touched = self._working(row, spec)
        previous = touched.body
        touched.body = body
        if spec is None:
            return
        old_refs = {r.referential_id for r in spec.resolve_references(previous)}
        new_refs = {r.referential_id for r in spec.resolve_references(body)}
        self.check_references_exist(spec, body, only=new_refs - old_refs)
        removed, added = sorted(old_refs - new_refs), sorted(new_refs - old_refs)
        if removed:
            self.tx.executemany(
                "DELETE FROM document_references WHERE referrer_pk = ? AND referential_id = ?",
                [(row.pk, rid) for rid in removed],
            )
        if added:
            self.tx.executemany(
                "INSERT INTO document_references (referrer_pk, referential_id) VALUES (?, ?)",
                [(row.pk, rid) for rid in added],
            )
        old_identity, new_identity = spec.identity(previous), spec.identity(body)
        if old_identity != new_identity:
            self.tx.execute("DELETE FROM reference_targets WHERE doc_pk = ?", (row.pk,))
            self._claim_aliases(spec, new_identity, row.pk)
            self._queue.append((spec, old_identity, new_identity))

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
                old_rid = referential_id(project, name, old_alias)
                referrers = self.tx.query(
                    f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_pk IN "
                    "(SELECT referrer_pk FROM document_references WHERE referential_id = ?) ORDER BY doc_pk"
                    + self.tx.for_update,
                    (old_rid,),
                )
                for raw in referrers:
                    steps += 1
                    if steps > MAX_CASCADE_STEPS:
                        raise ConflictError("identity cascade did not converge")
                    row = DocRow.from_row(raw)
                    known = self._touched.get(row.pk)
                    referrer_spec = (
                        known.spec
                        if known
                        else (self.model.by_collection(row.collection) if self.model else None)
                    )
                    if referrer_spec is None:
                        continue
                    working = self._working(row, referrer_spec)
                    body = copy.deepcopy(working.body)
                    if referrer_spec.rewrite_references(
                        body, (project, name), old_alias, new_alias
                    ):
                        self.set_body(working.row, referrer_spec, body)

    def finalize(self) -> list[StoredDocument]:
        """Stamp every changed document once; write journal, history and key-change rows.

        Returns the new state of each document whose representation changed, in the order the
        documents were first touched.
        """
        written: list[StoredDocument] = []
        for touched in self._touched.values():
            row, spec = touched.row, touched.spec
            text = canonical_bytes(touched.body).decode()
            if text == row.body_text:
                continue  # changed and changed back: nothing to record
            version = self.tx.allocate_version()
            digest = content_hash(text)
            identity_changed = spec is not None and spec.identity(
                touched.original_body
            ) != spec.identity(touched.body)
            key_values = (
                canonical_bytes(spec.key_values(touched.body)).decode()
                if spec is not None
                else None
            )
            identity_version = version if identity_changed else row.identity_version
            identity_at = self.now if identity_changed else row.identity_modified_at
            self.tx.execute(
                "UPDATE documents SET body = ?, content_hash = ?, key_values = ?, content_version = ?, "
                "content_modified_at = ?, identity_version = ?, identity_modified_at = ? WHERE doc_pk = ?",
                (
                    text,
                    digest,
                    key_values,
                    version,
                    self.now,
                    identity_version,
                    identity_at,
                    row.pk,
                ),
            )
            self.tx.execute(
                "INSERT INTO journal (change_version, collection, doc_pk, recorded_at) VALUES (?, ?, ?, ?)",
                (version, row.collection, row.pk, self.now),
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
                    False,
                ),
            )
            if identity_changed and spec is not None:
                self.tx.execute(
                    "INSERT INTO key_changes (change_version, collection, doc_pk, id, old_key_values, new_key_values, changed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        version,
                        row.collection,
                        row.pk,
                        row.id,
                        canonical_bytes(spec.key_values(touched.original_body)).decode(),
                        key_values,
                        self.now,
                    ),
                )
            written.append(
                DocRow(
                    row.pk,
                    row.collection,
                    row.id,
                    text,
                    digest,
                    key_values,
                    version,
                    self.now,
                    identity_version,
                    identity_at,
                    row.created_at,
                ).document()
            )
        return written

    # -- deletes -------------------------------------------------------------------------------
    def _resource_name(self, collection: str) -> str:
        spec = self.model.by_collection(collection) if self.model is not None else None
        return spec.resource_name if spec is not None else collection

    def delete(self, row: DocRow, spec: ResourceSpec | None) -> Tombstone:
        """Delete ``row``: 409 when referenced; leaves a tombstone and a final history entry."""
        if spec is not None:
            # Lock (by deleting) our natural-key rows first: a concurrent writer that wants to
            # reference us then waits for our outcome instead of racing the referrer check.
            rids = [
                r[0]
                for r in self.tx.query(
                    "SELECT referential_id FROM reference_targets WHERE doc_pk = ?", (row.pk,)
                )
            ]
            self.tx.execute("DELETE FROM reference_targets WHERE doc_pk = ?", (row.pk,))
            if rids:
                referrers = self.tx.query(
                    "SELECT d.collection, count(*) FROM document_references r JOIN documents d ON d.doc_pk = r.referrer_pk "
                    f"WHERE r.referential_id IN ({_placeholders(len(rids))}) AND r.referrer_pk <> ? GROUP BY d.collection ORDER BY d.collection",
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
        version = self.tx.allocate_version()
        own_rid = None
        if spec is not None:
            own_rid = spec.referential_ids(spec.identity(parse_json(row.body_text)))[0]
        self.tx.execute("DELETE FROM documents WHERE doc_pk = ?", (row.pk,))
        self.tx.execute(
            "INSERT INTO tombstones (change_version, collection, id, referential_id, key_values, last_content_version, deleted_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
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


def require(row: DocRow | None, what: str) -> DocRow:
    """``row``, or a 404 naming ``what``."""
    if row is None:
        raise NotFoundError(f"{what} was not found.")
    return row


def history_entries(rows: Iterable[tuple[Any, ...]]) -> list[HistoryEntry]:
    """Rows ``(collection, id, body, content_version, valid_from, valid_to, superseded_by, deleted)``."""
    return [
        HistoryEntry(
            collection=c,
            id=i,
            body=parse_json(b),
            content_version=int(v),
            valid_from=parse_iso_utc(f),
            valid_to=parse_iso_utc(t),
            superseded_by=int(s),
            deleted=bool(d),
        )
        for c, i, b, v, f, t, s, d in rows
    ]
