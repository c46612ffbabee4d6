"""A page of 100 FHIR search results from 1,000,000 indexed resources vs from 10,000.

    ./dev bench fhir_search [--small N] [--large N] [--repeat R] [--pg DSN | --no-pg]
                            [--keep DIR]

For each engine (SQLite, and PostgreSQL unless ``--no-pg``) and each size, a fresh store is
filled with Observations (50 codes, 50 patients, dates over three years, a quantity each).
The fill is a bulk load through the store's own engine: document rows as the store writes a
generic collection's, and index rows that are exactly the store's (each resource's entries come
from ``store.indexes`` with the FHIR indexer the app registered, the call a write makes); after
it PostgreSQL is vacuumed and analysed, as autovacuum would. Then each search below is answered
through the HTTP app (in-process ASGI), ``_count=100&_total=none``, ``--repeat`` rounds that
ask each size in turn; the median wall time is printed per size with the ratio large/small;
the sorted pages after the first are those the ``next`` links give. Target (issue 13): every
ratio ≤ 1.5; the last line says MET or MISS. ``--keep DIR`` keeps the filled stores (SQLite
files in ``DIR``, PostgreSQL schemas ``bench_fhir_keep_<size>``) and reuses those already
filled with the same number of Observations on a later run (the store applies its pending
migrations when it opens them). A selective filter sorted by another parameter is printed for
information: its walk of the sort's index reads about 100 * N / matches entries a page (the
filter's matches are read once as a set when fewer than 32,768).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, finish_bulk_load, pg_schema_dsn, print_table
from tidemark.api import ServerSettings, create_app
from tidemark.api._fhir import prepare_fhir_index
from tidemark.core import canonical_bytes, content_hash
from tidemark.store import KeyEntry, Store, open_store

LOINC = "http://loinc.org"
COLLECTION = "fhir:Observation"
STAMP = "2025-01-01T00:00:00.000Z"
CODES = 50
PATIENTS = 50
TARGET = 1.5

SEARCHES: list[tuple[str, str]] = [
    ("token", f"code={LOINC}|C7"),
    ("token, all match", "status=final"),
    ("reference", "patient=Patient/p7"),
    ("date", "date=ge2022-06-01"),
    ("quantity", "value-quantity=gt150"),
    ("token AND date", f"code={LOINC}|C3&date=lt2023"),
    ("string prefix", "code:text=code 1"),
    ("sorted by -date, all", "_sort=-date"),
    ("sorted by date, all", "_sort=date"),
    ("sorted by -date, page 2", "_sort=-date"),
    ("sorted by -date, page 5", "_sort=-date"),
]
#: Rows that follow the ``next`` link this many times before the timed page.
FOLLOWED = {"sorted by -date, page 2": 1, "sorted by -date, page 5": 4}
INFORMATIONAL: list[tuple[str, str]] = [
    ("token, sorted by -date", f"code={LOINC}|C7&_sort=-date"),
]


def observation(i: int) -> dict[str, Any]:
    day = i % (3 * 365)
    year, rest = 2021 + day // 365, day % 365
    month, dom = 1 + rest // 31 % 12, 1 + rest % 28
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": LOINC, "code": f"C{i % CODES}"}],
            "text": f"code {i % CODES}",
        },
        "subject": {"reference": f"Patient/p{i % PATIENTS}"},
        "effectiveDateTime": f"{year}-{month:02d}-{dom:02d}T08:00:00Z",
        "valueQuantity": {
            "value": i % 200,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


async def fill(store: Store, count: int, dsn: str | None = None, chunk: int = 5_000) -> float:
    """Bulk-insert ``count`` Observations with their index entries (see the module); the
    seconds it took. ``dsn``: the PostgreSQL store's URL, to vacuum it afterwards."""
    started = time.perf_counter()
    top = await store.newest_change_version()
    last = await store.engine.read(lambda tx: tx.query_one("SELECT max(doc_pk) FROM documents"))
    first_pk = int(last[0]) if last and last[0] is not None else 0
    pg = store.engine.name == "postgresql"
    insert = (
        "INSERT INTO documents (doc_pk, collection, id, body, content_hash, key_values, "
        "content_version, content_modified_at, identity_version, identity_modified_at, "
        "created_at, referential_id) "
        + ("OVERRIDING SYSTEM VALUE " if pg else "")
        + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for start in range(0, count, chunk):
        docs: list[tuple[Any, ...]] = []
        keys: list[tuple[Any, ...]] = []
        ranges: list[tuple[Any, ...]] = []
        for n in range(start, min(count, start + chunk)):
            body = observation(n)
            stored = {k: v for k, v in body.items() if k != "resourceType"}
            text = canonical_bytes(stored).decode()
            pk, version = first_pk + 1 + n, top + 1 + n
            docs.append(
                (
                    pk,
                    COLLECTION,
                    f"o{n}",
                    text,
                    content_hash(text),
                    None,
                    version,
                    STAMP,
                    version,
                    STAMP,
                    STAMP,
                    None,
                )
            )
            for entry in store.indexes.entries_for(COLLECTION, stored) or frozenset():
                if isinstance(entry, KeyEntry):
                    keys.append((COLLECTION, entry.name, entry.key, pk))
                else:
                    ranges.append((COLLECTION, entry.name, entry.unit, entry.low, entry.high, pk))

        def work(
            tx: Any,
            docs: list[tuple[Any, ...]] = docs,
            keys: list[tuple[Any, ...]] = keys,
            ranges: list[tuple[Any, ...]] = ranges,
        ) -> None:
            tx.executemany(insert, docs)
            tx.executemany(
                "INSERT INTO index_keys (collection, name, key, doc_pk) VALUES (?, ?, ?, ?)", keys
            )
            tx.executemany(
                "INSERT INTO index_ranges (collection, name, unit, low, high, doc_pk) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ranges,
            )

        await store.engine.write(work)
        done = min(count, start + chunk)
        if done % 100_000 == 0:
            print(f"    {done:,} written ({time.perf_counter() - started:.0f} s)", flush=True)
    await finish_bulk_load(store, top + count, dsn, "documents, index_keys, index_ranges")
    return time.perf_counter() - started


async def timings(apps: list[Any], repeat: int) -> list[dict[str, float]]:
    """Median seconds per search and app, through the apps; each round asks every app in
    turn, so that the load of a shared machine falls on both sizes alike."""
    found: list[dict[str, float]] = [{} for _ in apps]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench/fhir")
        for app in apps
    ]
    try:
        for label, query in [*SEARCHES, *INFORMATIONAL]:
            urls = []
            for http in clients:
                url = f"/Observation?{query}&_count=100&_total=none"
                first = await http.get(url)
                assert first.status_code == 200, first.text
                for _ in range(FOLLOWED.get(label, 0)):
                    url = next(k["url"] for k in first.json()["link"] if k["relation"] == "next")
                    first = await http.get(url)
                    assert first.status_code == 200, first.text
                urls.append(url)
            samples: list[list[float]] = [[] for _ in apps]
            for _ in range(repeat):
                for index, (http, url) in enumerate(zip(clients, urls, strict=True)):
                    started = time.perf_counter()
                    response = await http.get(url)
                    samples[index].append(time.perf_counter() - started)
                    assert response.status_code == 200
            for index, taken in enumerate(samples):
                found[index][label] = statistics.median(taken)
    finally:
        for http in clients:
            await http.aclose()
    return found


