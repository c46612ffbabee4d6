"""Requests/s and latency of `tidemark serve` against a bare Starlette + SQLite server, same run.

Both servers hold the same Ed-Fi ``schools`` and answer the same three requests over 16
keep-alive connections: GET by id (200), GET by id with a matching If-None-Match (304), and POST
upsert (each one changes the document and is made durable by a commit). tidemark runs as
`tidemark serve` with its default settings (SQLite file, access log and metrics on); the bare
server (bench/bare_server.py: one SQLite table, WAL, synchronous=FULL) runs on uvicorn + uvloop
+ httptools and on granian, and for each request the faster of the two is the reference. Rounds
alternate the servers; figures are medians of the rounds. Targets, tidemark / bare: GET 304 >= 0.6x, GET 200 >= 0.5x,
POST >= 0.8x. Then tidemark alone on PostgreSQL with 1 and 2 workers, and the scaling.

Load generator: wrk, from the Debian package (apt-get update && apt-get install -y wrk), one
thread. Without wrk a Python asyncio client on this machine's cores stands in; the output says so
and its figures are a lower bound.

--compare-stacks measures both apps on each candidate server stack instead (bench/_stacks.py).

Run: ./dev bench http_load [--seconds S] [--rounds N] [--pg DSN | --no-pg] [--compare-stacks]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _loadgen
from _common import drop_schema, pg_schema_dsn, print_table, verdict
from _stacks import STACKS, available

BENCH = Path(__file__).resolve().parent
PATH = "/data/ed-fi/schools"
KINDS = ("GET 200", "GET 304", "POST upsert")
#: The least tidemark / bare ratio each request must reach.
TARGETS = {"GET 304": 0.6, "GET 200": 0.5, "POST upsert": 0.8}
#: The stacks the bare server runs on; the fastest for each request is the reference.
BARE_STACKS = ("uvicorn-uvloop-httptools", "granian")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    base: str, process: subprocess.Popen[bytes], log_path: Path, label: str
) -> None:
    """Return once ``base``/health answers 200; a ``RuntimeError`` with the end of the log when
    the process exits first or 60 s pass."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{label} did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.05)


@contextmanager
def server(command: list[str], workdir: str, label: str) -> Iterator[str]:
    """Run ``command`` (which takes ``--port``) until its /health answers; yield its base URL."""
    port = free_port()
    log_path = Path(workdir) / f"{label}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=log, stderr=log, cwd=workdir
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, process, log_path, label)
            PIDS[base] = process.pid
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: The process id of each running server, by base URL.
PIDS: dict[str, int] = {}


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of process ``pid`` and its descendants; None without /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    try:
        while pending:
            current = pending.pop()
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    except (OSError, ValueError, IndexError):
        return None
    return total


def tidemark_command(db: str, workers: int = 1) -> list[str]:
    exe = Path(sys.executable).parent / "tidemark"
    return [str(exe), "serve", "--db", db, "--workers", str(workers)]


def stack_command(app: str, stack: str, db: str) -> list[str]:
    return [sys.executable, str(BENCH / "_stacks.py"), app, stack, "--db", db]


@dataclass
class Target:
    """A running server with its seeded documents."""

    base: str
    ids: list[str]
    school_ids: list[int]

    def etags(self) -> list[str]:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            return [http.get(f"{PATH}/{id}").headers["etag"] for id in self.ids]

    def loads(self) -> dict[str, _loadgen.Load]:
        paths = [f"{PATH}/{id}" for id in self.ids]
        return {
            "GET 200": _loadgen.Load("GET", paths),
            "GET 304": _loadgen.Load("GET", paths, etags=self.etags()),
            "POST upsert": _loadgen.Load("POST", [PATH], school_ids=self.school_ids),
        }


