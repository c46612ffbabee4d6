"""The search index in SQL: writing a document's entries, and the plan and SQL of a search."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidemark.core import ParameterValidationError

from ._engine import Transaction
from ._index import (
    KEY_PREFIX_CHARS,
    AnyOf,
    Condition,
    IndexEntry,
    IndexOrder,
    KeyContains,
    KeyEntry,
    KeyIn,
    KeyPrefix,
    Missing,
    Not,
    Order,
    RangeEntry,
    RangeMatch,
)
from ._types import SearchAfter

#: Rows per multi-row statement.
_CHUNK = 200
#: The largest code point: ``prefix + _TOP`` is above every key that starts with ``prefix``.
_TOP = "\U0010ffff"


# -- writing entries (inside the document's write transaction) ---------------------------------
def insert_entries(
    tx: Transaction, collection: str, pk: int, entries: Collection[IndexEntry]
) -> None:
    """Add ``entries`` of document ``pk`` (already normalised)."""
    keys = [e for e in entries if isinstance(e, KeyEntry)]
    ranges = [e for e in entries if isinstance(e, RangeEntry)]
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        params: list[Any] = []
        for name, key in chunk:
            params += [collection, name, key, pk]
        tx.execute(
            "INSERT INTO index_keys (collection, name, key, doc_pk) VALUES "
            + ", ".join("(?, ?, ?, ?)" for _ in chunk)
            + " ON CONFLICT DO NOTHING",
            params,
        )
    for start in range(0, len(ranges), _CHUNK):
        rchunk = ranges[start : start + _CHUNK]
        params = []
        for name, unit, low, high in rchunk:
            params += [collection, name, unit, low, high, pk]
        tx.execute(
            "INSERT INTO index_ranges (collection, name, unit, low, high, doc_pk) VALUES "
            + ", ".join("(?, ?, ?, ?, ?, ?)" for _ in rchunk)
            + " ON CONFLICT DO NOTHING",
            params,
        )


def insert_entries_many(
    tx: Transaction, documents: Sequence[tuple[str, int, Iterable[IndexEntry]]]
) -> None:
    """:func:`insert_entries` for several documents (``(collection, pk, entries)``), in as few
    statements as the rows allow."""
    keys: list[tuple[str, str, str, int]] = []
    ranges: list[tuple[str, str, str, float, float, int]] = []
    for collection, pk, entries in documents:
        for entry in entries:
            if isinstance(entry, KeyEntry):
                keys.append((collection, entry.name, entry.key, pk))
            else:
                ranges.append((collection, entry.name, entry.unit, entry.low, entry.high, pk))
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        tx.execute(
            "INSERT INTO index_keys (collection, name, key, doc_pk) VALUES "
            + ", ".join("(?, ?, ?, ?)" for _ in chunk)
            + " ON CONFLICT DO NOTHING",
            [value for row in chunk for value in row],
        )
    for start in range(0, len(ranges), _CHUNK):
        rchunk = ranges[start : start + _CHUNK]
        tx.execute(
            "INSERT INTO index_ranges (collection, name, unit, low, high, doc_pk) VALUES "
            + ", ".join("(?, ?, ?, ?, ?, ?)" for _ in rchunk)
            + " ON CONFLICT DO NOTHING",
            [value for row in rchunk for value in row],
        )


def delete_some_many(tx: Transaction, entries: Sequence[tuple[int, IndexEntry]]) -> None:
    """Remove the given ``(pk, entry)`` entries (one prepared statement per kind)."""
    keys = [(pk, e.name, e.key) for pk, e in entries if isinstance(e, KeyEntry)]
    ranges = [(pk, e.name, e.unit, e.low, e.high) for pk, e in entries if isinstance(e, RangeEntry)]
    if keys:
        tx.executemany("DELETE FROM index_keys WHERE doc_pk = ? AND name = ? AND key = ?", keys)
    if ranges:
        tx.executemany(
            "DELETE FROM index_ranges WHERE doc_pk = ? AND name = ? AND unit = ? AND low = ? "
            "AND high = ?",
            ranges,
        )


def stored_entries(tx: Transaction, pks: Sequence[int]) -> dict[int, set[IndexEntry]]:
    """The entries stored for each of ``pks`` (one round trip)."""
    found: dict[int, set[IndexEntry]] = {pk: set() for pk in pks}
    if not pks:
        return found
    marks = ", ".join("?" * len(pks))
    rows = tx.query(
        f"SELECT doc_pk, 0, name, key, '', 0.0, 0.0 FROM index_keys WHERE doc_pk IN ({marks}) "
        "UNION ALL "
        f"SELECT doc_pk, 1, name, '', unit, low, high FROM index_ranges WHERE doc_pk IN ({marks})",
        [*pks, *pks],
    )
    for pk, kind, name, key, unit, low, high in rows:
        entry: IndexEntry = (
            KeyEntry(name, key) if kind == 0 else RangeEntry(name, unit, float(low), float(high))
        )
        found[int(pk)].add(entry)
    return found


def replace_entries(
    tx: Transaction,
    collection: str,
    pk: int,
    entries: frozenset[IndexEntry],
    stored: set[IndexEntry] | None = None,
) -> None:
    """Make ``entries`` the entries of document ``pk``, writing only the differences from the
    stored ones (``stored``, when the caller has read them already; on PostgreSQL, unread, the
    difference is made by one statement, in one round trip)."""
    if stored is None:
        if tx.engine_name == "postgresql":
            _replace_in_one_statement(tx, collection, pk, entries)
            return
        stored = stored_entries(tx, [pk])[pk]
    removed = [e for e in stored if e not in entries]
    added = [e for e in entries if e not in stored]
    if removed:
        _delete_some(tx, pk, removed)
    if added:
        insert_entries(tx, collection, pk, added)


def _replace_in_one_statement(
    tx: Transaction, collection: str, pk: int, entries: frozenset[IndexEntry]
) -> None:
    """:func:`replace_entries` as one statement of data-modifying CTEs (PostgreSQL): delete the
    stored entries not wanted, insert the wanted ones not stored (conflicts are kept rows)."""
    keys = [e for e in entries if isinstance(e, KeyEntry)]
    ranges = [e for e in entries if isinstance(e, RangeEntry)]
    parts: list[str] = []
    params: list[Any] = []
    if keys:
        parts.append(
            "wanted_keys (name, key) AS (VALUES "
            + ", ".join("(?::text, ?::text)" for _ in keys)
            + ")"
        )
        params += [v for entry in keys for v in entry]
        parts.append(
            "gone_keys AS (DELETE FROM index_keys i WHERE i.doc_pk = ? AND NOT EXISTS "
            '(SELECT 1 FROM wanted_keys w WHERE w.name = i.name AND w.key COLLATE "C" = i.key))'
        )
    else:
        parts.append("gone_keys AS (DELETE FROM index_keys i WHERE i.doc_pk = ?)")
    params.append(pk)
    if ranges:
        parts.append(
            "wanted_ranges (name, unit, low, high) AS (VALUES "
            + ", ".join("(?::text, ?::text, ?::float8, ?::float8)" for _ in ranges)
            + ")"
        )
        params += [v for entry in ranges for v in entry]
        parts.append(
            "gone_ranges AS (DELETE FROM index_ranges r WHERE r.doc_pk = ? AND NOT EXISTS "
            "(SELECT 1 FROM wanted_ranges w WHERE w.name = r.name AND w.unit = r.unit "
            "AND w.low = r.low AND w.high = r.high))"
        )
        params.append(pk)
        parts.append(
            "new_ranges AS (INSERT INTO index_ranges (collection, name, unit, low, high, doc_pk) "
            "SELECT ?, name, unit, low, high, ? FROM wanted_ranges ON CONFLICT DO NOTHING)"
        )
        params += [collection, pk]
    else:
        parts.append("gone_ranges AS (DELETE FROM index_ranges r WHERE r.doc_pk = ?)")
        params.append(pk)
    if keys:
        tail = (
            "INSERT INTO index_keys (collection, name, key, doc_pk) "
            "SELECT ?, name, key, ? FROM wanted_keys ON CONFLICT DO NOTHING"
        )
        params += [collection, pk]
    else:
        tail = "SELECT 1"
    tx.execute("WITH " + ", ".join(parts) + " " + tail, params)


def _delete_some(tx: Transaction, pk: int, entries: list[IndexEntry]) -> None:
    keys = [e for e in entries if isinstance(e, KeyEntry)]
    ranges = [e for e in entries if isinstance(e, RangeEntry)]
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        params: list[Any] = [pk]
        for name, key in chunk:
            params += [name, key]
        tx.execute(
            "DELETE FROM index_keys WHERE doc_pk = ? AND ("
            + " OR ".join("(name = ? AND key = ?)" for _ in chunk)
            + ")",
            params,
        )
    for start in range(0, len(ranges), _CHUNK):
        rchunk = ranges[start : start + _CHUNK]
        params = [pk]
        for name, unit, low, high in rchunk:
            params += [name, unit, low, high]
        tx.execute(
            "DELETE FROM index_ranges WHERE doc_pk = ? AND ("
            + " OR ".join("(name = ? AND unit = ? AND low = ? AND high = ?)" for _ in rchunk)
            + ")",
            params,
        )


def delete_entries(tx: Transaction, pk: int) -> None:
    """Remove every entry of document ``pk`` (one round trip on PostgreSQL)."""
    if tx.engine_name == "postgresql":
        tx.execute(
            "WITH gone_keys AS (DELETE FROM index_keys WHERE doc_pk = ?) "
            "DELETE FROM index_ranges WHERE doc_pk = ?",
            (pk, pk),
        )
        return
    tx.execute("DELETE FROM index_keys WHERE doc_pk = ?", (pk,))
    tx.execute("DELETE FROM index_ranges WHERE doc_pk = ?", (pk,))


# -- SQL pieces of conditions ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sql:
    """A fragment of SQL and its parameters, in order."""

    text: str
    params: tuple[Any, ...] = ()


_FALSE = Sql("1 = 0")


def _key_test(tx: Transaction, condition: KeyIn | KeyPrefix | KeyContains, alias: str) -> Sql:
    """The test on ``alias.key`` (an ``index_keys`` row) for a key condition."""
    if isinstance(condition, KeyIn):
        if not condition.keys:
            return _FALSE
        if len(condition.keys) == 1:
            return Sql(f"{alias}.key = ?", condition.keys)
        return Sql(f"{alias}.key IN ({', '.join('?' * len(condition.keys))})", condition.keys)
    if isinstance(condition, KeyPrefix):
        prefix = condition.prefix[:KEY_PREFIX_CHARS]
        if not prefix:
            return Sql("1 = 1")
        return Sql(f"{alias}.key >= ? AND {alias}.key < ?", (prefix, prefix + _TOP))
    if not condition.text:
        return Sql("1 = 1")
    function = "instr" if tx.engine_name == "sqlite" else "strpos"
    return Sql(f"{function}({alias}.key, ?) > 0", (condition.text,))


def _range_test(condition: RangeMatch, alias: str) -> Sql:
    """The test on an ``index_ranges`` row [low, high] for ``condition`` (FHIR's range rules)."""
    low, high = f"{alias}.low", f"{alias}.high"
    sl, sh = condition.low, condition.high
    tests: dict[str, Sql] = {
        "eq": Sql(f"{low} >= ? AND {low} <= ? AND {high} <= ?", (sl, sh, sh)),
        "ne": Sql(f"({low} < ? OR {high} > ?)", (sl, sh)),
        "gt": Sql(f"{high} > ?", (sh,)),
        "lt": Sql(f"{low} < ?", (sl,)),
        # ge and le are ORs; the bound before each (implied by it, as low <= high) lets an
        # index range scan read them in order, so that a LIMIT stops it early.
        "ge": Sql(f"{high} >= ? AND ({high} > ? OR {low} >= ?)", (sl, sh, sl)),
        "le": Sql(f"{low} <= ? AND ({low} < ? OR {high} <= ?)", (sh, sl, sh)),
        "sa": Sql(f"{low} > ?", (sh,)),
        "eb": Sql(f"{high} < ?", (sl,)),
        "ap": Sql(f"{high} >= ? AND {low} <= ?", (sl, sh)),
    }
    test = tests[condition.op]
    if condition.unit is None:
        return test
    return Sql(f"{alias}.unit = ? AND {test.text}", (condition.unit, *test.params))


def probe(tx: Transaction, condition: Condition, doc: str = "d.doc_pk") -> Sql:
    """A boolean SQL expression: the document whose ``doc_pk`` is ``doc`` matches ``condition``
    (lookups in the document-ordered index, a few rows each)."""
    if isinstance(condition, KeyIn | KeyPrefix | KeyContains):
        test = _key_test(tx, condition, "x")
        return Sql(
            f"EXISTS (SELECT 1 FROM index_keys x WHERE x.doc_pk = {doc} AND x.name = ? "
            f"AND {test.text})",
            (condition.name, *test.params),
        )
    if isinstance(condition, RangeMatch):
        rtest = _range_test(condition, "r")
        return Sql(
            f"EXISTS (SELECT 1 FROM index_ranges r WHERE r.doc_pk = {doc} AND r.name = ? "
            f"AND {rtest.text})",
            (condition.name, *rtest.params),
        )
    if isinstance(condition, Missing):
        present = (
            f"(EXISTS (SELECT 1 FROM index_keys x WHERE x.doc_pk = {doc} AND x.name = ?) OR "
            f"EXISTS (SELECT 1 FROM index_ranges r WHERE r.doc_pk = {doc} AND r.name = ?))"
        )
        text = f"NOT {present}" if condition.missing else present
        return Sql(text, (condition.name, condition.name))
    if isinstance(condition, Not):
        inner = probe(tx, condition.condition, doc)
        return Sql(f"NOT ({inner.text})", inner.params)
    if not condition.conditions:
        return _FALSE
    parts = [probe(tx, c, doc) for c in condition.conditions]
    return Sql(
        "(" + " OR ".join(p.text for p in parts) + ")", tuple(v for p in parts for v in p.params)
    )


def driver(tx: Transaction, collection: str, condition: Condition) -> Sql | None:
    """``SELECT doc_pk …`` of the documents matching ``condition`` (possibly repeated), read
    from the index by (collection, name); ``None`` for conditions that cannot be read that way
    (negations, ``Missing``, ``KeyContains``)."""
    if isinstance(condition, KeyIn | KeyPrefix):
        test = _key_test(tx, condition, "x")
        return Sql(
            "SELECT x.doc_pk FROM index_keys x WHERE x.collection = ? AND x.name = ? "
            f"AND {test.text}",
            (collection, condition.name, *test.params),
        )
    if isinstance(condition, RangeMatch):
        rtest = _range_test(condition, "r")
        return Sql(
            "SELECT r.doc_pk FROM index_ranges r WHERE r.collection = ? AND r.name = ? "
            f"AND {rtest.text}",
            (collection, condition.name, *rtest.params),
        )
    if isinstance(condition, AnyOf) and condition.conditions:
        parts = [driver(tx, collection, c) for c in condition.conditions]
        if any(p is None for p in parts):
            return None
        found = [p for p in parts if p is not None]
        return Sql(
            " UNION ALL ".join(p.text for p in found), tuple(v for p in found for v in p.params)
        )
    return None


def _ordered(condition: Condition) -> bool:
    """True when the index returns ``condition``'s documents in ``doc_pk`` order (one exact key)."""
    return isinstance(condition, KeyIn) and len(condition.keys) == 1


# -- the plan of a search --------------------------------------------------------------------
#: How a search sorts (``id`` is insertion order).
ORDERS = {
    "id": "d.doc_pk",
    "-id": "d.doc_pk DESC",
    "content_version": "d.content_version",
    "-content_version": "d.content_version DESC",
    # Writes within one millisecond tie on the time; their change versions keep write order.
    "last_modified": "d.content_modified_at, d.content_version",
    "-last_modified": "d.content_modified_at DESC, d.content_version DESC",
}
#: Index rows counted per condition to choose the one that drives a search.
ESTIMATE_LIMIT = 256
#: A driving condition that matches at least this many documents is not sorted in id order:
#: the documents are walked in order instead and every condition probed (see :func:`plan`).
SORT_LIMIT = 5000
#: A search walked in the order of an index name reads the matches of its driving condition
#: once as a set when they are fewer than this (see :func:`sorted_walk`); more are probed per
#: row (a set of most of the collection would cost more than the page).
SET_LIMIT = 32_768


def order_sql(orders: Sequence[Order], kinds: Mapping[str, tuple[bool, bool]] | None = None) -> Sql:
    """The ``ORDER BY`` list for ``orders`` (ties broken by ``doc_pk``). ``kinds``: whether each
    :class:`IndexOrder` name has key and range entries (see :func:`entry_kinds`); unknown
    names are looked up in both tables."""
    parts: list[str] = []
    params: list[Any] = []
    for order in orders:
        if isinstance(order, IndexOrder):
            pick, direction = ("max", " DESC") if order.descending else ("min", "")
            has_keys, has_ranges = (kinds or {}).get(order.name, (True, True))
            for table, column, present in (
                ("index_ranges", "high" if order.descending else "low", has_ranges),
                ("index_keys", "key", has_keys),
            ):
                if not present:
                    continue
                unit = table == "index_ranges" and order.unit is not None
                value = (
                    f"(SELECT {pick}(i.{column}) FROM {table} i WHERE i.doc_pk = d.doc_pk "
                    "AND i.name = ?" + (" AND i.unit = ?)" if unit else ")")
                )
                parts.append(f"{value}{direction} NULLS LAST")
                params += [order.name, order.unit] if unit else [order.name]
            continue
        if order not in ORDERS:
            raise ParameterValidationError(
                f"unknown order {order!r}",
                errors=[f"order must be an IndexOrder or one of {sorted(ORDERS)}"],
            )
        parts.append(ORDERS[order])
    if not any(p.startswith("d.doc_pk") for p in parts):
        parts.append("d.doc_pk DESC" if _descending(orders) else "d.doc_pk")
    return Sql(", ".join(parts), tuple(params))


def _descending(orders: Sequence[Order]) -> bool:
    """Whether ties are broken newest first: when the first order is descending (so that an
    index read backwards gives the whole order)."""
    first = orders[0] if orders else "id"
    return first == "-id" or (isinstance(first, IndexOrder) and first.descending)


@dataclass(frozen=True, slots=True)
class Plan:
    """``FROM … WHERE …`` selecting documents as ``d`` (each at most once), and its order;
    ``then``: the documents that come after all of those (another plan, none in both)."""

    source: Sql
    order: Sql
    then: Plan | None = None


@dataclass(frozen=True, slots=True)
class Driver:
    """The condition a search reads from the index first, its ``SELECT doc_pk``, and how many
    index rows it reads (counted up to :data:`ESTIMATE_LIMIT`; ``None`` when not counted)."""

    condition: Condition
    sql: Sql
    matches: int | None

    def fewer_than(self, tx: Transaction, limit: int) -> bool:
        """True when the condition reads fewer than ``limit`` index rows."""
        if self.matches is not None and self.matches < ESTIMATE_LIMIT:
            return True
        return _capped_count(tx, self.sql, limit) < limit


def best_driver(
    tx: Transaction, collection: str, conditions: Sequence[Condition], *, id_order: bool = False
) -> Driver | None:
    """The condition matching the fewest documents among those the index can read (each
    counted up to :data:`ESTIMATE_LIMIT`; ties go to one the index returns in id order), or
    ``None``. With one candidate that the index returns in id order and ``id_order``, nothing
    is counted.
    """
    drivable = [(c, sql) for c in conditions if (sql := driver(tx, collection, c)) is not None]
    if not drivable:
        return None
    if len(drivable) == 1 and id_order and _ordered(drivable[0][0]):
        return Driver(drivable[0][0], drivable[0][1], None)
    counted = [
        (_capped_count(tx, sql, ESTIMATE_LIMIT), not _ordered(c), i)
        for i, (c, sql) in enumerate(drivable)
    ]
    matches, _unordered, index = min(counted)
    return Driver(drivable[index][0], drivable[index][1], matches)


def driven_by(driving: Sql, tests: Sequence[Sql]) -> Sql:
    """``FROM …`` the documents ``driving`` selects (each once) that pass every test."""
    head = (
        f"FROM (SELECT DISTINCT m.doc_pk FROM ({driving.text}) m) k "
        "CROSS JOIN documents d WHERE d.doc_pk = k.doc_pk"
    )
    return _where(head, driving.params, tests)


def plan(
    tx: Transaction,
    collection: str,
    conditions: Sequence[Condition],
    extra: Sequence[Sql],
    orders: Sequence[Order],
    after: SearchAfter | None = None,
) -> Plan:
    """How to find the documents of ``collection`` matching every condition and every ``extra``
    test on ``d``, in ``orders``.

    The condition that matches fewest documents drives (see :func:`best_driver`); the others
    are probed per document:

    - one exact key, in id order: the index is walked in ``doc_pk`` order and the walk stops
      when the page is full, so a page costs the same however many documents match;
    - fewer than :data:`SORT_LIMIT` matches, or an order other than id: the matches are read
      from the index and sorted (the cost grows with the matches);
    - many matches of ranges, prefixes or several keys, in id order, or no condition the index
      can read (only negations, ``Missing``, ``KeyContains``): the collection's documents are
      walked in order, each probed, until the page is full;
    - one :class:`IndexOrder` and many matches (or no condition the index can read): the
      index of the order's name is walked in that order (see :func:`sorted_walk`).

    ``after``: only the documents after that position of a search sorted by one
    :class:`IndexOrder` (see :class:`SearchAfter`); a walk starts there in the index.
    """
    kinds = {
        o.name: entry_kinds(tx, collection, o.name) for o in orders if isinstance(o, IndexOrder)
    }
    order = order_sql(orders, kinds)
    id_order = not orders or orders[0] in ("id", "-id")
    best = best_driver(tx, collection, conditions, id_order=id_order)
    sort = orders[0] if len(orders) == 1 and isinstance(orders[0], IndexOrder) else None
    if after is not None:
        kind = keyset_kind(orders, kinds)
        if sort is None or kind is None:
            raise ParameterValidationError(
                "a search continues after a position only when sorted by one IndexOrder "
                "whose name has key entries or range entries, not both"
            )
        _check_position(after, kind)
    if sort is not None and (best is None or not best.fewer_than(tx, SORT_LIMIT)):
        semi = best if best is not None and best.fewer_than(tx, SET_LIMIT) else None
        walked = sorted_walk(tx, collection, sort, kinds[sort.name], conditions, extra, after, semi)
        if walked is not None:
            return walked
    tests = list(extra)
    if after is not None:
        assert sort is not None
        tests.append(_after_test(sort, kinds[sort.name], after))
    if best is None or (
        id_order and not _ordered(best.condition) and not best.fewer_than(tx, SORT_LIMIT)
    ):
        tests += [probe(tx, c) for c in conditions]
        return Plan(_where("FROM documents d WHERE d.collection = ?", (collection,), tests), order)
    # The other conditions test the driver's row (``k``), so that a document is read only once
    # every condition holds (not read and then dropped).
    tests += [probe(tx, c, "k.doc_pk") for c in conditions if c is not best.condition]
    if _ordered(best.condition) and id_order:
        assert isinstance(best.condition, KeyIn)
        head = (
            "FROM index_keys k CROSS JOIN documents d WHERE k.collection = ? AND k.name = ? "
            "AND k.key = ? AND d.doc_pk = k.doc_pk"
        )
        walk = Sql("k.doc_pk DESC" if orders and orders[0] == "-id" else "k.doc_pk")
        params = (collection, best.condition.name, best.condition.keys[0])
        return Plan(_where(head, params, tests), walk)
    return Plan(driven_by(best.sql, tests), order)


def sorted_walk(
    tx: Transaction,
    collection: str,
    order: IndexOrder,
    kinds: tuple[bool, bool],
    conditions: Sequence[Condition],
    extra: Sequence[Sql],
    after: SearchAfter | None = None,
    semi: Driver | None = None,
) -> Plan | None:
    """Documents in ``order`` read from the index in that order, each probed, and then those
    without an entry in document order: a page stops the walk when full, whatever the number
    of matches. ``kinds``: whether the name has key and range entries in ``collection``.
    ``None`` when it has both, or ranges and ``order`` names no unit (the index is not in one
    order then). ``after``: the walk starts after that position (a seek in the index).
    ``semi``: a driving condition whose matches are read once as a set that each index row is
    looked up in, instead of a probe per row (for a condition matching fewer than
    :data:`SET_LIMIT` documents: the walk then reads about ``page * N / matches`` rows)."""
    has_keys, has_ranges = kinds
    tests = list(extra) + [probe(tx, c) for c in conditions]
    if has_ranges and (has_keys or order.unit is None):
        return None
    beyond_pk = "<" if order.descending else ">"
    rest_tests = list(tests)
    if after is not None and after.value is None:
        # Past every document with a value: only those without one, after the position's.
        rest_tests.append(Sql(f"d.doc_pk {beyond_pk} ?", (after.pk,)))
    if has_keys:
        # The document's entry that sorts it: its largest key descending, smallest ascending.
        beyond = ">" if order.descending else "<"
        head = (
            "FROM index_keys s CROSS JOIN documents d WHERE s.collection = ? AND s.name = ? "
            "AND d.doc_pk = s.doc_pk"
        )
        once = Sql(
            "NOT EXISTS (SELECT 1 FROM index_keys o "
            f"WHERE o.doc_pk = s.doc_pk AND o.name = s.name AND o.key {beyond} s.key)"
        )
        params: tuple[Any, ...] = (collection, order.name)
        walk = "s.key DESC, s.doc_pk DESC" if order.descending else "s.key, s.doc_pk"
        present = Sql(
            "EXISTS (SELECT 1 FROM index_keys x WHERE x.doc_pk = d.doc_pk AND x.name = ?)",
            (order.name,),
        )
    elif has_ranges:
        # Largest high descending, smallest low ascending; ties within a document go to the
        # entry first in (unit, low, high) order, so each document is read once.
        value, other = ("high", "low") if order.descending else ("low", "high")
        beyond = ">" if order.descending else "<"
        head = (
            "FROM index_ranges s CROSS JOIN documents d WHERE s.collection = ? AND s.name = ? "
            "AND s.unit = ? AND d.doc_pk = s.doc_pk"
        )
        once = Sql(
            "NOT EXISTS (SELECT 1 FROM index_ranges o "
            "WHERE o.doc_pk = s.doc_pk AND o.name = s.name AND o.unit = s.unit "
            f"AND (o.{value} {beyond} s.{value} OR (o.{value} = s.{value} "
            f"AND o.{other} < s.{other})))"
        )
        params = (collection, order.name, order.unit)
        walk = f"s.{value} DESC, s.doc_pk DESC" if order.descending else f"s.{value}, s.doc_pk"
        present = Sql(
            "EXISTS (SELECT 1 FROM index_ranges x WHERE x.doc_pk = d.doc_pk AND x.name = ? "
            "AND x.unit = ?)",
            (order.name, order.unit),
        )
    else:
        return Plan(
            _where("FROM documents d WHERE d.collection = ?", (collection,), rest_tests),
            Sql("d.doc_pk DESC" if order.descending else "d.doc_pk"),
        )
    missing = Sql(f"NOT {present.text}", present.params)
    rest = _where("FROM documents d WHERE d.collection = ?", (collection,), [*rest_tests, missing])
    rest_order = Sql("d.doc_pk DESC" if order.descending else "d.doc_pk")
    if after is not None and after.value is None:
        return Plan(rest, rest_order)
    # The walk tests each index row before it reads the document (s, not d), the cheapest
    # tests first: the position (a seek), the set of the driving condition's matches (read
    # once), the other conditions (a probe each), and last whether the row is the one that
    # sorts its document.
    walked: list[Sql] = []
    if after is not None:
        # A row value compares as the index is ordered, so the walk seeks to the position.
        column = "key" if has_keys else ("high" if order.descending else "low")
        walked.append(Sql(f"(s.{column}, s.doc_pk) {beyond_pk} (?, ?)", (after.value, after.pk)))
    if semi is not None:
        # "IS TRUE" keeps PostgreSQL from making the IN a semi-join (which sorts every match
        # instead of walking): it stays a hashed subplan, built once. SQLite builds the set.
        walked.append(Sql(f"(s.doc_pk IN ({semi.sql.text})) IS TRUE", semi.sql.params))
    walked += list(extra)
    walked += [
        probe(tx, c, doc="s.doc_pk") for c in conditions if semi is None or c is not semi.condition
    ]
    walked.append(once)
    return Plan(_where(head, params, walked), Sql(walk), Plan(rest, rest_order))


def keyset_kind(orders: Sequence[Order], kinds: Mapping[str, tuple[bool, bool]]) -> str | None:
    """``"keys"``, ``"ranges"`` or ``"none"`` (the entries that sort a search by ``orders``)
    when a page of it can say where each document stands (one :class:`IndexOrder` whose name
    has key entries or range entries, not both); ``None`` otherwise."""
    if len(orders) != 1 or not isinstance(orders[0], IndexOrder):
        return None
    has_keys, has_ranges = kinds.get(orders[0].name, (True, True))
    if has_keys and has_ranges:
        return None
    return "keys" if has_keys else "ranges" if has_ranges else "none"


def value_sql(order: IndexOrder, kind: str, doc: str = "d.doc_pk") -> Sql:
    """The value that sorts document ``doc`` by ``order`` (as :func:`order_sql` takes it; NULL
    when it has none). ``kind``: see :func:`keyset_kind`."""
    if kind == "none":
        return Sql("NULL")
    pick = "max" if order.descending else "min"
    if kind == "keys":
        return Sql(
            f"(SELECT {pick}(i.key) FROM index_keys i WHERE i.doc_pk = {doc} AND i.name = ?)",
            (order.name,),
        )
    column = "high" if order.descending else "low"
    unit = order.unit is not None
    return Sql(
        f"(SELECT {pick}(i.{column}) FROM index_ranges i WHERE i.doc_pk = {doc} AND i.name = ?"
        + (" AND i.unit = ?)" if unit else ")"),
        (order.name, order.unit) if unit else (order.name,),
    )


def _check_position(after: SearchAfter, kind: str) -> None:
    value = after.value
    fits = (
        value is None
        or (kind == "keys" and isinstance(value, str))
        or (kind == "ranges" and isinstance(value, float) and not math.isnan(value))
    )
    if not fits or isinstance(after.pk, bool) or not isinstance(after.pk, int):
        raise ParameterValidationError(
            f"the position {after!r} does not fit this search (sorted by {kind})"
        )


def _after_test(order: IndexOrder, kinds: tuple[bool, bool], after: SearchAfter) -> Sql:
    """Documents after ``after`` in ``order`` (documents without a value come last)."""
    kind = keyset_kind([order], {order.name: kinds})
    assert kind is not None
    beyond = "<" if order.descending else ">"
    if after.value is None:
        value = value_sql(order, kind)
        return Sql(f"({value.text} IS NULL AND d.doc_pk {beyond} ?)", (*value.params, after.pk))
    value = value_sql(order, kind)
    return Sql(
        f"({value.text} {beyond} ? OR ({value.text} = ? AND d.doc_pk {beyond} ?) "
        f"OR {value.text} IS NULL)",
        (
            *value.params,
            after.value,
            *value.params,
            after.value,
            after.pk,
            *value.params,
        ),
    )


def entry_kinds(tx: Transaction, collection: str, name: str) -> tuple[bool, bool]:
    """Whether ``name`` has key entries, and range entries, in ``collection``."""
    rows = tx.search(
        "SELECT EXISTS (SELECT 1 FROM index_keys WHERE collection = ? AND name = ?), "
        "EXISTS (SELECT 1 FROM index_ranges WHERE collection = ? AND name = ?)",
        (collection, name, collection, name),
    )
    return (bool(rows[0][0]), bool(rows[0][1])) if rows else (False, False)


def _where(head: str, params: tuple[Any, ...], tests: Sequence[Sql]) -> Sql:
    text = head + "".join(f" AND {t.text}" for t in tests)
    return Sql(text, params + tuple(v for t in tests for v in t.params))


def _capped_count(tx: Transaction, sql: Sql, limit: int) -> int:
    """How many index rows ``sql`` reads, counted up to ``limit``."""
    rows = tx.search(f"SELECT count(*) FROM ({sql.text} LIMIT {int(limit)}) c", list(sql.params))
    return int(rows[0][0]) if rows else 0
