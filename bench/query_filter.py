"""A filtered page of 100 from 1,000,000 documents vs from 10,000, on SQLite and PostgreSQL.

Query-field filters are index lookups (the store's search index): a page should cost about the
same whatever the number of documents. The sample model's course offerings stand in for Ed-Fi
students and enrolments: ``localCourseTitle=Algebra`` (a rare string, like
``students?lastSurname=…``: 150 documents in either store), ``schoolId=7`` (a reference value,
like ``studentSchoolAssociations?schoolId=…``: 1 % of the documents) and both together.
Target: each page from the large store within 1.5x of the same page from the small one.

The stores are filled in bulk through the store's own engine: document rows as the store writes
them (canonical body, hash, natural key, stamps; the journal by the store's triggers) and index
rows that are exactly the store's: each document's entries come from ``store.indexes``, the same
call a write makes, and go into the same columns. Reference rows are left out (the reads do not
use them). After the fill, PostgreSQL is vacuumed and analysed, as autovacuum would do after a
bulk load; SQLite is left as is.
Then each page is read through ``Store.query(where=…)``, the call the Ed-Fi GET makes.

Run: ./dev bench query_filter [--small N] [--large N] [--repeat R] [--pg DSN | --no-pg] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, finish_bulk_load, pg_schema_dsn, print_table
from tidemark.core import content_hash
from tidemark.store import KeyEntry, Store, open_store
from tidemark.store._model import Facts

COLLECTION = "ed-fi:courseOfferings"
STAMP = "2025-01-01T00:00:00.000Z"
SCHOOLS = 100
RARE = 150  # documents titled "Algebra" in either store
TERM = "uri://ed-fi.org/TermDescriptor#Fall"
QUERIES: dict[str, dict[str, str]] = {
    "localCourseTitle=Algebra": {"localCourseTitle": "Algebra"},
    "schoolId=7": {"schoolId": "7"},
    "schoolId=7&localCourseTitle=Algebra": {"schoolId": "7", "localCourseTitle": "Algebra"},
}


def offering(n: int, documents: int) -> dict[str, Any]:
    school = 1 + n % SCHOOLS
    rare = n % (documents // RARE) == 0 and n // (documents // RARE) < RARE
    return {
        "localCourseCode": f"C-{n:07d}",
        "localCourseTitle": "Algebra" if rare else f"Title {n % 997}",
        "schoolReference": {"schoolId": school},
        "sessionReference": {"schoolId": school, "schoolYear": 2025, "sessionName": "Fall"},
    }


async def seed(store: Store) -> None:
    """The referenced documents, written through the store."""
    await store.upsert(
        "termDescriptors",
        {
            "namespace": "uri://ed-fi.org/TermDescriptor",
            "codeValue": "Fall",
            "shortDescription": "Fall",
        },
    )
    await store.upsert(
        "schoolYearTypes",
        {"schoolYear": 2025, "currentSchoolYear": True, "schoolYearDescription": "2024-2025"},
    )
    for school in range(1, SCHOOLS + 1):
        await store.upsert("schools", {"schoolId": school, "nameOfInstitution": f"School {school}"})
        await store.upsert(
            "sessions",
            {
                "schoolReference": {"schoolId": school},
                "schoolYearTypeReference": {"schoolYear": 2025},
                "sessionName": "Fall",
                "beginDate": "2024-08-20",
                "endDate": "2024-12-20",
                "totalInstructionalDays": 82,
                "termDescriptor": TERM,
            },
        )


async def fill(store: Store, documents: int, dsn: str | None = None, chunk: int = 10_000) -> None:
    """Bulk-insert ``documents`` course offerings with their index entries (see the module);
    ``dsn``: the PostgreSQL store's URL, to vacuum it afterwards."""
    spec = store.resource("courseOfferings")
    top = await store.newest_change_version()
    last = await store.engine.read(lambda tx: tx.query_one("SELECT max(doc_pk) FROM documents"))
    first_pk = int(last[0]) if last else 0
    pg = store.engine.name == "postgresql"
    insert = (
        "INSERT INTO documents (doc_pk, collection, id, body, content_hash, key_values, "
        "content_version, content_modified_at, identity_version, identity_modified_at, "
        "created_at, referential_id) "
        + ("OVERRIDING SYSTEM VALUE " if pg else "")
        + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for start in range(0, documents, chunk):
        docs: list[tuple[Any, ...]] = []
        keys: list[tuple[Any, ...]] = []
        for n in range(start, min(documents, start + chunk)):
            facts = Facts.of(spec, offering(n, documents))
            pk, version = first_pk + 1 + n, top + 1 + n
            docs.append(
                (
                    pk,
                    COLLECTION,
                    uuid.uuid4().hex,
                    facts.text,
                    content_hash(facts.text),
                    facts.key_values,
                    version,
                    STAMP,
                    version,
                    STAMP,
                    STAMP,
                    facts.referential_id,
                )
            )
            entries = store.indexes.entries_for(COLLECTION, facts.body) or frozenset()
            for entry in entries:
                assert isinstance(entry, KeyEntry)  # the model's entries are keys
                keys.append((COLLECTION, entry.name, entry.key, pk))

        def work(
            tx: Any, docs: list[tuple[Any, ...]] = docs, keys: list[tuple[Any, ...]] = keys
        ) -> None:
            tx.executemany(insert, docs)
            tx.executemany(
                "INSERT INTO index_keys (collection, name, key, doc_pk) VALUES (?, ?, ?, ?)", keys
            )

        await store.engine.write(work)
    await finish_bulk_load(store, top + documents, dsn, "documents, index_keys")


async def page_ms(store: Store, where: dict[str, str]) -> tuple[float, int]:
    """Milliseconds of one page of 100 through ``Store.query``, and the page's size."""
    started = time.perf_counter()
    page = await store.query(COLLECTION, where=where, limit=100)
    return (time.perf_counter() - started) * 1000, len(page.items)


async def measure(
    urls: dict[int, str], repeat: int
) -> dict[str, dict[int, tuple[float, int, int]]]:
    """Per query and store size: median page milliseconds, page size and matches. The stores
    are read alternately (small, large, small …) so that load on a shared machine weighs on
    both alike."""
    stores: dict[int, Store] = {}
    try:
        for size, url in urls.items():
            stores[size] = store = await open_store(url)
            await seed(store)
            started = time.perf_counter()
            await fill(store, size, url if store.engine.name == "postgresql" else None)
            print(
                f"  filled {size:,} documents in {time.perf_counter() - started:.0f} s", flush=True
            )
        result: dict[str, dict[int, tuple[float, int, int]]] = {}
        for label, where in QUERIES.items():
            samples: dict[int, list[float]] = {size: [] for size in stores}
            pages: dict[int, int] = {}
            for round_ in range(repeat + 5):  # the first five rounds warm up
                for size, store in stores.items():
                    ms, pages[size] = await page_ms(store, where)
                    if round_ >= 5:
                        samples[size].append(ms)
            result[label] = {}
            for size, store in stores.items():
                total = await store.query(COLLECTION, where=where, limit=0, total_count=True)
                result[label][size] = (
                    statistics.median(samples[size]),
                    pages[size],
                    int(total.total or 0),
                )
        return result
    finally:
        for store in stores.values():
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="documents of the small store")
    parser.add_argument("--large", type=int, default=1_000_000, help="documents of the large store")
    parser.add_argument("--repeat", type=int, default=50, help="pages read per query (median)")
    parser.add_argument(
        "--pg",
        default=os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    misses = 0
    with tempfile.TemporaryDirectory() as tmp:
        engines = ([] if args.no_sqlite else ["sqlite"]) + ([] if args.no_pg else ["postgresql"])
        for engine in engines:
            print(f"{engine}:", flush=True)
            sizes = (args.small, args.large)
            if engine == "sqlite":
                results = asyncio.run(
                    measure({size: f"{tmp}/store-{size}.db" for size in sizes}, args.repeat)
                )
            else:
                schemas = {size: f"bench_qf_{size}_{os.getpid()}" for size in sizes}
                try:
                    urls = {size: pg_schema_dsn(args.pg, name) for size, name in schemas.items()}
                    results = asyncio.run(measure(urls, args.repeat))
                finally:
                    for name in schemas.values():
                        drop_schema(args.pg, name)
            for label in QUERIES:
                small_ms, small_page, small_total = results[label][args.small]
                large_ms, large_page, large_total = results[label][args.large]
                ratio = large_ms / small_ms
                met = ratio <= 1.5
                misses += not met
                rows.append(
                    [
                        engine,
                        label,
                        f"{small_page}/{small_total:,}",
                        small_ms,
                        f"{large_page}/{large_total:,}",
                        large_ms,
                        f"{ratio:.2f}x",
                        "MET" if met else "MISS",
                    ]
                )
    print_table(
        f"query_filter: median ms of one page (limit 100) of filtered course offerings, "
        f"{args.small:,} vs {args.large:,} documents, medians of {args.repeat} reads",
        [
            "engine",
            "filter",
            "page/matches (small)",
            "ms",
            "page/matches (large)",
            "ms",
            "large/small",
            "target <= 1.5x",
        ],
        rows,
    )
    print(
        "\ntarget: each filtered page from the large store within 1.5x of the same page from the "
        + ("small one: MET" if not misses else f"small one: {misses} MISS")
    )


if __name__ == "__main__":
    main()
