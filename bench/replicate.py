"""Replication of an Ed-Fi API: the first extract against a bare download, and one incremental
round.

A source ``tidemark serve`` (sample model, SQLite) holds ``--documents`` schools. The baseline,
in the same run, is a bare paging loop that only downloads the same documents (cursor paging,
the replicator's page size, JSON parsed, nothing stored). The replicator's first round pages
the same way and also writes every document into a fresh SQLite replica, each page with its
position in one transaction. Target: at least 0.5x of the bare loop's rate. Then 10 documents
change on the source and one more round runs: its requests and documents read are printed
(they should follow the changes, not the size of the source).

With ``--pg DSN`` the replica (and the store-only ceiling) is a fresh PostgreSQL schema instead
of a SQLite file.

Run: ./dev bench replicate [--documents N] [--page-size P] [--pg DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, pg_schema_dsn, print_table, ratio_line
from tidemark.replicate import PAGE_SIZE, replicate
from tidemark.store import PutDocument, open_store


async def store_only(path: str | Path, documents: int, page_size: int) -> float:
    """Seconds to write the same documents straight into a fresh store, one transaction per
    page (no HTTP): the ceiling of the replicator's rate on this machine."""
    store = await open_store(path)
    try:
        started = time.perf_counter()
        await fill_store(store, documents, page_size)
        return time.perf_counter() - started
    finally:
        await store.close()


async def fill_store(store: Any, documents: int, chunk: int) -> None:
    for start in range(0, documents, chunk):
        await store.write_many(
            [
                PutDocument(
                    "ed-fi:schools",
                    uuid.uuid4().hex,
                    {"schoolId": n, "nameOfInstitution": f"School {n}"},
                )
                for n in range(start, min(documents, start + chunk))
            ]
        )


async def fill(path: Path, documents: int, chunk: int = 5_000) -> None:
    store = await open_store(path)
    try:
        await fill_store(store, documents, chunk)
    finally:
        await store.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = Path(sys.executable).parent / "tidemark"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tidemark.cli"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--db", str(db), "--port", str(port)], stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=0.5).status_code < 500:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the source did not start: {log.read_text()}")


async def bare_download(base: str, page_size: int) -> int:
    """Page through the schools with the cursor, parse each page, keep nothing."""
    count = 0
    async with httpx.AsyncClient(timeout=60) as http:
        url = f"{base}/data/v3/ed-fi/schools"
        params: dict[str, str | int] = {"limit": page_size}
        while True:
            response = await http.get(url, params=params)
            response.raise_for_status()
            count += len(response.json())
            token = response.headers.get("next-page-token")
            if not token:
                return count
            params = {"pageToken": token, "pageSize": page_size}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    parser.add_argument("--pg", default=None, help="replicate into PostgreSQL at this DSN")
    args = parser.parse_args()
    engine = "postgresql" if args.pg else "sqlite"
    print(
        "load average (1, 5, 15 min) at the start: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print(f"filling the source with {args.documents:,} schools …", flush=True)
        await fill(root / "source.db", args.documents)
        process, base = start_server(root / "source.db", root / "serve.log")
        try:
            started = time.perf_counter()
            downloaded = await bare_download(base, args.page_size)
            bare_seconds = time.perf_counter() - started
            assert downloaded == args.documents, downloaded

            started = time.perf_counter()
            replica: str | Path = root / "replica.db"
            if args.pg:
                replica = pg_schema_dsn(args.pg, "bench_replica")
            [first] = await replicate(base, replica, page_size=args.page_size)
            replicate_seconds = time.perf_counter() - started
            assert first.counters["written"] == args.documents, first.counters

            async with httpx.AsyncClient(base_url=f"{base}/data/v3/ed-fi/") as http:
                rows = (
                    await http.get(
                        "schools", params={"limit": 10, "offset": 5_000 % args.documents}
                    )
                ).json()
                for row in rows:
                    body = {k: v for k, v in row.items() if not k.startswith("_") and k != "id"}
                    body["nameOfInstitution"] += " (renamed)"
                    response = await http.put(f"schools/{row['id']}", json=body)
                    assert response.status_code == 204, response.text
            [second] = await replicate(base, replica, page_size=args.page_size)
            assert second.counters["written"] == len(rows), second.counters
        finally:
            process.terminate()
            process.wait(timeout=30)
        ceiling: str | Path = root / "ceiling.db"
        if args.pg:
            drop_schema(args.pg, "bench_replica")
            ceiling = pg_schema_dsn(args.pg, "bench_ceiling")
        ceiling_seconds = await store_only(ceiling, args.documents, args.page_size)
        if args.pg:
            drop_schema(args.pg, "bench_ceiling")

    bare_rate = args.documents / bare_seconds
    replicate_rate = args.documents / replicate_seconds
    print_table(
        f"initial replication of {args.documents:,} documents "
        f"(page size {args.page_size}, replica on {engine})",
        ["loop", "seconds", "documents/s"],
        [
            ["bare paging download", bare_seconds, bare_rate],
            ["tidemark replicate (first round)", replicate_seconds, replicate_rate],
            [
                "store write_many only (no HTTP)",
                ceiling_seconds,
                args.documents / ceiling_seconds,
            ],
        ],
    )
    print(
        ratio_line(
            "replicate vs bare download rate",
            replicate_rate,
            bare_rate,
            "target >= 0.5x",
            at_least=0.5,
        )
    )
    print(
        ratio_line(
            "replicate vs store write_many only",
            replicate_rate,
            args.documents / ceiling_seconds,
            "how close the replicator runs to the store's own write rate",
        )
    )
    print(
        "load average (1, 5, 15 min) at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    counts = second.counters
    print_table(
        f"incremental round: {len(rows)} changes among {args.documents:,} documents",
        ["requests", "documents read", "written", "unchanged", "seconds"],
        [
            [
                counts["requests"],
                counts["fetched"],
                counts["written"],
                counts["unchanged"],
                second.seconds,
            ]
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
