"""A cursor walk of 100,000 documents while writers update and insert: each seen once, first vs
last page time.

The store holds the walked collection and, interleaved with it, another of the same size (so the
walk must find its own rows among others). Writer tasks keep updating documents of the walked
collection (ahead of and behind the cursor) and inserting new ones while ``Store.walk`` pages
through it; at the end every document that existed before the walk must have been returned
exactly once, and no document twice. Page times are the median of the first and of the last
``--edge`` pages. The baseline, in the same run, is offset paging (``Store.query``) of the same
collection: its last page must skip everything before it. Target: the walk's last page within
1.5x of its first.

Run: ./dev bench cursor_walk [--documents N] [--page-size P] [--writers W] [--writes-per-page K]
     [--pg DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, pg_schema_dsn, print_table
from tidemark.core import canonical_bytes, content_hash
from tidemark.store import Store, open_store

STAMP = "2025-01-01T00:00:00.000Z"
WALKED = "bench:walked"
OTHER = "bench:other"


async def fill(store: Store, documents: int, chunk: int = 20_000) -> list[str]:
    """Insert ``documents`` documents into each collection, interleaved; returns the walked ids."""
    ids: list[str] = []
    version = 0

    def insert(rows: list[tuple[Any, ...]]) -> Callable[[Any], None]:
        def work(tx: Any) -> None:
            tx.executemany(
                "INSERT INTO documents (collection, id, body, content_hash, content_version, "
                "content_modified_at, identity_version, identity_modified_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        return work

    for start in range(0, documents, chunk):
        rows = []
        for n in range(start, min(documents, start + chunk)):
            for collection in (WALKED, OTHER):
                version += 1
                id = uuid.uuid4().hex
                body = canonical_bytes({"n": n, "name": f"document {n}"}).decode()
                rows.append(
                    (
                        collection,
                        id,
                        body,
                        content_hash(body),
                        version,
                        STAMP,
                        version,
                        STAMP,
                        STAMP,
                    )
                )
                if collection == WALKED:
                    ids.append(id)
        await store.engine.write(insert(rows))
    top = version

    def set_counter(tx: Any) -> None:
        if tx.engine_name == "sqlite":
            tx.execute("UPDATE change_version_counter SET value = ?", (top,))
        else:
            tx.execute("SELECT setval('change_version_seq', ?)", (top,))

    await store.engine.write(set_counter)
    # a server's database has statistics (autovacuum analyses a table this size at once)
    await store.engine.write(lambda tx: tx.execute("ANALYZE"))
    return ids


async def walk_with_writers(
    store: Store, ids: list[str], page_size: int, writers: int, per_page: int
) -> tuple[list[float], Counter[str], int, int]:
    """Walk the collection while ``writers`` tasks write, at least ``per_page`` writes between
    two pages; returns page ms, ids seen, updates, inserts."""
    stop = asyncio.Event()
    wrote = asyncio.Event()
    written = {"updates": 0, "inserts": 0}

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            if rng.random() < 0.8:
                id = rng.choice(ids)
                await store.put(WALKED, id, {"n": -1, "touched": rng.random()})
                written["updates"] += 1
            else:
                await store.put(WALKED, f"new-{seed}-{written['inserts']}", {"n": -2})
                written["inserts"] += 1
            wrote.set()

    tasks = [asyncio.create_task(writer(seed)) for seed in range(writers)]
    seen: Counter[str] = Counter()
    times: list[float] = []
    cursor = None
    try:
        while True:
            started = time.perf_counter()
            page = await store.walk(WALKED, cursor=cursor, limit=page_size)
            times.append((time.perf_counter() - started) * 1000)
            seen.update(d.id for d in page.items)
            if page.next is None:
                break
            cursor = page.next
            target = len(times) * per_page
            while written["updates"] + written["inserts"] < target:
                wrote.clear()
                await wrote.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return times, seen, written["updates"], written["inserts"]


async def offset_times(store: Store, documents: int, page_size: int, repeat: int) -> list[float]:
    """Median ms of an offset page at the start and at the end of the collection."""
    result = []
    for offset in (0, max(0, documents - page_size)):
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            await store.query(WALKED, limit=page_size, offset=offset)
            samples.append((time.perf_counter() - started) * 1000)
        result.append(statistics.median(samples))
    return result


async def measure(
    url: str, documents: int, page_size: int, writers: int, per_page: int, edge: int
) -> list[Any]:
    store = await open_store(url)
    try:
        print(f"  filling {documents:,} + {documents:,} documents …", flush=True)
        ids = await fill(store, documents)
        print("  walking with writers …", flush=True)
        times, seen, updates, inserts = await walk_with_writers(
            store, ids, page_size, writers, per_page
        )
        missing = sum(1 for id in ids if seen[id] == 0)
        repeated = sum(1 for count in seen.values() if count > 1)
        first, last = statistics.median(times[:edge]), statistics.median(times[-edge - 1 : -1])
        offset_first, offset_last = await offset_times(store, documents, page_size, edge)
        verdict = "ok" if missing == 0 and repeated == 0 else "FAILED"
        return [
            len(times),
            updates,
            inserts,
            f"{missing}/{repeated} {verdict}",
            first,
            last,
            f"{last / first:.2f}x",
            offset_first,
            offset_last,
            f"{offset_last / offset_first:.2f}x",
        ]
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000, help="documents walked")
    parser.add_argument("--page-size", type=int, default=500, help="documents per page")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer tasks")
    parser.add_argument("--writes-per-page", type=int, default=5, help="writes between pages")
    parser.add_argument("--edge", type=int, default=10, help="pages averaged at each end")
    parser.add_argument("--pg", default=None, help="also measure PostgreSQL at this DSN")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        engines: list[tuple[str, str, str | None]] = [("sqlite", f"{tmp}/walk.db", None)]
        schema = f"bench_walk_{os.getpid()}"
        if args.pg:
            engines.append(("postgresql", pg_schema_dsn(args.pg, schema), args.pg))
        for engine, url, dsn in engines:
            print(f"{engine}:", flush=True)
            try:
                figures = asyncio.run(
                    measure(
                        url,
                        args.documents,
                        args.page_size,
                        args.writers,
                        args.writes_per_page,
                        args.edge,
                    )
                )
            finally:
                if dsn:
                    drop_schema(dsn, schema)
            rows.append([engine, args.documents, *figures])
    print_table(
        "cursor_walk: Store.walk over a collection while writers update and insert "
        f"(pages of {args.page_size}; median ms of {args.edge} pages at each end)",
        [
            "engine",
            "documents",
            "pages",
            "updates",
            "inserts",
            "missing/repeated",
            "first ms",
            "last ms",
            "last/first",
            "offset first ms",
            "offset last ms",
            "offset last/first",
        ],
        rows,
    )
    print(
        "\ntarget: every document once (missing/repeated 0/0) and the walk's last page within "
        "1.5x of its first; offset paging is the baseline whose last page grows with the depth"
    )
    for row in rows:
        ratio = float(row[8].rstrip("x"))
        if not row[5].endswith("ok") or ratio > 1.5:
            print(f"MISSED on {row[0]}: {row[5]}, last/first {row[8]}")


if __name__ == "__main__":
    main()
