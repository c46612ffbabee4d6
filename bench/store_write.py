"""Upserts/s through the store API vs bare INSERTs of the same JSON rows, on SQLite and PostgreSQL.

The store does everything a write needs — validation against jsonSchemaForInsert, natural-key
lookup, reference resolution, change-version stamping, journal, history and reference rows — in
one transaction per call. The baseline inserts the same canonical JSON text into one plain table,
one transaction per row, through the same engine (same worker thread, group commit, durability
and client concurrency), so the ratio is the cost of the bookkeeping alone. A second baseline,
a bare sqlite3 loop on the caller's thread, is printed for reference. Target (SQLite, default
durability): the store stays within 2.0x of the bare insert through the engine.

Besides the rates, each side prints its process CPU per write and, on SQLite, the pages it
writes per commit (bytes written by the process, WAL frames and checkpoints, over the page
size) and the writes each commit carried: at 16 clients both sides commit groups of about 16
writes, so the gap is the pages and the CPU of each group.

Run: ./dev bench store_write [--rows N] [--concurrency C] [--repeat R] [--modes FULL,NORMAL]
     [--pg DSN | --no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, median, percentile, pg_schema_dsn, print_table, verdict
from tidemark.core import canonical_bytes
from tidemark.store import open_store
from tidemark.store._postgres import PostgresEngine
from tidemark.store._sqlite import SqliteEngine

TERM = "uri://ed-fi.org/TermDescriptor#Fall"
#: A WAL frame: a page and its 24-byte header.
_FRAME = 4096 + 24


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run: writes/s, process CPU seconds per write, and (SQLite) pages written per
    commit and writes per commit."""

    rate: float
    cpu: float
    pages_per_commit: float | None = None
    writes_per_commit: float | None = None


def _written() -> int | None:
    """Bytes this process has written with write(2) so far (Linux), or ``None``."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _Meter:
    """Bytes written and the engine's commits (SQLite) between :meth:`start` and :meth:`stop`."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._bytes = _written()
        self._commits = getattr(engine, "commits", None)
        self._writes = getattr(engine, "writes", None)

    def stop(self) -> tuple[float | None, float | None]:
        commits = getattr(self._engine, "commits", None)
        if commits is None or self._commits is None or commits == self._commits:
            return None, None
        done = commits - self._commits
        writes = (self._engine.writes - self._writes) / done
        now = _written()
        if now is None or self._bytes is None:
            return None, writes
        return (now - self._bytes) / _FRAME / done, writes


def offering(i: int, title: str) -> dict[str, Any]:
    return {
        "localCourseCode": f"C-{i:06d}",
        "localCourseTitle": title,
        "schoolReference": {"schoolId": 1},
        "sessionReference": {"schoolId": 1, "schoolYear": 2025, "sessionName": "Fall"},
    }


def workload(rows: int) -> list[dict[str, Any]]:
    """N inserts (two references each), then N updates of the same documents (history rows)."""
    return [offering(i, "Algebra") for i in range(rows)] + [
        offering(i, "Algebra I") for i in range(rows)
    ]


async def _seed(store: Any) -> None:
    """The documents every course offering references (and their own references)."""
    await store.upsert(
        "termDescriptors",
        {
            "namespace": "uri://ed-fi.org/TermDescriptor",
            "codeValue": "Fall",
            "shortDescription": "Fall",
        },
    )
    await store.upsert("schools", {"schoolId": 1, "nameOfInstitution": "Bench High"})
    await store.upsert(
        "sessions",
        {
            "schoolReference": {"schoolId": 1},
            "schoolYearTypeReference": {"schoolYear": 2025},
            "sessionName": "Fall",
            "beginDate": "2024-08-20",
            "endDate": "2024-12-20",
            "termDescriptor": TERM,
        },
    )


async def _phase(
    store: Any,
    bodies: list[dict[str, Any]],
    concurrency: int,
    latencies: list[float] | None = None,
) -> None:
    """Upsert ``bodies`` from ``concurrency`` tasks, each awaiting one call at a time."""

    async def lane(items: list[dict[str, Any]]) -> None:
        for body in items:
            began = time.perf_counter()
            await store.upsert("courseOfferings", body)
            if latencies is not None:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(lane(bodies[i::concurrency]) for i in range(concurrency)))


