"""Shared helpers for the benchmarks: timing, and printing figures with their ratio to a baseline.

Benchmarks print; they never assert on time. Each compares against a baseline measured in the
same run so that the ratio, not the absolute figure, is what carries across machines.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Wall seconds of the fastest of ``repeat`` calls of ``fn`` (GC collected before each)."""
    timings = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values`` by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print a plain fixed-width table (copied as-is into closing notes)."""
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def verdict(met: bool) -> str:
    """``MET`` or ``MISS``: how every benchmark marks a target, so a miss is never silent."""
    return "MET" if met else "MISS"


def ratio_line(
    label: str,
    measured: float,
    baseline: float,
    target: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
) -> str:
    """One line ``label: ratio (target ...)`` for the note, ending in ``MET`` or ``MISS`` when
    the ratio ``measured / baseline`` has a limit (``at_most`` / ``at_least``)."""
    ratio = measured / baseline if baseline else float("inf")
    line = f"{label}: {ratio:.2f}x ({target})"
    if at_most is not None:
        line += f": {verdict(ratio <= at_most)}"
    if at_least is not None:
        line += f": {verdict(ratio >= at_least)}"
    return line


def pg_schema_dsn(dsn: str, schema: str) -> str:
    """Create a fresh PostgreSQL schema and return ``dsn`` with its ``search_path`` set to it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a schema made by :func:`pg_schema_dsn`."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def finish_bulk_load(store: Any, newest: int, dsn: str | None, tables: str) -> None:
    """After rows were inserted behind the store's back: move the change-version counter (and on
    PostgreSQL the documents' serial) past them, then on PostgreSQL do what autovacuum would after
    a bulk load (statistics, and the visibility map that lets index-only scans skip the table)."""
    pg = store.engine.name == "postgresql"

    def finish(tx: Any) -> None:
        if pg:
            tx.execute("SELECT setval('change_version_seq', ?)", (newest,))
            tx.execute(
                "SELECT setval(pg_get_serial_sequence('documents', 'doc_pk'), max(doc_pk)) "
                "FROM documents"
            )
        else:
            tx.execute("UPDATE change_version_counter SET value = ?", (newest,))

    await store.engine.write(finish)
    if pg and dsn is not None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"VACUUM (ANALYZE) {tables}")