def seed(base: str, documents: int) -> Target:
    """POST ``documents`` schools and check that each kind of request answers as expected."""
    school_ids = list(range(1, documents + 1))

    def post(school_id: int) -> str:
        with httpx.Client(base_url=base, timeout=30) as http:
            response = http.post(
                PATH, json={"schoolId": school_id, "nameOfInstitution": f"School {school_id}"}
            )
            if response.status_code not in (200, 201):
                raise RuntimeError(f"seeding failed: {response.status_code} {response.text}")
            return str(response.headers["location"].rsplit("/", 1)[1])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(post, school_ids))
    target = Target(base, ids, school_ids)
    with httpx.Client(base_url=base, timeout=30) as http:
        first = http.get(f"{PATH}/{ids[0]}")
        assert first.status_code == 200, first.text
        again = http.get(f"{PATH}/{ids[0]}", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304, again.status_code
    return target


def measure(
    targets: dict[str, Target], rounds: int, seconds: float, connections: int
) -> dict[str, dict[str, list[_loadgen.Result]]]:
    """Each kind of request on each target, alternating the targets' order between rounds.
    Each target's server CPU time per request goes to :data:`CPU_PER_REQUEST`."""
    results: dict[str, dict[str, list[_loadgen.Result]]] = {
        name: {kind: [] for kind in KINDS} for name in targets
    }
    names = list(targets)
    for round_ in range(rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        loads = {name: targets[name].loads() for name in order}
        for kind in KINDS:
            for name in order:
                pid = PIDS[targets[name].base]
                before = cpu_seconds(pid)
                result = _loadgen.run(targets[name].base, loads[name][kind], seconds, connections)
                after = cpu_seconds(pid)
                if before is not None and after is not None and result.requests:
                    per_request = (after - before) / result.requests * 1e6
                    CPU_PER_REQUEST.setdefault((name, kind), []).append(per_request)
                if result.errors:
                    print(f"warning: {name} {kind}: {result.errors} failed requests")
                results[name][kind].append(result)
    return results


#: Server CPU microseconds per request, by (target, request kind), one figure per round.
CPU_PER_REQUEST: dict[tuple[str, str], list[float]] = {}


def cpu_us(name: str, kind: str) -> float:
    figures = CPU_PER_REQUEST.get((name, kind))
    return statistics.median(figures) if figures else float("nan")


def med(results: list[_loadgen.Result]) -> tuple[float, float, float]:
    return (
        statistics.median(r.requests_per_s for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
    )


def sqlite_comparison(args: argparse.Namespace, tmp: str) -> None:
    stacks = [stack for stack in BARE_STACKS if available(stack)]
    with contextlib.ExitStack() as running:
        bases = {
            "tidemark": running.enter_context(
                server(tidemark_command(str(Path(tmp) / "tidemark.db")), tmp, "tidemark")
            )
        }
        for stack in stacks:
            command = stack_command("bare", stack, str(Path(tmp) / f"bare-{stack}.db"))
            bases[f"bare on {stack}"] = running.enter_context(server(command, tmp, stack))
        targets = {name: seed(base, args.documents) for name, base in bases.items()}
        results = measure(targets, args.rounds, args.seconds, args.connections)
    rows: list[list[Any]] = []
    misses = []
    for kind in KINDS:
        ours_rate, ours_p50, ours_p99 = med(results["tidemark"][kind])
        # the reference is the bare server on whichever stack served this request fastest
        best = max(
            (name for name in results if name != "tidemark"), key=lambda n: med(results[n][kind])[0]
        )
        bare_rate, bare_p50, bare_p99 = med(results[best][kind])
        ratio = ours_rate / bare_rate
        mark = verdict(ratio >= TARGETS[kind])
        if mark == "MISS":
            misses.append(kind)
        rows.append(
            [
                kind,
                ours_rate,
                ours_p50,
                ours_p99,
                bare_rate,
                bare_p50,
                bare_p99,
                best.removeprefix("bare on "),
                cpu_us("tidemark", kind),
                cpu_us(best, kind),
                f"{ratio:.2f}x",
                f">= {TARGETS[kind]}x",
                mark,
            ]
        )
    print_table(
        "http_load: tidemark serve (SQLite, defaults) vs the bare Starlette + SQLite server on "
        f"the best stack; {args.connections} connections, medians of {args.rounds} rounds of "
        f"{args.seconds:g} s",
        [
            "request",
            "tidemark req/s",
            "p50 ms",
            "p99 ms",
            "bare req/s",
            "p50 ms",
            "p99 ms",
            "bare stack",
            "cpu us/req",
            "bare cpu",
            "ratio",
            "target",
            "",
        ],
        rows,
    )
    print(
        "cpu us/req: server CPU time (all its threads and processes) per request; on a quiet "
        "machine a one-process server's req/s ratio tends to the inverse ratio of these"
    )
    if len(stacks) > 1:
        print_table(
            "the bare server on each stack (req/s; server cpu us/req)",
            ["stack", *KINDS, *(f"cpu {k}" for k in KINDS)],
            [
                [
                    stack,
                    *(med(results[f"bare on {stack}"][k])[0] for k in KINDS),
                    *(cpu_us(f"bare on {stack}", k) for k in KINDS),
                ]
                for stack in stacks
            ],
        )
    missing = [stack for stack in BARE_STACKS if stack not in stacks]
    if missing:
        print(f"not measured (not installed): {', '.join(missing)}")
    if misses:
        print(f"MISSED targets: {', '.join(misses)}")
    else:
        print("all targets met")


def postgres_scaling(args: argparse.Namespace, tmp: str) -> None:
    results: dict[int, dict[str, list[_loadgen.Result]]] = {}
    for workers in (1, 2):
        schema = f"bench_http_{os.getpid()}_{workers}"
        try:
            dsn = pg_schema_dsn(args.pg, schema)
            with server(tidemark_command(dsn, workers), tmp, f"tidemark-pg-{workers}") as base:
                name = f"{workers} worker(s)"
                results[workers] = measure(
                    {name: seed(base, args.documents)}, args.rounds, args.seconds, args.connections
                )[name]
        finally:
            drop_schema(args.pg, schema)
    rows = []
    for kind in KINDS:
        one = med(results[1][kind])
        two = med(results[2][kind])
        rows.append(
            [
                kind,
                *one,
                cpu_us("1 worker(s)", kind),
                *two,
                cpu_us("2 worker(s)", kind),
                f"{two[0] / one[0]:.2f}x",
            ]
        )
    print_table(
        "http_load: tidemark serve on PostgreSQL, --workers 1 vs --workers 2 "
        f"(medians of {args.rounds} rounds of {args.seconds:g} s)",
        [
            "request",
            "1w req/s",
            "p50 ms",
            "p99 ms",
            "cpu us/req",
            "2w req/s",
            "p50 ms",
            "p99 ms",
            "cpu us/req",
            "scaling",
        ],
        rows,
    )


def compare_stacks(args: argparse.Namespace, tmp: str) -> None:
    rows: list[list[Any]] = []
    for stack in STACKS:
        if not available(stack):
            print(f"{stack}: not installed (pip install {stack}), skipped")
            continue
        for app in ("bare", "tidemark"):
            db = str(Path(tmp) / f"{app}-{stack}.db")
            with server(stack_command(app, stack, db), tmp, f"{app}-{stack}") as base:
                results = measure(
                    {app: seed(base, args.documents)}, args.rounds, args.seconds, args.connections
                )[app]
            rows.append(
                [
                    stack,
                    app,
                    *(med(results[kind])[0] for kind in KINDS),
                    *(cpu_us(app, kind) for kind in KINDS),
                ]
            )
            CPU_PER_REQUEST.clear()
    print_table(
        f"http_load --compare-stacks: req/s by server stack (SQLite; medians of {args.rounds} "
        f"rounds of {args.seconds:g} s; {args.connections} connections)",
        ["stack", "app", *KINDS, *(f"cpu {k}" for k in KINDS)],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Load generator: wrk (Debian: apt-get update && apt-get install -y wrk); "
        "without it a slower Python client stands in and the output says so.",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--documents", type=int, default=500, help="schools seeded per server")
    parser.add_argument(
        "--pg",
        default=os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument(
        "--compare-stacks", action="store_true", help="measure both apps on each server stack"
    )
    args = parser.parse_args()
    generator = _loadgen.generator_name()
    print(f"load generator: {generator}")
    if generator != "wrk":
        print(
            "wrk not found: the Python fallback shares the cores with the servers, so these "
            "figures are a lower bound (apt-get install -y wrk)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare_stacks:
            compare_stacks(args, tmp)
            return
        sqlite_comparison(args, tmp)
        if not args.no_pg:
            postgres_scaling(args, tmp)


if __name__ == "__main__":
    main()