async def store_rate(
    url: str,
    bodies: list[dict[str, Any]],
    concurrency: int = 1,
    latencies: list[float] | None = None,
) -> Run:
    """Upserts/s through ``Store.upsert``, ``concurrency`` tasks each awaiting one call at a
    time, and the process CPU seconds per upsert (every thread: the event loop and the writer).

    Each call's duration (seconds) is appended to ``latencies`` when given.
    """
    store = await open_store(url)
    try:
        await _seed(store)
        half = len(bodies) // 2
        meter = _Meter(store.engine)
        cpu = time.process_time()
        started = time.perf_counter()
        for phase in (bodies[:half], bodies[half:]):  # all inserts, then all updates
            await _phase(store, phase, concurrency, latencies)
        elapsed = time.perf_counter() - started
        cpu_per_write = (time.process_time() - cpu) / len(bodies)
        return Run(len(bodies) / elapsed, cpu_per_write, *meter.stop())
    finally:
        await store.close()


async def page_breakdown(
    path: str, bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, tuple[int, Counter[str]]]:
    """The WAL frames of the store's commits by b-tree, for the insert and the update phase
    (SQLite, default durability): commits, and frames per table or index.

    Checkpoints are turned off for the run so that the WAL keeps every frame; a frame's page
    is named by the b-tree that holds it at the end of its phase (a page freed and reused in
    the same phase counts under its last owner)."""
    store = await open_store(f"sqlite:///{path}")
    found: dict[str, tuple[int, Counter[str]]] = {}
    try:
        await _seed(store)
        await store.engine.write(lambda tx: tx.execute("PRAGMA wal_autocheckpoint = 0"))
        half = len(bodies) // 2
        for label, phase in (("insert", bodies[:half]), ("update", bodies[half:])):
            start = await asyncio.to_thread(os.path.getsize, path + "-wal")
            await _phase(store, phase, concurrency)
            owners = await store.engine.read(
                lambda tx: {int(p): str(n) for n, p in tx.query("SELECT name, pageno FROM dbstat")}
            )
            wal = await asyncio.to_thread(Path(path + "-wal").read_bytes)
            found[label] = _frames(wal, start, owners)
    finally:
        await store.close()
    return found


def _frames(wal: bytes, start: int, owners: dict[int, str]) -> tuple[int, Counter[str]]:
    """Commits and frames by owner in ``wal`` from byte ``start`` on (frames of this WAL's
    generation only: their salts are the header's)."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    commits, pages = 0, Counter[str]()
    offset = max(start, 32)
    while offset + 24 + page_size <= len(wal):
        page, size = struct.unpack(">II", wal[offset : offset + 8])
        if wal[offset + 8 : offset + 16] != salts:
            break
        pages[owners.get(page, "(free)")] += 1
        commits += 1 if size else 0
        offset += 24 + page_size
    return commits, pages


async def engine_bare_rate(engine: Any, bodies: list[dict[str, Any]], concurrency: int) -> Run:
    """Bare INSERTs of the same JSON text through a store engine, one transaction per row:
    inserts/s and process CPU seconds per insert."""
    texts = [canonical_bytes(b).decode() for b in bodies]
    await engine.write(
        lambda tx: tx.execute("CREATE TABLE plain (pk BIGINT PRIMARY KEY, body TEXT NOT NULL)")
    )
    counter = iter(range(len(texts)))
    meter = _Meter(engine)
    cpu = time.process_time()
    started = time.perf_counter()
    lanes = [texts[i::concurrency] for i in range(concurrency)]

    async def lane(items: list[str]) -> None:
        for text in items:
            pk = next(counter)
            await engine.write(
                lambda tx, pk=pk, text=text: tx.execute(
                    "INSERT INTO plain (pk, body) VALUES (?, ?)", (pk, text)
                )
            )

    await asyncio.gather(*(lane(items) for items in lanes))
    rate = len(texts) / (time.perf_counter() - started)
    cpu_per_write = (time.process_time() - cpu) / len(texts)
    measured = meter.stop()
    await engine.close()
    return Run(rate, cpu_per_write, *measured)


async def sqlite_engine_bare_rate(
    path: str, bodies: list[dict[str, Any]], synchronous: str, concurrency: int
) -> Run:
    return await engine_bare_rate(SqliteEngine(path, synchronous=synchronous), bodies, concurrency)


async def pg_engine_bare_rate(dsn: str, bodies: list[dict[str, Any]], concurrency: int) -> Run:
    engine = PostgresEngine(dsn)
    await asyncio.to_thread(engine.open)
    return await engine_bare_rate(engine, bodies, concurrency)


def sqlite_bare_rate(path: str, bodies: list[dict[str, Any]], synchronous: str) -> float:
    """Bare INSERT + COMMIT per row into one plain table, same WAL and synchronous settings."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE plain (pk INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    texts = [canonical_bytes(b).decode() for b in bodies]
    started = time.perf_counter()
    for text in texts:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO plain (body) VALUES (?)", (text,))
        conn.execute("COMMIT")
    rate = len(texts) / (time.perf_counter() - started)
    conn.close()
    return rate


