"""Change Queries: what changed in a window of change versions (journal + verify)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidemark.core import ParameterValidationError, parse_iso_utc, parse_json

from ._changes import DocRow
from ._engine import Transaction
from ._paths import parse_path
from ._types import KeyChange, Page, StoredDocument, Tombstone

_DOC_COLUMNS_D = (
    "d.doc_pk, d.collection, d.id, d.body, d.content_hash, d.key_values, d.content_version, "
    "d.content_modified_at, d.identity_version, d.identity_modified_at, d.created_at, d.referential_id"
)
_NO_MAX = 2**62


def json_filters(
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


def paged(
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


def live_changes(
    tx: Transaction,
    collection: str,
    low: int,
    high: int | None,
    limit: int,
    offset: int,
    where: Mapping[str, Any] | None,
    total_count: bool,
) -> Page[StoredDocument]:
    """Current documents whose ContentVersion lies in [low, high], in change-version order.

    Journal rows of the window are read in (change_version, doc) order and kept only when the
    document's current ContentVersion still equals them; the database stops reading as soon as
    the page is full, so the cost follows the page (and offset), not the journal's size.
    """
    filters, filter_params = json_filters(tx, where, "d.body")
    sql_where = " AND ".join(
        ["j.collection = ?", "j.change_version >= ?", "j.change_version <= ?", *filters]
    )
    params: list[Any] = [collection, low, _NO_MAX if high is None else high, *filter_params]
    base = (
        "FROM journal j JOIN documents d ON d.doc_pk = j.doc_pk AND d.content_version = j.change_version "
        f"WHERE {sql_where}"
    )
    rows, total = paged(
        tx, _DOC_COLUMNS_D, base, params, "j.change_version, j.doc_pk", limit, offset, total_count
    )
    return Page([DocRow.from_row(r).document() for r in rows], total)


def deletes(
    tx: Transaction,
    collection: str,
    low: int,
    high: int | None,
    limit: int,
    offset: int,
    total_count: bool,
) -> Page[Tombstone]:
    """Tombstones in [low, high], except those whose natural key exists again (recreated)."""
    base = (
        "FROM tombstones t WHERE t.collection = ? AND t.change_version >= ? AND t.change_version <= ? "
        "AND (t.referential_id IS NULL OR NOT EXISTS "
        "(SELECT 1 FROM reference_targets r WHERE r.referential_id = t.referential_id))"
    )
    params: list[Any] = [collection, low, _NO_MAX if high is None else high]
    columns = "t.change_version, t.id, t.key_values, t.deleted_at, t.last_content_version"
    rows, total = paged(tx, columns, base, params, "t.change_version", limit, offset, total_count)
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
    low: int,
    high: int | None,
    limit: int,
    offset: int,
    total_count: bool,
) -> Page[KeyChange]:
    """Natural-key changes in [low, high], collapsed per document: A→B→C is one row A→C
    carrying the last change version; a change back to the starting key is no change."""
    base = (
        "FROM (SELECT doc_pk, min(change_version) AS first_cv, max(change_version) AS last_cv "
        "FROM key_changes WHERE collection = ? AND change_version >= ? AND change_version <= ? "
        "GROUP BY doc_pk) w "
        "JOIN key_changes f ON f.change_version = w.first_cv "
        "JOIN key_changes l ON l.change_version = w.last_cv "
        "WHERE f.old_key_values <> l.new_key_values"
    )
    params: list[Any] = [collection, low, _NO_MAX if high is None else high]
    columns = "l.id, w.last_cv, f.old_key_values, l.new_key_values"
    rows, total = paged(tx, columns, base, params, "w.last_cv", limit, offset, total_count)
    items = [
        KeyChange(collection, id, int(version), parse_json(old), parse_json(new))
        for id, version, old, new in rows
    ]
    return Page(items, total)


def oldest_retained(tx: Transaction) -> int:
    """The smallest change version whose changes are still retained (0 before any purge)."""
    row = tx.query_one("SELECT value FROM store_settings WHERE key = 'purged_through'")
    return int(row[0]) + 1 if row else 0