async def prepared(url: str, size: int) -> tuple[Store, Any]:
    """The store at ``url`` holding ``size`` Observations (filled unless kept from an earlier
    run), and the app over it."""
    store = await open_store(url)
    # The app registers the FHIR indexer (on the empty store: nothing to reindex, and its
    # fingerprint is recorded), so that the fill below uses its entries. A kept store filled
    # by an earlier run has the same fingerprint: nothing is reindexed either.
    app = create_app(store, ServerSettings(default_page_size=100, max_page_size=100))
    await (await prepare_fhir_index(app)).wait()
    held = await store.engine.read(
        lambda tx: tx.query_one(
            "SELECT count(*) FROM documents WHERE collection = ?", (COLLECTION,)
        )
    )
    if held and int(held[0]) == size:
        print(f"  reusing {size:,} Observations", flush=True)
    elif held and int(held[0]):
        await store.close()
        raise SystemExit(f"{url} holds {int(held[0]):,} Observations, not {size:,}: drop it")
    else:
        print(f"  filling {size:,} Observations …", flush=True)
        seconds = await fill(store, size, url if store.engine.name == "postgresql" else None)
        print(f"  filled in {seconds:.0f} s ({size / seconds:,.0f}/s)", flush=True)
    return store, app


async def engine_run(name: str, urls: tuple[str, str], sizes: tuple[int, int], repeat: int) -> bool:
    print(f"\n{name}")
    opened = [await prepared(urls[0], sizes[0]), await prepared(urls[1], sizes[1])]
    try:
        small, large = await timings([app for _, app in opened], repeat)
    finally:
        for store, _ in opened:
            await store.close()
    rows = []
    met = True
    for label, _ in [*SEARCHES, *INFORMATIONAL]:
        ratio = large[label] / small[label]
        informational = label in dict(INFORMATIONAL)
        if not informational and ratio > TARGET:
            met = False
        rows.append(
            [
                label + (" (info)" if informational else ""),
                small[label] * 1000,
                large[label] * 1000,
                f"{ratio:.2f}x",
            ]
        )
    print_table(
        f"{name}: a page of 100, median ms ({sizes[0]:,} vs {sizes[1]:,} Observations)",
        ["search", f"{sizes[0]:,}", f"{sizes[1]:,}", "ratio"],
        rows,
    )
    print(f"  {name}: {'MET' if met else 'MISS'} (every ratio ≤ {TARGET}x)")
    print("  load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return met


def kept_schema_dsn(dsn: str, schema: str) -> str:
    """``dsn`` with its ``search_path`` set to ``schema``, created when missing (never dropped)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--pg", default=os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1/test")
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the filled stores here and reuse them")
    args = parser.parse_args()
    sizes = (args.small, args.large)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        sqlite_urls = (str(folder / f"fhir-{sizes[0]}.db"), str(folder / f"fhir-{sizes[1]}.db"))
        results.append(asyncio.run(engine_run("SQLite", sqlite_urls, sizes, args.repeat)))
    if not args.no_pg:
        if args.keep:
            schemas = [f"bench_fhir_keep_{size}" for size in sizes]
            pg_urls = (kept_schema_dsn(args.pg, schemas[0]), kept_schema_dsn(args.pg, schemas[1]))
            results.append(asyncio.run(engine_run("PostgreSQL", pg_urls, sizes, args.repeat)))
        else:
            schemas = [f"bench_fhir_{secrets.token_hex(4)}" for _ in range(2)]
            try:
                pg_urls = (pg_schema_dsn(args.pg, schemas[0]), pg_schema_dsn(args.pg, schemas[1]))
                results.append(asyncio.run(engine_run("PostgreSQL", pg_urls, sizes, args.repeat)))
            finally:
                for schema in schemas:
                    drop_schema(args.pg, schema)
    print(f"\nOverall: {'MET' if all(results) else 'MISS'} (machine shared; rerun on a quiet one)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