def pg_bare_rate(dsn: str, bodies: list[dict[str, Any]]) -> float:
    """Bare INSERT + COMMIT per row on one connection (synchronous_commit as configured)."""
    import psycopg

    texts = [canonical_bytes(b).decode() for b in bodies]
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE plain (pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body TEXT NOT NULL)"
        )
        conn.commit()
        started = time.perf_counter()
        for text in texts:
            conn.execute("INSERT INTO plain (body) VALUES (%s)", (text,), prepare=True)
            conn.commit()
        return len(texts) / (time.perf_counter() - started)


def _figure(values: list[float | None], fmt: str) -> str:
    known = [v for v in values if v is not None]
    return format(median(known), fmt) if known else "-"


def _pair(
    bare: Callable[[int], Run],
    store: Callable[[int], Run],
    repeat: int,
) -> list[Any]:
    """Run baseline and store alternately ``repeat`` times (the first of each pair changing
    every round, so a drift of the machine's load hits both sides alike): median rates, their
    ratio, the ratio range, and the medians of the CPU microseconds per write and (SQLite)
    pages per commit of each side, and the writes per commit of the store (figures that other
    work on the machine's cores disturbs less than the rates)."""
    bare_runs: list[Run] = []
    store_runs: list[Run] = []
    for attempt in range(repeat):
        if attempt % 2:
            store_runs.append(store(attempt))
            bare_runs.append(bare(attempt))
        else:
            bare_runs.append(bare(attempt))
            store_runs.append(store(attempt))
    ratios = [b.rate / s.rate for b, s in zip(bare_runs, store_runs, strict=True)]
    bare_rate, store_rate_ = (
        median([r.rate for r in bare_runs]),
        median([r.rate for r in store_runs]),
    )
    return [
        store_rate_,
        bare_rate,
        f"{bare_rate / store_rate_:.2f}x",
        f"{min(ratios):.2f}-{max(ratios):.2f}x",
        f"{median([r.cpu for r in store_runs]) * 1e6:.0f}",
        f"{median([r.cpu for r in bare_runs]) * 1e6:.0f}",
        _figure([r.pages_per_commit for r in store_runs], ".1f"),
        _figure([r.pages_per_commit for r in bare_runs], ".1f"),
        _figure([r.writes_per_commit for r in store_runs], ".1f"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=2000, help="documents (each inserted then updated)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="concurrent clients of the second run"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="alternating runs per row (medians are printed)"
    )
    parser.add_argument(
        "--modes", default="FULL,NORMAL", help="SQLite synchronous modes to run, comma-separated"
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the WAL frames by b-tree (SQLite)"
    )
    args = parser.parse_args()
    bodies = workload(args.rows)
    rows: list[list[Any]] = []
    latencies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in [m.strip().upper() for m in args.modes.split(",") if m.strip()]:
            raw = median(
                [
                    sqlite_bare_rate(str(Path(tmp) / f"raw-{mode}-{i}.db"), bodies, mode)
                    for i in range(args.repeat)
                ]
            )
            for clients in (1, args.concurrency):
                tag = f"{mode}-{clients}"

                def bare_run(
                    i: int, tag: str = tag, mode: str = mode, clients: int = clients
                ) -> Run:
                    path = f"{tmp}/bare-{tag}-{i}.db"
                    return asyncio.run(sqlite_engine_bare_rate(path, bodies, mode, clients))

                def store_run(
                    i: int, tag: str = tag, mode: str = mode, clients: int = clients
                ) -> Run:
                    url = f"sqlite:///{tmp}/store-{tag}-{i}.db?synchronous={mode}"
                    calls = latencies.setdefault(f"sqlite {mode}", []) if clients == 1 else None
                    return asyncio.run(store_rate(url, bodies, clients, calls))

                measured = _pair(bare_run, store_run, args.repeat)
                label = f"sqlite {mode}" + (" (default)" if mode == "FULL" else "")
                rows.append([label, clients, *measured, raw])
        breakdown = (
            None
            if args.no_breakdown
            else asyncio.run(page_breakdown(f"{tmp}/pages.db", bodies, args.concurrency))
        )
    if not args.no_pg:
        schema = f"bench_{os.getpid()}"
        created: list[str] = []

        def fresh(name: str) -> str:
            created.append(name)
            return pg_schema_dsn(args.pg, name)

        try:
            raw_pg = pg_bare_rate(fresh(schema + "_raw"), bodies)
            for clients in (1, args.concurrency):

                def pg_bare_run(i: int, clients: int = clients) -> Run:
                    dsn = fresh(f"{schema}_b{clients}_{i}")
                    return asyncio.run(pg_engine_bare_rate(dsn, bodies, clients))

                def pg_store_run(i: int, clients: int = clients) -> Run:
                    dsn = fresh(f"{schema}_s{clients}_{i}")
                    calls = latencies.setdefault("postgresql", []) if clients == 1 else None
                    return asyncio.run(store_rate(dsn, bodies, clients, calls))

                measured = _pair(pg_bare_run, pg_store_run, args.repeat)
                rows.append(["postgresql", clients, *measured, raw_pg])
        finally:
            for name in created:
                drop_schema(args.pg, name)
    print_table(
        f"store_write: {len(bodies)} upserts ({args.rows} inserts + {args.rows} updates of courseOfferings "
        f"with 2 references each), one transaction per call; medians of {args.repeat} alternating runs",
        [
            "engine",
            "clients",
            "store upserts/s",
            "bare inserts/s (same engine)",
            "bare/store",
            "per-run range",
            "store CPU us/write",
            "bare CPU us/write",
            "store pages/commit",
            "bare pages/commit",
            "writes/commit",
            "raw sqlite3/psycopg loop/s",
        ],
        rows,
    )
    if breakdown is not None:
        (inserts, by_insert), (updates, by_update) = breakdown["insert"], breakdown["update"]
        names = sorted(set(by_insert) | set(by_update), key=lambda n: -by_insert[n] - by_update[n])
        print_table(
            f"store WAL frames per commit by b-tree, sqlite FULL, {args.concurrency} clients "
            f"({inserts} insert commits, {updates} update commits)",
            ["table or index", "insert phase", "update phase"],
            [
                [
                    name,
                    f"{by_insert[name] / max(inserts, 1):.1f}",
                    f"{by_update[name] / max(updates, 1):.1f}",
                ]
                for name in names
                if by_insert[name] + by_update[name] >= (inserts + updates) / 10
            ]
            + [
                [
                    "all",
                    f"{sum(by_insert.values()) / max(inserts, 1):.1f}",
                    f"{sum(by_update.values()) / max(updates, 1):.1f}",
                ]
            ],
        )
    print_table(
        "store upsert latency, 1 client, all runs (ms; the slowest include WAL checkpoints)",
        ["engine", "calls", "p50", "p99", "p99.9", "max"],
        [
            [
                name,
                len(values),
                *(f"{percentile(values, pct) * 1000:.2f}" for pct in (50, 99, 99.9)),
                f"{max(values) * 1000:.2f}",
            ]
            for name, values in latencies.items()
        ],
    )
    print(
        "\ntarget: on SQLite with the default durability (FULL) the store stays within 2.0x of the bare insert"
    )
    for row in rows:
        if row[0] == "sqlite FULL (default)":
            ratio = float(str(row[4]).rstrip("x"))
            note = " (1.39x when the target was set: it must not regress)" if row[1] == 1 else ""
            print(f"  {row[1]} client(s): {ratio:.2f}x: {verdict(ratio <= 2.0)}{note}")


if __name__ == "__main__":
    main()
