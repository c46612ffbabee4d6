"""POST and GET throughput through a real `tidemark serve` on loopback, with latency percentiles.

Starts the server as a subprocess (SQLite file, then PostgreSQL), drives it with a fixed number
of client threads (one keep-alive connection each), and prints requests/s with p50/p99 latencies
for POST (creates) and GET by id. Client and server share this machine's cores.

Run: ./dev bench http_load [--requests N] [--concurrency C] [--pg DSN | --no-pg]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, percentile, pg_schema_dsn, print_table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: str, workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = Path(sys.executable).parent / "tidemark"
    log = open(Path(workdir) / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [str(exe), "serve", "--db", db, "--port", str(port)], stdout=log, stderr=log, cwd=workdir
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=0.5).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(
        f"tidemark serve did not start: {(Path(workdir) / f'serve-{port}.log').read_text()}"
    )


def drive(
    base: str, items: list[Any], method: str, concurrency: int
) -> tuple[float, list[float], list[str]]:
    """Send every item with ``concurrency`` client threads, each with its own keep-alive
    connection (httpx's async client, not the server, limits throughput on this machine)."""
    latencies: list[float] = []
    created: list[str] = []
    lock = threading.Lock()
    pending = iter(items)

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            while True:
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                started = time.perf_counter()
                if method == "POST":
                    response = http.post("/data/ed-fi/schools", json=item)
                    if response.status_code != 201:
                        raise RuntimeError(response.text)
                    location = response.headers["location"].rsplit("/", 1)[1]
                else:
                    response = http.get(f"/data/ed-fi/schools/{item}")
                    if response.status_code != 200:
                        raise RuntimeError(response.text)
                    location = ""
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    if location:
                        created.append(location)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(items) / (time.perf_counter() - started), latencies, created


def run(engine: str, db: str, workdir: str, requests: int, concurrency: int) -> list[list[Any]]:
    process, base = start_server(db, workdir)
    try:
        bodies = [
            {"schoolId": i + 1, "nameOfInstitution": f"School {i + 1}"} for i in range(requests)
        ]
        post_rate, post_lat, created = drive(base, bodies, "POST", concurrency)
        reads = [random.choice(created) for _ in range(requests)]
        get_rate, get_lat, _ = drive(base, reads, "GET", concurrency)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return [
        [
            engine,
            "POST (create)",
            requests,
            concurrency,
            post_rate,
            percentile(post_lat, 50),
            percentile(post_lat, 99),
        ],
        [
            engine,
            "GET by id",
            requests,
            concurrency,
            get_rate,
            percentile(get_lat, 50),
            percentile(get_lat, 99),
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--pg",
        default=os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += run("sqlite", str(Path(tmp) / "load.db"), tmp, args.requests, args.concurrency)
        if not args.no_pg:
            schema = f"bench_http_{os.getpid()}"
            try:
                rows += run(
                    "postgresql",
                    pg_schema_dsn(args.pg, schema),
                    tmp,
                    args.requests,
                    args.concurrency,
                )
            finally:
                drop_schema(args.pg, schema)
    print_table(
        "http_load: tidemark serve on loopback, client threads with keep-alive connections",
        ["engine", "request", "requests", "concurrency", "req/s", "p50 ms", "p99 ms"],
        rows,
    )


if __name__ == "__main__":
    main()
