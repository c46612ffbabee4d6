"""A page of 100 changes from a store holding 10,000 vs 1,000,000 journal rows.

Change Queries select "journal + verify": journal rows of the window in version order, kept when
the document still has that version, until the page is full. The page's cost should follow the
page, not the size of the journal. Target: the 1M page time within 1.5x of the 10k page time.

The stores are filled in bulk with SQL through the store's own engine (triggers write the journal
exactly as for API writes); every tenth document is updated once so the journal holds stale rows
that the verify step must skip. Then pages are read through ``Store.changes``.

Run: ./dev bench change_queries [--small N] [--large N] [--pg DSN]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, pg_schema_dsn, print_table, verdict
from tidemark.core import canonical_bytes, content_hash
from tidemark.store import Store, open_store

STAMP = "2025-01-01T00:00:00.000Z"
COLLECTION = "ed-fi:classPeriods"


def _rows(start: int, count: int) -> list[tuple[Any, ...]]:
    rows = []
    for n in range(start, start + count):
        body = canonical_bytes(
            {"classPeriodName": f"P{n}", "schoolReference": {"schoolId": 1}}
        ).decode()
        key = canonical_bytes({"classPeriodName": f"P{n}", "schoolId": 1}).decode()
        version = n + 1
        rows.append(
            (
                COLLECTION,
                uuid.uuid4().hex,
                body,
                content_hash(body),
                key,
                version,
                STAMP,
                version,
                STAMP,
                STAMP,
            )
        )
    return rows


async def fill(store: Store, documents: int, chunk: int = 20_000) -> int:
    """Insert ``documents`` documents and update every tenth once; returns journal rows."""

    def insert(rows: list[tuple[Any, ...]]) -> Any:
        def work(tx: Any) -> None:
            tx.executemany(
                "INSERT INTO documents (collection, id, body, content_hash, key_values, content_version, "
                "content_modified_at, identity_version, identity_modified_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        return work

    for start in range(0, documents, chunk):
        await store.engine.write(insert(_rows(start, min(chunk, documents - start))))
    updates = documents // 10
    base = documents

    def update(tx: Any) -> None:
        # every tenth document gets a new version: its first journal row becomes stale
        tx.executemany(
            # a fresh store numbers documents 1, 2, ... in insertion order, like their versions
            "UPDATE documents SET content_version = ? WHERE doc_pk = ?",
            [(base + i + 1, i * 10 + 1) for i in range(updates)],
        )

    await store.engine.write(update)
    top = base + updates

    def set_counter(tx: Any) -> None:
        if tx.engine_name == "sqlite":
            tx.execute("UPDATE change_version_counter SET value = ?", (top,))
        else:
            tx.execute("SELECT setval('change_version_seq', ?)", (top,))

    await store.engine.write(set_counter)
    return documents + updates


async def page_times(
    stores: dict[str, tuple[Store, int]], repeat: int = 30
) -> dict[str, dict[str, float]]:
    """Median milliseconds for a page of 100 at the start, middle and end of each store's
    journal. The stores' pages alternate, so that a busy moment of the machine falls on both."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
    for _ in range(repeat):
        for name, (store, newest) in stores.items():
            windows = {"first page": 1, "middle": newest // 2, "newest 100": max(1, newest - 99)}
            for label, low in windows.items():
                started = time.perf_counter()
                page = await store.changes(COLLECTION, min_version=low, limit=100)
                samples[name].setdefault(label, []).append((time.perf_counter() - started) * 1000)
                assert len(page.items) == 100 or label == "newest 100"
    return {
        name: {label: statistics.median(values) for label, values in by_label.items()}
        for name, by_label in samples.items()
    }


async def measure(
    small_url: str, small_documents: int, large_url: str, large_documents: int
) -> tuple[int, dict[str, float], int, dict[str, float]]:
    small = await open_store(small_url)
    large = await open_store(large_url)
    try:
        small_rows = await fill(small, small_documents)
        large_rows = await fill(large, large_documents)
        times = await page_times({"small": (small, small_rows), "large": (large, large_rows)})
        return small_rows, times["small"], large_rows, times["large"]
    finally:
        await small.close()
        await large.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--small", type=int, default=9_091, help="documents of the small store (~10k journal rows)"
    )
    parser.add_argument(
        "--large", type=int, default=909_091, help="documents of the large store (~1M journal rows)"
    )
    parser.add_argument("--pg", default=None, help="also measure PostgreSQL at this DSN")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        engines: list[tuple[str, Callable[[str], str], str | None]] = [
            ("sqlite", lambda name: f"{tmp}/{name}.db", None)
        ]
        if args.pg:
            pg: str = args.pg
            engines.append(
                ("postgresql", lambda name: pg_schema_dsn(pg, f"bench_cq_{name}_{os.getpid()}"), pg)
            )
        for engine, url_for, dsn in engines:
            try:
                small_rows, small, large_rows, large = asyncio.run(
                    measure(url_for("small"), args.small, url_for("large"), args.large)
                )
            finally:
                if dsn:
                    drop_schema(dsn, f"bench_cq_small_{os.getpid()}")
                    drop_schema(dsn, f"bench_cq_large_{os.getpid()}")
            for label in small:
                rows.append(
                    [
                        engine,
                        label,
                        small_rows,
                        small[label],
                        large_rows,
                        large[label],
                        f"{large[label] / small[label]:.2f}x",
                        verdict(large[label] / small[label] <= 1.5),
                    ]
                )
    print_table(
        "change_queries: median ms for one page of 100 live changes (Store.changes, journal + verify)",
        [
            "engine",
            "window",
            "journal rows",
            "page ms",
            "journal rows",
            "page ms",
            "large/small",
            "<= 1.5x",
        ],
        rows,
    )
    missed = [f"{row[0]} {row[1]}" for row in rows if row[-1] == "MISS"]
    print("\ntarget: the 1M page time within 1.5x of the 10k page time")
    print(f"MISSED: {', '.join(missed)}" if missed else "target met on every row")


if __name__ == "__main__":
    main()
