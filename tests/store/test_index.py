"""The search index: entries written with documents, each condition kind, orders, consistency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import pytest

from tests.store import samples
from tidemark.core import (
    ManualClock,
    ParameterValidationError,
    PreconditionFailedError,
    UnresolvedReferenceError,
)
from tidemark.store import (
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
    PutDocument,
    RangeEntry,
    RangeMatch,
    SearchAfter,
    Store,
    Unmatched,
    open_store,
)

C = "t:things"


class ThingIndexer:
    """Keys from ``tags`` and ``name`` (lower-cased), ranges from ``span`` and ``weight``."""

    fingerprint = "things/1"

    def entries(self, collection: str, body: Mapping[str, Any]) -> Iterable[IndexEntry]:
        for tag in body.get("tags", []):
            yield KeyEntry("tag", tag)
        if "name" in body:
            yield KeyEntry("name", body["name"].lower())
        if "span" in body:
            yield RangeEntry("span", "", *body["span"])
        if "weight" in body:
            yield RangeEntry("weight", body["weight"]["unit"], *[body["weight"]["value"]] * 2)


@pytest.fixture
async def things(store_url: str, clock: ManualClock) -> AsyncIterator[Store]:
    store = await open_store(store_url, clock=clock)
    try:
        await (await store.register_indexer("t:", ThingIndexer())).wait()
        yield store
    finally:
        await store.close()


async def put_all(store: Store, bodies: dict[str, dict[str, Any]]) -> None:
    for id, body in bodies.items():
        await store.put(C, id, body)


async def ids(store: Store, *conditions: Any, **options: Any) -> list[str]:
    return [d.id for d in (await store.search(C, conditions, limit=100, **options)).items]


async def entry_rows(store: Store, table: str = "index_keys") -> list[tuple[Any, ...]]:
    assert table in ("index_keys", "index_ranges")

    def read(tx: Any) -> list[tuple[Any, ...]]:
        rows = tx.query(
            f"SELECT d.id, i.name, {'i.key' if table == 'index_keys' else 'i.unit, i.low, i.high'} "
            f"FROM {table} i JOIN documents d ON d.doc_pk = i.doc_pk ORDER BY 1, 2, 3"
        )
        return [tuple(r) for r in rows]

    return await store.engine.read(read)


async def test_key_in_matches_any_of_its_keys_in_insertion_order(things: Store):
    await put_all(
        things,
        {
            "c": {"tags": ["red", "big"]},
            "a": {"tags": ["blue"]},
            "b": {"tags": ["red"]},
            "d": {"tags": []},
        },
    )
    assert await ids(things, KeyIn("tag", ["red"])) == ["c", "b"]
    assert await ids(things, KeyIn("tag", ["red", "blue"])) == ["c", "a", "b"]
    assert await ids(things, KeyIn("tag", ["red"]), order="-id") == ["b", "c"]
    assert await ids(things, KeyIn("tag", [])) == []
    assert await ids(things, KeyIn("tag", ["green"])) == []
    page = await things.search(
        C, [KeyIn("tag", ["red", "blue"])], limit=1, offset=1, total_count=True
    )
    assert [d.id for d in page.items] == ["a"] and page.total == 3


async def test_conditions_are_anded_whichever_drives(things: Store):
    bodies = {f"n{i}": {"tags": ["common"] + (["rare"] if i in (3, 7) else [])} for i in range(10)}
    await put_all(things, bodies)
    assert await ids(things, KeyIn("tag", ["common"]), KeyIn("tag", ["rare"])) == ["n3", "n7"]
    assert await ids(things, KeyIn("tag", ["rare"]), KeyIn("tag", ["common"])) == ["n3", "n7"]
    assert await ids(things, KeyIn("tag", ["rare"]), KeyIn("tag", ["none"])) == []


async def test_key_prefix_and_contains(things: Store):
    await put_all(
        things,
        {"a": {"name": "Anderson"}, "b": {"name": "Andrews"}, "c": {"name": "Sandy"}, "d": {}},
    )
    assert await ids(things, KeyPrefix("name", "and")) == ["a", "b"]
    assert await ids(things, KeyPrefix("name", "andr")) == ["b"]
    assert await ids(things, KeyPrefix("name", "")) == ["a", "b", "c"]
    assert await ids(things, KeyContains("name", "and")) == ["a", "b", "c"]
    assert await ids(things, KeyContains("name", "dy")) == ["c"]
    assert await ids(things, KeyContains("name", "%")) == []


async def test_missing_and_not(things: Store):
    await put_all(
        things,
        {
            "a": {"tags": ["x"], "span": [0, 1]},
            "b": {"tags": ["y"]},
            "c": {"span": [5, 6]},
            "d": {},
        },
    )
    assert await ids(things, Missing("tag")) == ["c", "d"]
    assert await ids(things, Missing("tag", missing=False)) == ["a", "b"]
    assert await ids(things, Missing("span", missing=False)) == ["a", "c"]
    # Not: every document without a matching entry, including those without any entry
    assert await ids(things, Not(KeyIn("tag", ["x"]))) == ["b", "c", "d"]
    assert await ids(things, Not(RangeMatch("span", "gt", 2, 2))) == ["a", "b", "d"]
    assert await ids(things, Not(Missing("tag")), Not(KeyIn("tag", ["y"]))) == ["a"]


async def test_any_of_ors_conditions_of_different_kinds(things: Store):
    await put_all(
        things,
        {"a": {"tags": ["x"]}, "b": {"name": "Bob"}, "c": {"span": [10, 20]}, "d": {"tags": ["z"]}},
    )
    either = AnyOf([KeyIn("tag", ["x"]), KeyPrefix("name", "bo"), RangeMatch("span", "ge", 15, 15)])
    assert await ids(things, either) == ["a", "b", "c"]
    assert await ids(things, AnyOf([KeyIn("tag", ["x"]), Missing("tag")])) == ["a", "b", "c"]
    assert await ids(things, AnyOf([])) == []
    assert await ids(things, either, Not(KeyIn("tag", ["x"]))) == ["b", "c"]


# Targets [low, high] and what each comparison with the search interval [10, 20] matches.
SPANS = {
    "inside": [12, 18],
    "same": [10, 20],
    "left": [0, 5],
    "touch-left": [0, 10],
    "over-left": [5, 15],
    "right": [25, 30],
    "over-right": [15, 25],
    "around": [5, 25],
}
EXPECTED = {
    "eq": {"inside", "same"},
    "ne": {"left", "touch-left", "over-left", "right", "over-right", "around"},
    "gt": {"right", "over-right", "around"},
    "lt": {"left", "touch-left", "over-left", "around"},
    "ge": {"inside", "same", "right", "over-right", "around"},
    "le": {"inside", "same", "left", "touch-left", "over-left", "around"},
    "sa": {"right"},
    "eb": {"left"},
    "ap": {"inside", "same", "touch-left", "over-left", "over-right", "around"},
}


@pytest.mark.parametrize("op", sorted(EXPECTED))
async def test_range_comparisons_follow_fhir_range_rules(things: Store, op: str):
    await put_all(things, {name: {"span": span} for name, span in SPANS.items()})
    found = set(await ids(things, RangeMatch("span", op, 10, 20)))
    assert found == EXPECTED[op]
    # the same comparison, probed instead of driving (another condition drives)
    await put_all(things, {name: {"span": span, "tags": ["all"]} for name, span in SPANS.items()})
    probed = set(await ids(things, KeyIn("tag", ["all"]), RangeMatch("span", op, 10, 20)))
    assert probed == EXPECTED[op]


async def test_open_ranges_and_units(things: Store):
    inf = float("inf")
    await put_all(
        things,
        {
            "open": {"span": [100, inf]},
            "kg": {"weight": {"value": 70, "unit": "kg"}},
            "lb": {"weight": {"value": 70, "unit": "lb"}},
        },
    )
    assert await ids(things, RangeMatch("span", "gt", 1e9, 1e9)) == ["open"]
    assert await ids(things, RangeMatch("weight", "eq", 69.5, 70.5, unit="kg")) == ["kg"]
    assert await ids(things, RangeMatch("weight", "eq", 69.5, 70.5)) == ["kg", "lb"]
    assert await ids(things, RangeMatch("weight", "eq", 69.5, 70.5, unit="g")) == []


async def test_order_by_an_index_name_puts_documents_without_it_last(things: Store):
    await put_all(
        things,
        {
            "m": {"name": "Mia", "span": [5, 6]},
            "a": {"name": "Abe", "span": [1, 9]},
            "z": {"name": "Zoe", "span": [3, 4]},
            "none": {},
        },
    )
    assert await ids(things, order=IndexOrder("name")) == ["a", "m", "z", "none"]
    assert await ids(things, order=IndexOrder("name", descending=True)) == ["z", "m", "a", "none"]
    assert await ids(things, order=IndexOrder("span")) == ["a", "z", "m", "none"]
    assert await ids(things, order=IndexOrder("span", descending=True)) == ["a", "m", "z", "none"]
    assert await ids(things, order=[IndexOrder("tag"), "-id"]) == ["none", "z", "a", "m"]


async def test_an_update_rewrites_the_entries_and_a_delete_removes_them(things: Store):
    await things.put(C, "a", {"tags": ["x", "y"], "span": [1, 2]})
    await things.put(C, "b", {"tags": ["x"]})
    await things.put(C, "a", {"tags": ["y", "z"], "span": [3, 4]})
    assert await entry_rows(things) == [
        ("a", "tag", "y"),
        ("a", "tag", "z"),
        ("b", "tag", "x"),
    ]
    assert await entry_rows(things, "index_ranges") == [("a", "span", "", 3.0, 4.0)]
    assert await ids(things, KeyIn("tag", ["x"])) == ["b"]
    await things.delete(C, "a")
    assert await entry_rows(things) == [("b", "tag", "x")]
    assert await entry_rows(things, "index_ranges") == []
    assert await ids(things, KeyIn("tag", ["y"])) == []


async def test_long_keys_match_exactly_and_by_their_first_characters(things: Store):
    long_a, long_b = "q" * 300 + "a", "q" * 300 + "b"
    await put_all(things, {"a": {"name": long_a}, "b": {"name": long_b}})
    assert await ids(things, KeyIn("name", [long_b])) == ["b"]
    assert await ids(things, KeyPrefix("name", "q" * 150)) == ["a", "b"]


async def test_malformed_conditions_and_orders_are_400s(things: Store):
    with pytest.raises(ParameterValidationError):
        RangeMatch("span", "between", 1, 2)
    with pytest.raises(ParameterValidationError):
        RangeMatch("span", "eq", 2, 1)
    with pytest.raises(ParameterValidationError):
        await things.search(C, ["tag=x"])  # type: ignore[list-item]
    with pytest.raises(ParameterValidationError):
        await things.search(C, [], order="random")


async def test_a_failed_write_leaves_neither_document_nor_entries(store: Store):
    # Sample model: the course offering's entries are written right after its row, and then its
    # missing session reference fails the write: both are rolled back together.
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))
    with pytest.raises(UnresolvedReferenceError):
        await store.upsert("courseOfferings", samples.course_offering("ALG-1"))

    def offering_rows(tx: Any) -> list[tuple[Any, ...]]:
        return tx.query(
            "SELECT name, key FROM index_keys WHERE collection = 'ed-fi:courseOfferings'"
        )

    assert await store.engine.read(offering_rows) == []
    await store.upsert("sessions", samples.session(1))
    await store.upsert("courseOfferings", samples.course_offering("ALG-1"))
    assert ("localCourseCode", "ALG-1") in await store.engine.read(offering_rows)


async def test_an_indexer_that_fails_fails_the_write_before_it_starts(things: Store):
    class Broken:
        fingerprint = "broken/1"

        def entries(self, collection: str, body: Mapping[str, Any]) -> Iterable[IndexEntry]:
            raise ValueError("cannot index this")

    await (await things.register_indexer("b:", Broken())).wait()
    with pytest.raises(ValueError, match="cannot index"):
        await things.put("b:things", "x", {"a": 1})
    assert await things.get("b:things", "x") is None


SEARCHES: list[list[Condition]] = [
    [KeyIn("tag", ["a"])],
    [KeyIn("tag", ["a", "b"])],
    [KeyPrefix("name", "n1")],
    [RangeMatch("span", "ge", 10, 12)],
    [KeyIn("tag", ["a"]), RangeMatch("span", "lt", 20, 20)],
    [AnyOf([KeyIn("tag", ["b"]), RangeMatch("span", "sa", 25, 25)]), Not(KeyIn("tag", ["a"]))],
    [KeyContains("name", "2"), Missing("tag", missing=False)],
]


@pytest.mark.parametrize("limits", [(1, 1), (1, 10_000)], ids=["walk-and-probe", "sort-matches"])
async def test_every_plan_finds_the_same_documents(
    things: Store, monkeypatch: pytest.MonkeyPatch, limits: tuple[int, int]
):
    from tidemark.store import _index_sql

    bodies = {
        f"n{i}": {
            "tags": ["a"] if i % 3 == 0 else ["b"] if i % 3 == 1 else [],
            "name": f"n{i}",
            "span": [i, i + 1],
        }
        for i in range(30)
    }
    await put_all(things, bodies)
    for i in range(12):
        await things.upsert("schools", samples.school(i + 1, name="Odd" if i % 2 else "Even"))
    expected = {}
    for index, conditions in enumerate(SEARCHES):
        expected[index] = await ids(things, *conditions)
        assert expected[index], f"search {index} should match something"
    odd = await things.changes("ed-fi:schools", min_version=0, where={"nameOfInstitution": "Odd"})
    assert [d.body["schoolId"] for d in odd.items] == [2, 4, 6, 8, 10, 12]
    monkeypatch.setattr(_index_sql, "ESTIMATE_LIMIT", limits[0])
    monkeypatch.setattr(_index_sql, "SORT_LIMIT", limits[1])
    for index, conditions in enumerate(SEARCHES):
        assert await ids(things, *conditions) == expected[index]
        assert await ids(things, *conditions, order="-id") == expected[index][::-1]
    again = await things.changes(
        "ed-fi:schools",
        min_version=odd.items[1].content_version,
        where={"nameOfInstitution": "Odd"},
    )
    assert [d.body["schoolId"] for d in again.items] == [4, 6, 8, 10, 12]


# -- sorting by an index name, read from the index in order --------------------------------------
WALKED: dict[str, dict[str, Any]] = {
    "a": {"name": "Abe", "span": [1, 9], "tags": ["x"]},
    "b": {"name": "Bob", "span": [5, 5], "tags": ["x", "y"]},
    "c": {"span": [5, 7], "tags": ["y"]},
    "d": {"name": "Cy"},
    "e": {},
    "f": {"name": "abe", "span": [1, 2]},
}


async def pages(store: Store, order: IndexOrder, *conditions: Any, limit: int) -> list[str]:
    """Every page of a search, followed by offset as FHIR paging does."""
    found: list[str] = []
    while True:
        page = await store.search(C, conditions, order=order, limit=limit, offset=len(found))
        found += [d.id for d in page.items]
        if len(page.items) < limit:
            return found


async def test_a_sort_by_an_index_name_alone_walks_the_index_then_documents_without_it(
    things: Store,
):
    await put_all(things, WALKED)
    expected = {
        IndexOrder("name"): ["a", "f", "b", "d", "c", "e"],
        IndexOrder("name", descending=True): ["d", "b", "f", "a", "e", "c"],
        IndexOrder("span", unit=""): ["a", "f", "b", "c", "d", "e"],
        IndexOrder("span", descending=True, unit=""): ["a", "c", "b", "f", "e", "d"],
    }
    for order, want in expected.items():
        # Ties (and documents without the name) go newest first when the order descends.
        tie = "-id" if order.descending else "id"
        assert await ids(things, order=[order, tie]) == want, order  # sorts every match
        assert await ids(things, order=order) == want, order  # reads the index in order
        for limit in (1, 2, 4):
            assert await pages(things, order, limit=limit) == want, (order, limit)
        page = await things.search(C, order=order, limit=2, offset=3, total_count=True)
        assert ([d.id for d in page.items], page.total) == (want[3:5], 6)


async def test_a_walked_sort_probes_every_condition_and_counts_only_matches(things: Store):
    await put_all(things, WALKED)
    not_y = Not(KeyIn("tag", ("y",)))
    order = IndexOrder("span", descending=True, unit="")
    assert await pages(things, order, not_y, limit=1) == ["a", "f", "e", "d"]
    page = await things.search(C, [not_y], order=order, limit=1, offset=3, total_count=True)
    assert ([d.id for d in page.items], page.total) == (["d"], 4)
    assert await ids(things, KeyIn("tag", ("x",)), order=IndexOrder("name")) == ["a", "b"]


async def test_a_sort_by_ranges_of_one_unit_puts_documents_without_that_unit_last(
    things: Store,
):
    await put_all(
        things,
        {
            "lb": {"weight": {"value": 200, "unit": "lb"}},
            "heavy": {"weight": {"value": 90, "unit": "kg"}},
            "light": {"weight": {"value": 50, "unit": "kg"}},
        },
    )
    for order in (IndexOrder("weight", unit="kg"), [IndexOrder("weight", unit="kg"), "id"]):
        assert await ids(things, order=order) == ["light", "heavy", "lb"]


# -- continuing a sorted search after a position (keyset paging) --------------------------------
async def keyset_pages(
    store: Store, order: IndexOrder, *conditions: Any, limit: int, between: Any = None
) -> list[str]:
    """Every page of a search, each continuing after the last position of the one before;
    ``between(n)`` runs after page ``n``."""
    found: list[str] = []
    after: SearchAfter | None = None
    pages = 0
    while True:
        page = await store.search(C, conditions, order=order, limit=limit, after=after)
        assert len(page.positions) == len(page.items)
        found += [d.id for d in page.items]
        pages += 1
        if len(page.items) < limit:
            return found
        after = page.positions[-1]
        if between is not None:
            await between(pages)


async def test_a_sorted_search_continues_after_a_position(things: Store):
    await put_all(things, WALKED)
    expected = {
        IndexOrder("name"): ["a", "f", "b", "d", "c", "e"],
        IndexOrder("name", descending=True): ["d", "b", "f", "a", "e", "c"],
        IndexOrder("span", unit=""): ["a", "f", "b", "c", "d", "e"],
        IndexOrder("span", descending=True, unit=""): ["a", "c", "b", "f", "e", "d"],
        IndexOrder("tag"): ["a", "b", "c", "d", "e", "f"],
        IndexOrder("tag", descending=True): ["c", "b", "a", "f", "e", "d"],
    }
    for order, want in expected.items():
        for limit in (1, 2, 4, 6):
            assert await keyset_pages(things, order, limit=limit) == want, (order, limit)
    page = await things.search(C, order=IndexOrder("name"), limit=2)
    assert page.positions == [SearchAfter("abe", page.positions[0].pk), page.positions[1]]
    assert page.positions[1].value == "abe"  # "f" ties with "a" and comes after it
    assert (await things.search(C, order="id", limit=2)).positions == []


@pytest.mark.parametrize(
    "limits",
    [(1, 1, 1), (1, 1, 10_000), (1, 10_000, 10_000)],
    ids=["walk-and-probe", "walk-with-set", "sort-matches"],
)
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("name", ["span", "tag"])
async def test_keyset_pages_return_every_match_once_in_order_across_writes(
    things: Store,
    monkeypatch: pytest.MonkeyPatch,
    limits: tuple[int, int, int],
    descending: bool,
    name: str,
):
    from tidemark.store import _index_sql

    # Ties on every value, documents with several tags, and documents with neither.
    bodies: dict[str, dict[str, Any]] = {}
    for i in range(40):
        body: dict[str, Any] = {"name": f"n{i:02d}"}
        if i % 7:
            body["span"] = [i % 4, i % 4 + (i % 3)]
            body["tags"] = [f"t{i % 5}", f"t{(i * 3) % 7}"][: 1 + i % 2]
        bodies[f"n{i:02d}"] = body
    await put_all(things, bodies)
    monkeypatch.setattr(_index_sql, "ESTIMATE_LIMIT", limits[0])
    monkeypatch.setattr(_index_sql, "SORT_LIMIT", limits[1])
    monkeypatch.setattr(_index_sql, "SET_LIMIT", limits[2])
    order = IndexOrder(name, descending=descending, unit="" if name == "span" else None)
    condition = KeyPrefix("name", "n")  # every document: the same result by either plan
    want = await ids(things, condition, order=order)
    assert len(want) == 40
    assert await keyset_pages(things, order, condition, limit=7) == want

    late: list[str] = []

    async def write(page: int) -> None:
        # New documents on both sides of the position, and one not yet listed deleted.
        for j in range(3):
            id = f"late{page}{j}"
            late.append(id)
            await things.put(
                C,
                id,
                {"name": id, "span": [j, j + 1], "tags": [f"t{j}"]} if j < 2 else {"name": id},
            )
        if page == 2:
            await things.delete(C, want[-3])

    found = await keyset_pages(things, order, condition, limit=7, between=write)
    assert len(found) == len(set(found))
    kept = [id for id in want if id != want[-3]]
    assert [id for id in found if not id.startswith("late")] == kept
    final = await ids(things, condition, order=order)
    assert [id for id in final if id in set(found)] == found  # in order, late ones included


async def test_a_position_that_does_not_fit_the_search_is_refused(things: Store):
    await put_all(things, WALKED)
    span = IndexOrder("span", unit="")
    cases: list[tuple[str | IndexOrder | list[str | IndexOrder], SearchAfter, int]] = [
        (span, SearchAfter("text", 1), 0),
        (IndexOrder("name"), SearchAfter(1.0, 1), 0),
        (span, SearchAfter(1.0, 1), 2),
        ("id", SearchAfter(None, 1), 0),
        ([span, "id"], SearchAfter(1.0, 1), 0),
    ]
    for order, after, offset in cases:
        with pytest.raises(ParameterValidationError):
            await things.search(C, order=order, after=after, offset=offset)


# -- conditional put: search and write in one transaction ----------------------------------------
async def test_put_unless_matched_writes_only_when_nothing_matches(things: Store):
    written, found = await things.put_unless_matched(
        C, "one", {"tags": ["mrn-1"]}, [KeyIn("tag", ("mrn-1",))]
    )
    assert written is not None and written.created and found == []
    written, found = await things.put_unless_matched(
        C, "two", {"tags": ["mrn-1"]}, [KeyIn("tag", ("mrn-1",))]
    )
    assert written is None and [d.id for d in found] == ["one"]
    assert await things.get(C, "two") is None
    await things.put(C, "three", {"tags": ["mrn-1"]})
    written, found = await things.put_unless_matched(
        C, "four", {"tags": ["mrn-1"]}, [KeyIn("tag", ("mrn-1",))]
    )
    assert written is None and [d.id for d in found] == ["one", "three"]


async def test_concurrent_puts_unless_matched_with_the_same_conditions_write_once(
    things: Store,
):
    conditions = [KeyIn("tag", ("mrn-2",))]
    results = await asyncio.gather(
        *(things.put_unless_matched(C, f"p{n}", {"tags": ["mrn-2"]}, conditions) for n in range(12))
    )
    written = [w.document.id for w, _found in results if w is not None]
    assert len(written) == 1
    assert all([d.id for d in found] == written for w, found in results if w is None)
    assert await ids(things, *conditions) == written


async def test_write_many_refuses_a_put_whose_unless_conditions_match(things: Store):
    await things.put(C, "one", {"tags": ["mrn-3"]})
    unless = Unmatched((KeyIn("tag", ("mrn-3",)),))
    with pytest.raises(PreconditionFailedError) as raised:
        await things.write_many(
            [
                PutDocument(C, "other", {"tags": ["x"]}),
                PutDocument(C, "two", {"tags": ["mrn-3"]}, unless=unless),
            ]
        )
    assert raised.value.data["operation"] == 1
    assert await things.get(C, "other") is None  # all or nothing
    fresh = Unmatched((KeyIn("tag", ("mrn-4",)),))
    await things.write_many([PutDocument(C, "four", {"tags": ["mrn-4"]}, unless=fresh)])
    assert await ids(things, KeyIn("tag", ("mrn-4",))) == ["four"]
