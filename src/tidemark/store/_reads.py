"""Every read of the store: documents, tombstones, queries, history and Change Queries windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tidemark.core import GoneError, ParameterValidationError, parse_iso_utc, parse_json

from ._engine import Transaction
from ._paths import parse_path
from ._rows import DOC_COLUMNS, DocRow
from ._types import (
    HistoryEntry,
    KeyChange,
    Page,
    StoredDocument,
    Tombstone,
    stamp_text,
)

#: The orders a query can ask for, and how each sorts.
ORDERS = {
    "id": "doc_pk",
    "content_version": "content_version",
    "-content_version": "content_version DESC",
    # Writes within one millisecond tie on the time; their change versions keep write order.
    "last_modified": "content_modified_at, content_version",
    "-last_modified": "content_modified_at DESC, content_version DESC",
}
_COMPARATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "="}
_DOC_COLUMNS_D = ", ".join(f"d.{column}" for column in DOC_COLUMNS.split(", "))
_NO_MAX = 2**62


# -- documents ---------------------------------------------------------------------------------
def get(tx: Transaction, collection: str, id: str) -> StoredDocument | None:
    """The current document, or ``None`` when it does not exist."""
    row = _doc(tx, collection, id)
    return row.document() if row else None


def current_version(tx: Transaction, collection: str, id: str) -> int | None:
    """The content version of the current document, or ``None`` when it does not exist."""
    row = tx.query_one(
        "SELECT content_version FROM documents WHERE collection = ? AND id = ?", (collection, id)
    )
    return int(row[0]) if row else None


def get_tombstone(tx: Transaction, collection: str, id: str) -> Tombstone | None:
    """The latest tombstone of ``id`` if the document is currently deleted, else ``None``."""
    if _doc(tx, collection, id) is not None:
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


def query(
    tx: Transaction,
    collection: str,
    limit: int,
    offset: int,
    ids: Sequence[str] | None,
    where: Mapping[str, Any] | None,
    modified: Sequence[tuple[str, datetime]],
    order: str,
    total_count: bool,
) -> Page[StoredDocument]:
    """A page of current documents (``order`` one of :data:`ORDERS`; ``limit``/``offset`` >= 0)."""
    clauses = ["collection = ?"]
    params: list[Any] = [collection]
    if ids is not None:
        if not ids:
            return Page([], 0 if total_count else None)
        clauses.append(f"id IN ({', '.join('?' * len(ids))})")
        params.extend(ids)
    filters, filter_params = _json_filters(tx, where, "body")
    clauses.extend(filters)
    params.extend(filter_params)
    for op, moment in modified:
        if op not in _COMPARATORS:
            raise ParameterValidationError(f"unknown comparison {op!r}")
        clauses.append(f"content_modified_at {_COMPARATORS[op]} ?")
        params.append(stamp_text(moment))
    where_sql = " AND ".join(clauses)
    rows, total = _paged(
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


def history(tx: Transaction, collection: str, id: str) -> list[HistoryEntry]:
    """Every previous representation of ``id``, newest first (including a deleted one)."""
    rows = tx.query(
        "SELECT collection, id, body, content_version, valid_from, valid_to, superseded_by, deleted "
        "FROM history WHERE collection = ? AND id = ? ORDER BY content_version DESC",
        (collection, id),
    )
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


def _doc(tx: Transaction, collection: str, id: str) -> DocRow | None:
    row = tx.query_one(
        f"SELECT {DOC_COLUMNS} FROM documents WHERE collection = ? AND id = ?", (collection, id)
    )
    return DocRow.from_row(row) if row else None


# -- Change Queries: what changed in a window of change versions (journal + verify) ------------
def oldest_retained(tx: Transaction) -> int:
    """The smallest change version whose changes are still retained (0 before any purge)."""
    row = tx.query_one("SELECT value FROM store_settings WHERE key = 'purged_through'")
    return int(row[0]) + 1 if row else 0


def live_changes(
    tx: Transaction,
    collection: str,
    min_version: int | None,
    max_version: int | None,
    limit: int,
    offset: int,
    where: Mapping[str, Any] | None,
    total_count: bool,
) -> Page[StoredDocument]:
    """Current documents whose ContentVersion lies in [min_version, max_version], in change-version
    order.

    Journal rows of the window are read in (change_version, doc) order and kept only when the
    document's current ContentVersion still equals them; the database stops reading as soon as
    the page is full, so the cost follows the page (and offset), not the journal's size.
    """
    low = _window_start(tx, min_version, max_version)
    filters, filter_params = _json_filters(tx, where, "d.body")
    sql_where = " AND ".join(
        ["j.collection = ?", "j.change_version >= ?", "j.change_version <= ?", *filters]
    )
    params: list[Any] = [
        collection,
        low,
        _NO_MAX if max_version is None else max_version,
        *filter_params,
    ]
    base = (
        "FROM journal j JOIN documents d ON d.doc_pk = j.doc_pk AND d.content_version = j.change_version "
        f"WHERE {sql_where}"
    )
    rows, total = _paged(
        tx, _DOC_COLUMNS_D, base, params, "j.change_version, j.doc_pk", limit, offset, total_count
    )
    return Page([DocRow.from_row(r).document() for r in rows], total)


def deletes(
    tx: Transaction,
    collection: str,
    min_version: int | None,
    max_version: int | None,
    limit: int,
    offset: int,
    total_count: bool,
) -> Page[Tombstone]:
    """Tombstones in [min_version, max_version], except those whose natural key exists again
    (recreated)."""
    low = _window_start(tx, min_version, max_version)
    base = (
        "FROM tombstones t WHERE t.collection = ? AND t.change_version >= ? AND t.change_version <= ? "
        "AND (t.referential_id IS NULL OR NOT EXISTS "
        "(SELECT 1 FROM reference_targets r WHERE r.referential_id = t.referential_id))"
    )
    params: list[Any] = [collection, low, _NO_MAX if max_version is None else max_version]
    columns = "t.change_version, t.id, t.key_values, t.deleted_at, t.last_content_version"
    rows, total = _paged(tx, columns, base, params, "t.change_version", limit, offset, total_count)
    items = [
        Tombstone(
            collection=collection,
            id=id,
            change_version=int(version),
            deleted_at=parse_iso_utc(deleted_at),
            key_values=parse_json(key_values) if key_values else None,
            last_content_version=int(last),
        )
        for version, id, key_values, deleted_at, last in rows
    ]
    return Page(items, total)


def key_changes(
    tx: Transaction,
    collection: str,
    min_version: int | None,
    max_version: int | None,
    limit: int,
    offset: int,
    total_count: bool,
) -> Page[KeyChange]:
    """Natural-key changes in [min_version, max_version], collapsed per document: A→B→C is one
    row A→C carrying the last change version; a change back to the starting key is no change."""
    low = _window_start(tx, min_version, max_version)
    base = (
        "FROM (SELECT doc_pk, min(change_version) AS first_cv, max(change_version) AS last_cv "
        "FROM key_changes WHERE collection = ? AND change_version >= ? AND change_version <= ? "
        "GROUP BY doc_pk) w "
        "JOIN key_changes f ON f.change_version = w.first_cv "
        "JOIN key_changes l ON l.change_version = w.last_cv "
        "WHERE f.old_key_values <> l.new_key_values"
    )
    params: list[Any] = [collection, low, _NO_MAX if max_version is None else max_version]
    columns = "l.id, w.last_cv, f.old_key_values, l.new_key_values"
    rows, total = _paged(tx, columns, base, params, "w.last_cv", limit, offset, total_count)
    items = [
        KeyChange(collection, id, int(version), parse_json(old), parse_json(new))
        for id, version, old, new in rows
    ]
    return Page(items, total)


def _window_start(tx: Transaction, low: int | None, high: int | None) -> int:
    """The first change version of the window [low, high]; 400 for a malformed window, 410
    when it starts before the oldest retained version."""
    if (low is not None and low < 0) or (high is not None and high < 0):
        raise ParameterValidationError(
            "Change versions must be numeric values greater than or equal to 0."
        )
    if low is not None and high is not None and low > high:
        raise ParameterValidationError(
            "MinChangeVersion must be less than or equal to MaxChangeVersion."
        )
    oldest = oldest_retained(tx)
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


# -- SQL pieces --------------------------------------------------------------------------------
def _json_filters(
    tx: Transaction, where: Mapping[str, Any] | None, column: str
) -> tuple[list[str], list[Any]]:
    """SQL clauses and parameters for ``where`` (JSON path → required value) on ``column``."""
    clauses: list[str] = []
    params: list[Any] = []
    for path_text, value in (where or {}).items():
        path = parse_path(path_text)
        if path.has_wildcard:
            raise ParameterValidationError(f"cannot filter on array path {path_text}")
        steps = [name for name, _ in path.steps]
        clauses.append(f"{tx.json_value(column, steps)} = ?")
        params += [tx.json_path_param(steps), tx.json_param(value)]
    return clauses, params


def _paged(
    tx: Transaction,
    columns: str,
    base: str,
    params: list[Any],
    order: str,
    limit: int,
    offset: int,
    total_count: bool,
) -> tuple[list[tuple[Any, ...]], int | None]:
    """One page of ``SELECT columns base ORDER BY order`` and, when asked, the count of ``base``."""
    rows = tx.query(
        f"SELECT {columns} {base} ORDER BY {order} LIMIT ? OFFSET ?", [*params, limit, offset]
    )
    total = None
    if total_count:
        counted = tx.query_one(f"SELECT count(*) {base}", params)
        total = int(counted[0]) if counted else 0
    return rows, total
