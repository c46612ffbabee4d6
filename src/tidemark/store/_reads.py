"""Every read of the store: documents, tombstones, queries, history and Change Queries windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tidemark.core import GoneError, ParameterValidationError, parse_iso_utc, parse_json

from . import _index_sql
from ._engine import Transaction
from ._index import Condition, IndexOrder, Order
from ._index_sql import Sql
from ._paths import parse_path
from ._rows import DOC_COLUMNS, DocRow
from ._types import (
    Cursor,
    HistoryEntry,
    KeyChange,
    Page,
    SearchAfter,
    StoredDocument,
    Tombstone,
    edfi_representation,
    stamp_text,
)

_COMPARATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "="}
_DOC_COLUMNS_D = ", ".join(f"d.{column}" for column in DOC_COLUMNS.split(", "))
_NO_MAX = 2**62
#: The open end of a walk: no storage key or change version reaches it.
WALK_END = 2**63 - 1


# -- documents ---------------------------------------------------------------------------------
def get(tx: Transaction, collection: str, id: str) -> StoredDocument | None:
    """The current document, or ``None`` when it does not exist."""
    row = _doc(tx, collection, id)
    return row.document() if row else None


def representation(tx: Transaction, collection: str, id: str) -> tuple[int, dict[str, Any]] | None:
    """The content version and Ed-Fi representation of the current document (as
    ``get(...).representation()`` builds it), or ``None`` when it does not exist."""
    row = tx.query_one(
        "SELECT id, body, content_version, content_modified_at FROM documents "
        "WHERE collection = ? AND id = ?",
        (collection, id),
    )
    if row is None:
        return None
    stored_id, body, version, modified = row
    version = int(version)
    if not (
        isinstance(modified, str)
        and len(modified) == 24
        and modified[10] == "T"
        and modified[-1] == "Z"
    ):
        modified = stamp_text(parse_iso_utc(modified))  # the store writes its stamps so
    return version, edfi_representation(stored_id, parse_json(body), version, modified)


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
    orders: Sequence[Order],
    total_count: bool,
    conditions: Sequence[Condition] = (),
    after: SearchAfter | None = None,
) -> Page[StoredDocument]:
    """A page of current documents matching the index ``conditions`` and the other filters:
    ``ids``, ``where`` (JSON path → value, read from the stored JSON) and ``modified``; those
    after ``after`` only (see :func:`_index_sql.plan`)."""
    tests: list[Sql] = []
    if ids is not None:
        if not ids:
            return Page([], 0 if total_count else None)
        tests.append(Sql(f"d.id IN ({', '.join('?' * len(ids))})", tuple(ids)))
    tests += _json_filters(tx, where, "d.body")
    for op, moment in modified:
        if op not in _COMPARATORS:
            raise ParameterValidationError(f"unknown comparison {op!r}")
        tests.append(Sql(f"d.content_modified_at {_COMPARATORS[op]} ?", (stamp_text(moment),)))
    found: _index_sql.Plan | None = _index_sql.plan(
        tx, collection, conditions, tests, orders, after
    )
    rows: list[tuple[Any, ...]] = []
    total: int | None = 0 if total_count else None
    before = 0  # documents of the plans already passed
    while found is not None:
        wanted = limit - len(rows)
        skip = max(0, offset - before)
        page, counted = _paged(
            tx,
            _DOC_COLUMNS_D,
            found.source.text,
            list(found.source.params),
            found.order.text,
            wanted,
            skip,
            total_count,
            list(found.order.params),
            fresh_plan=True,
        )
        rows += page
        if total is not None and counted is not None:
            total += counted
        if found.then is None or (len(page) == wanted and not total_count):
            break
        # This plan ran out within the page: how many it has decides where the next starts.
        if counted is not None:
            before += counted
        elif page or not skip:
            before += skip + len(page)
        else:
            before += _count(tx, found.source)
        found = found.then
    return Page(
        [DocRow.from_row(r).document() for r in rows],
        total,
        positions=_positions(tx, collection, orders, [int(r[0]) for r in rows]),
    )


def _positions(
    tx: Transaction, collection: str, orders: Sequence[Order], pks: list[int]
) -> list[SearchAfter]:
    """Where each of ``pks`` stands in a search sorted by ``orders`` (none when such a search
    cannot continue after a position, see :func:`_index_sql.keyset_kind`)."""
    sort = orders[0] if len(orders) == 1 else None
    if not pks or not isinstance(sort, IndexOrder):
        return []
    kinds = {sort.name: _index_sql.entry_kinds(tx, collection, sort.name)}
    kind = _index_sql.keyset_kind(orders, kinds)
    if kind is None:
        return []
    value = _index_sql.value_sql(sort, kind, "d.doc_pk")
    marks = ", ".join("?" * len(pks))
    rows = tx.query(
        f"SELECT d.doc_pk, {value.text} FROM documents d WHERE d.doc_pk IN ({marks})",
        [*value.params, *pks],
    )
    values = {int(pk): found for pk, found in rows}
    return [
        SearchAfter(
            None if values.get(pk) is None else (str if kind == "keys" else float)(values[pk]),
            pk,
        )
        for pk in pks
    ]


def _count(tx: Transaction, source: Sql) -> int:
    rows = tx.search(f"SELECT count(*) {source.text}", list(source.params))
    return int(rows[0][0]) if rows else 0


def walk(
    tx: Transaction,
    collection: str,
    cursor: Cursor | None,
    limit: int,
    where: Mapping[str, Any] | None,
    min_version: int | None,
    max_version: int | None,
    total_count: bool,
    conditions: Sequence[Condition] = (),
) -> Page[StoredDocument]:
    """One page of a keyset walk, with the cursor of the next page while rows remain.

    Without a cursor the walk starts: in storage-key order, or in change-version order when a
    window is given. Each page reads an index range that starts where the previous page ended,
    so its cost does not grow with the depth of the walk. Storage keys never change, so a key
    walk returns every document that exists throughout it exactly once, however many writes
    happen meanwhile (documents created during the walk appear at most once).
    """
    windowed = min_version is not None or max_version is not None
    if windowed:
        low = _window_start(tx, min_version, max_version)
    elif cursor is not None and cursor.order == "change":
        # a change-version walk reads the journal from its cursor on: 410 once that is purged
        low = _window_start(tx, max(cursor.after + 1, 0), None)
    else:
        low = 0
    high = _NO_MAX if max_version is None else max_version
    if cursor is None:
        cursor = Cursor("change" if windowed else "key", -1, WALK_END)
    tests = _json_filters(tx, where, "d.body") + [_index_sql.probe(tx, c) for c in conditions]
    if cursor.order == "change":
        base = (
            "FROM journal j JOIN documents d "
            "ON d.doc_pk = j.doc_pk AND d.content_version = j.change_version "
            "WHERE j.collection = ? AND j.change_version >= ? AND j.change_version <= ?"
        )
        params: list[Any] = [collection, low, high]
        position = "j.change_version"
    else:
        base = "FROM documents d WHERE d.collection = ?"
        params = [collection]
        if windowed:
            base += " AND d.content_version >= ? AND d.content_version <= ?"
            params += [low, high]
        position = "d.doc_pk"
    for test in tests:
        base += f" AND {test.text}"
        params += test.params
    total = None
    if total_count:
        counted = tx.query_one(f"SELECT count(*) {base}", params)
        total = int(counted[0]) if counted else 0
    if limit <= 0:
        return Page([], total)
    rows = tx.query(
        f"SELECT {_DOC_COLUMNS_D} {base} AND {position} > ? AND {position} <= ? "
        f"ORDER BY {position} LIMIT ?",
        [*params, cursor.after, cursor.through, limit + 1],
    )
    found = [DocRow.from_row(r) for r in rows]
    following = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        reached = last.content_version if cursor.order == "change" else last.pk
        following = Cursor(cursor.order, int(reached), cursor.through)
    return Page([row.document() for row in found], total, following)


def partitions(
    tx: Transaction,
    collection: str,
    count: int,
    where: Mapping[str, Any] | None,
    min_version: int | None,
    max_version: int | None,
    conditions: Sequence[Condition] = (),
) -> list[Cursor]:
    """Up to ``count`` key-order cursors that together cover the matching documents once, each
    starting a walk over about the same number of them (none when nothing matches)."""
    tests = _json_filters(tx, where, "body")
    tests += [_index_sql.probe(tx, c, doc="doc_pk") for c in conditions]
    clauses = ["collection = ?", *(test.text for test in tests)]
    params: list[Any] = [collection, *(v for test in tests for v in test.params)]
    if min_version is not None or max_version is not None:
        clauses += ["content_version >= ?", "content_version <= ?"]
        params += [
            _window_start(tx, min_version, max_version),
            _NO_MAX if max_version is None else max_version,
        ]
    where_sql = " AND ".join(clauses)
    counted = tx.query_one(f"SELECT count(*) FROM documents WHERE {where_sql}", params)
    matching = int(counted[0]) if counted else 0
    if matching == 0:
        return []
    size = -(-matching // count)
    starts = [
        int(row[0])
        for row in tx.query(
            "SELECT doc_pk FROM (SELECT doc_pk, row_number() OVER (ORDER BY doc_pk) AS position "
            f"FROM documents WHERE {where_sql}) numbered "
            "WHERE (position - 1) / ? * ? = position - 1 ORDER BY doc_pk",
            [*params, size, size],
        )
    ]
    ends = [start - 1 for start in starts[1:]] + [WALK_END]
    return [Cursor("key", start - 1, end) for start, end in zip(starts, ends, strict=True)]


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
    conditions: Sequence[Condition] = (),
) -> Page[StoredDocument]:
    """Current documents whose ContentVersion lies in [min_version, max_version], in change-version
    order, matching the index ``conditions`` and ``where`` (JSON path → value).

    Journal rows of the window are read in (change_version, doc) order and kept only when the
    document's current ContentVersion still equals them; the database stops reading as soon as
    the page is full, so the cost follows the page (and offset), not the journal's size. When
    an index condition matches fewer than ``SORT_LIMIT`` documents, those are read from the
    index instead and the window applied to them.
    """
    low = _window_start(tx, min_version, max_version)
    high = _NO_MAX if max_version is None else max_version
    tests = _json_filters(tx, where, "d.body")
    best = _index_sql.best_driver(tx, collection, conditions)
    if best is not None and best.fewer_than(tx, _index_sql.SORT_LIMIT):
        # Few documents match: read them from the index, keep those in the window.
        tests += [_index_sql.probe(tx, c) for c in conditions if c is not best.condition]
        source = _index_sql.driven_by(
            best.sql,
            [Sql("d.content_version >= ? AND d.content_version <= ?", (low, high)), *tests],
        )
        rows, total = _paged(
            tx,
            _DOC_COLUMNS_D,
            source.text,
            list(source.params),
            "d.content_version",
            limit,
            offset,
            total_count,
        )
        return Page([DocRow.from_row(r).document() for r in rows], total)
    tests += [_index_sql.probe(tx, c) for c in conditions]
    base = (
        "FROM journal j JOIN documents d ON d.doc_pk = j.doc_pk AND d.content_version = j.change_version "
        "WHERE j.collection = ? AND j.change_version >= ? AND j.change_version <= ?"
        + "".join(f" AND {t.text}" for t in tests)
    )
    params: list[Any] = [collection, low, high, *(v for t in tests for v in t.params)]
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
def _json_filters(tx: Transaction, where: Mapping[str, Any] | None, column: str) -> list[Sql]:
    """SQL tests for ``where`` (JSON path → required value) on the JSON text ``column`` (a scan:
    no index serves them)."""
    tests: list[Sql] = []
    for path_text, value in (where or {}).items():
        try:
            path = parse_path(path_text)
        except ValueError as exc:
            raise ParameterValidationError(str(exc)) from None
        if path.has_wildcard:
            raise ParameterValidationError(f"cannot filter on array path {path_text}")
        steps = [name for name, _ in path.steps]
        tests.append(
            Sql(
                f"{tx.json_value(column, steps)} = ?",
                (tx.json_path_param(steps), tx.json_param(value)),
            )
        )
    return tests


def _paged(
    tx: Transaction,
    columns: str,
    base: str,
    params: list[Any],
    order: str,
    limit: int,
    offset: int,
    total_count: bool,
    order_params: Sequence[Any] = (),
    *,
    fresh_plan: bool = False,
) -> tuple[list[tuple[Any, ...]], int | None]:
    """One page of ``SELECT columns base ORDER BY order`` and, when asked, the count of ``base``
    (``fresh_plan``: planned for the parameter values each time, see Transaction.search)."""
    run = tx.search if fresh_plan else tx.query
    rows = run(
        f"SELECT {columns} {base} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, *order_params, limit, offset],
    )
    total = None
    if total_count:
        counted = run(f"SELECT count(*) {base}", params)
        total = int(counted[0][0]) if counted else 0
    return rows, total
