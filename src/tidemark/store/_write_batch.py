"""Consecutive upserts of one group commit run together: a few multi-row statements for all.

The SQLite writer commits the writes queued while it was busy as one transaction. Run one by
one, each upsert costs 5-7 statements and their Python; run here, a run of upserts costs one
lookup of every natural key and reference it names, one statement per table for its inserts,
one per table for its updates. Only plain writes are taken: :func:`upsert_many` stops at the
first request that could fail or needs more than an insert or an update of its own document
(a precondition, a natural key seen earlier in the run, an identity change, a reference or
natural key that does not resolve), and the engine runs that one through the one-by-one path,
so outcomes, change versions and errors are those of the writes run in order.

``Store.write_many`` sends its runs of plain puts of model documents here too (on SQLite): a put
names its document's id, and a put whose id is taken by another natural key (an identity
change) or whose natural key another id holds (a displacement) is left to the one-by-one path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidemark.core import content_hash, parse_iso_utc

from . import _index_sql
from ._engine import Transaction
from ._ids import new_document_id
from ._index import IndexEntry
from ._indexing import Indexes
from ._model import Facts, ResourceSpec
from ._rows import DOC_COLUMNS, DocRow
from ._types import StoredDocument, WriteOutcome
from ._writes import _unchanged

#: Parameters per lookup statement, and rows per multi-row insert (well under SQLite's limit).
_LOOKUP_CHUNK = 500
_ROWS_CHUNK = 80


@dataclass(slots=True)
class UpsertRequest:
    """One ``Store.upsert``: its resource, its body's facts and its ``If-None-Match``; or, with
    ``id``, one put of ``Store.write_many`` (the document's id, no preconditions)."""

    spec: ResourceSpec
    facts: Facts
    if_none_match: str | None
    id: str | None = None


@dataclass(slots=True)
class UpsertDone:
    """The outcome of one request, with the change versions and journal rows it took."""

    outcome: WriteOutcome
    allocated: int
    journaled: int


@dataclass(slots=True)
class _Plan:
    request: UpsertRequest
    row: DocRow | None  # the stored document (None: an insert)
    pk: int = 0
    id: str = ""
    digest: str = ""
    version: int = 0
    changed: bool = True
    added: Sequence[str] = ()
    removed: Sequence[str] = ()


def upsert_many(
    tx: Transaction,
    requests: list[UpsertRequest],
    now: str,
    moment: datetime,
    indexes: Indexes | None,
) -> list[UpsertDone]:
    """Run the longest prefix of ``requests`` made of plain inserts and updates (see the module
    docstring) as upserts stamped ``now`` (``moment`` parsed) would run one after the other;
    returns their outcomes, in order. The first request not taken is left to the caller."""
    names = {rid for r in requests for rid in (*r.facts.alias_ids, *r.facts.references)}
    taken = dict(
        _chunked_query(
            tx,
            "SELECT referential_id, doc_pk FROM reference_targets WHERE referential_id IN",
            names,
        )
    )
    own_pks = {taken[r.facts.alias_ids[0]] for r in requests if r.facts.alias_ids[0] in taken}
    rows = {
        int(row[0]): DocRow.from_row(row)
        for row in _chunked_query(
            tx, f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_pk IN", own_pks
        )
    }
    references: dict[int, set[str]] = {pk: set() for pk in rows}
    for pk, rid in _chunked_query(
        tx,
        "SELECT referrer_pk, referential_id FROM document_references WHERE referrer_pk IN",
        rows,
    ):
        references[int(pk)].add(rid)

    named = _named_ids(tx, requests)
    plans = _plan(requests, taken, rows, references, named)
    if not plans:
        return []
    inserts = [p for p in plans if p.row is None]
    updates = [p for p in plans if p.row is not None and p.changed]
    for plan in plans:  # versions in queue order, as one-by-one writes allocate them
        if plan.changed:
            plan.version = tx.allocate_version()
            plan.digest = content_hash(plan.request.facts.text)
    if inserts:
        _insert(tx, inserts, now, indexes)
    if updates:
        _update(tx, updates, now, indexes)
    linked = [(p.pk, rid) for p in plans for rid in p.added]
    _insert_rows(tx, "document_references (referrer_pk, referential_id)", 2, linked)
    return [_done(plan, now, moment) for plan in plans]


def _plan(
    requests: list[UpsertRequest],
    taken: dict[str, int],
    rows: dict[int, DocRow],
    references: dict[int, set[str]],
    named: dict[tuple[str, str], int],
) -> list[_Plan]:
    """What each request of the prefix does, checked in order against the stored state and the
    requests before it."""
    claimed: set[str] = set()  # natural keys of the documents inserted before
    seen: set[str] = set()  # each request's own natural key
    seen_ids: set[tuple[str, str]] = set()  # the ids the puts name
    plans: list[_Plan] = []
    for request in requests:
        facts = request.facts
        rid = facts.referential_id
        if rid is None or rid in seen or request.if_none_match is not None:
            break
        pk = taken.get(rid)
        if request.id is not None:
            where = (request.spec.collection, request.id)
            if where in seen_ids or named.get(where) != pk:
                break  # a key change, a displacement, or the same id twice: one by one
            seen_ids.add(where)
        if pk is None:  # a new document
            if any(a in taken or a in claimed for a in facts.alias_ids):
                break
            if any(r not in taken and r not in claimed for r in facts.references):
                break
            plans.append(_Plan(request, None, added=sorted(facts.references)))
            claimed.update(facts.alias_ids)
        else:
            row = rows.get(pk)
            if row is None or row.referential_id != rid:
                break  # answers to this key under another identity: the one-by-one path
            if row.collection != request.spec.collection:
                break
            if facts.text == row.body_text:
                plans.append(_Plan(request, row, pk=pk, changed=False))
            else:
                stored = references[pk]
                added = sorted(r for r in facts.references if r not in stored)
                if any(r not in taken and r not in claimed for r in added):
                    break
                removed = sorted(stored - facts.references.keys())
                plans.append(_Plan(request, row, pk=pk, added=added, removed=removed))
        seen.add(rid)
    return plans


def _named_ids(tx: Transaction, requests: list[UpsertRequest]) -> dict[tuple[str, str], int]:
    """The stored documents the puts among ``requests`` name by id: ``(collection, id)`` to
    ``doc_pk``."""
    wanted: dict[str, set[str]] = {}
    for request in requests:
        if request.id is not None:
            wanted.setdefault(request.spec.collection, set()).add(request.id)
    found: dict[tuple[str, str], int] = {}
    for collection, ids in wanted.items():
        head = "SELECT id, doc_pk FROM documents WHERE collection = ? AND id IN"
        for doc_id, pk in _chunked_query(tx, head, sorted(ids), (collection,)):
            found[(collection, str(doc_id))] = int(pk)
    return found


def _entries(plan: _Plan, indexes: Indexes | None) -> frozenset[IndexEntry] | None:
    facts = plan.request.facts
    if facts.index is None and indexes is not None:
        return indexes.entries_for(plan.request.spec.collection, facts.body)
    return facts.index


def _insert(tx: Transaction, inserts: list[_Plan], now: str, indexes: Indexes | None) -> None:
    # The keys SQLite would give the rows one by one (the largest so far, plus one), given here
    # so that each document's other rows can be written in the same few statements.
    row = tx.query_one("SELECT coalesce(max(doc_pk), 0) FROM documents")
    top = int(row[0]) if row else 0
    documents: list[tuple[Any, ...]] = []
    aliases: list[tuple[Any, ...]] = []
    entries: list[tuple[str, int, Iterable[IndexEntry]]] = []
    for offset, plan in enumerate(inserts, start=1):
        facts, collection = plan.request.facts, plan.request.spec.collection
        plan.pk, plan.id = top + offset, plan.request.id or new_document_id()
        documents.append(
            (
                plan.pk,
                collection,
                plan.id,
                facts.text,
                plan.digest,
                facts.key_values,
                plan.version,
                now,
                plan.version,
                now,
                now,
                facts.referential_id,
            )
        )
        aliases.extend((rid, plan.pk) for rid in facts.alias_ids)
        found = _entries(plan, indexes)
        if found:
            entries.append((collection, plan.pk, found))
    _insert_rows(
        tx,
        "documents (doc_pk, collection, id, body, content_hash, key_values, content_version, "
        "content_modified_at, identity_version, identity_modified_at, created_at, referential_id)",
        12,
        documents,
    )
    _index_sql.insert_entries_many(tx, entries)
    _insert_rows(tx, "reference_targets (referential_id, doc_pk)", 2, aliases)


def _update(tx: Transaction, updates: list[_Plan], now: str, indexes: Indexes | None) -> None:
    unlinked = [(p.pk, rid) for p in updates for rid in p.removed]
    if unlinked:
        tx.executemany(
            "DELETE FROM document_references WHERE referrer_pk = ? AND referential_id = ?",
            unlinked,
        )
    stamped: list[tuple[Any, ...]] = []
    for plan in updates:
        facts, row = plan.request.facts, plan.row
        assert row is not None
        stamped.append(
            (
                facts.text,
                plan.digest,
                facts.key_values,
                plan.version,
                now,
                facts.referential_id,
                plan.pk,
            )
        )
    tx.executemany(
        "UPDATE documents SET body = ?, content_hash = ?, key_values = ?, content_version = ?, "
        "content_modified_at = ?, referential_id = ? WHERE doc_pk = ?",
        stamped,
    )
    wanted = {p.pk: (p.request.spec.collection, _entries(p, indexes)) for p in updates}
    indexed = [pk for pk, (_c, entries) in wanted.items() if entries is not None]
    stored = _index_sql.stored_entries(tx, indexed)
    removed: list[tuple[int, IndexEntry]] = []
    added: list[tuple[str, int, Iterable[IndexEntry]]] = []
    for pk in indexed:
        collection, entries = wanted[pk]
        assert entries is not None
        removed.extend((pk, e) for e in stored[pk] if e not in entries)
        new = [e for e in entries if e not in stored[pk]]
        if new:
            added.append((collection, pk, new))
    _index_sql.delete_some_many(tx, removed)
    _index_sql.insert_entries_many(tx, added)


def _done(plan: _Plan, now: str, moment: datetime) -> UpsertDone:
    facts, collection = plan.request.facts, plan.request.spec.collection
    row = plan.row
    if row is not None and not plan.changed:
        return UpsertDone(WriteOutcome(_unchanged(row, facts.body), False, False), 0, 0)
    if row is None:
        document = StoredDocument(
            collection=collection,
            id=plan.id,
            body=facts.body,
            content_version=plan.version,
            content_last_modified_at=moment,
            identity_version=plan.version,
            identity_last_modified_at=moment,
            content_hash=plan.digest,
            created_at=moment,
        )
        return UpsertDone(WriteOutcome(document, True, True), 1, 1)
    document = StoredDocument(
        collection=row.collection,
        id=row.id,
        body=facts.body,
        content_version=plan.version,
        content_last_modified_at=moment,
        identity_version=int(row.identity_version),
        identity_last_modified_at=_moment(row.identity_modified_at, now, moment),
        content_hash=plan.digest,
        created_at=_moment(row.created_at, now, moment),
    )
    return UpsertDone(WriteOutcome(document, False, True), 1, 1)


def _moment(text: str, now: str, moment: datetime) -> datetime:
    return moment if text == now else parse_iso_utc(text)


def _chunked_query(
    tx: Transaction, head: str, values: Iterable[Any], params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """``head (?, ?, …)`` over ``values``, in chunks (``params`` first: those of ``head``); the
    rows of every chunk."""
    wanted = list(values)
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        found.extend(tx.query(f"{head} ({', '.join('?' * len(chunk))})", [*params, *chunk]))
    return found


def _insert_rows(tx: Transaction, into: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """``INSERT INTO into VALUES …`` of ``rows`` (``width`` columns each), a few statements."""
    for start in range(0, len(rows), _ROWS_CHUNK):
        chunk = rows[start : start + _ROWS_CHUNK]
        marks = "(" + ", ".join("?" * width) + ")"
        tx.execute(
            f"INSERT INTO {into} VALUES " + ", ".join([marks] * len(chunk)),
            [value for row in chunk for value in row],
        )
