"""Real server processes: several on one PostgreSQL database, and a crash in the middle of writes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.store import samples
from tests.support import ServerProcess, wait_until
from tidemark.store import open_store

SESSIONS = "/data/ed-fi/sessions"


def _seed(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/data/ed-fi/schools", json=samples.school(1)).status_code in (200, 201)
        term = samples.descriptor(samples.TERM_NS, "Fall")
        assert http.post("/data/ed-fi/termDescriptors", json=term).status_code in (200, 201)


def _version(response: httpx.Response) -> int:
    return int(response.headers["etag"].strip('"'))


@pytest.mark.postgres
def test_two_server_processes_on_one_database_keep_versions_unique_and_watermarks_safe(
    pg_dsn: str, tmp_path: Path
):
    writers, per_writer = 4, 1250
    with (
        ServerProcess("--db", pg_dsn, "--log-text", cwd=tmp_path) as a,
        ServerProcess("--db", pg_dsn, "--log-text", cwd=tmp_path) as b,
    ):
        _seed(a.base_url)
        acked: list[tuple[str, int]] = []
        acked_lock = threading.Lock()
        seen: dict[str, int] = {}
        stop = threading.Event()
        polls = [0]

        def writer(n: int) -> None:
            clients = [httpx.Client(base_url=s.base_url, timeout=30) for s in (a, b)]
            try:
                for i in range(per_writer):
                    http = clients[i % 2]
                    name = f"w{n}-{i // 3}"  # every third write updates the previous session
                    body = samples.session(name=name)
                    body["endDate"] = f"2024-12-{10 + i % 3}"
                    response = http.post(SESSIONS, json=body)
                    assert response.status_code in (200, 201), response.text
                    with acked_lock:
                        acked.append(
                            (response.headers["location"].rsplit("/", 1)[1], _version(response))
                        )
            finally:
                for http in clients:
                    http.close()

        def reader() -> None:
            watermark = 0
            with httpx.Client(base_url=a.base_url, timeout=30) as http:
                while True:
                    finished = stop.is_set()
                    newest = http.get("/changeQueries/v1/availableChangeVersions").json()[
                        "newestChangeVersion"
                    ]
                    if newest > watermark:
                        offset = 0
                        while True:
                            page = http.get(
                                SESSIONS,
                                params={
                                    "minChangeVersion": watermark + 1,
                                    "maxChangeVersion": newest,
                                    "limit": 500,
                                    "offset": offset,
                                },
                            ).json()
                            for doc in page:
                                seen[doc["id"]] = max(seen.get(doc["id"], 0), int(doc["_etag"]))
                            if len(page) < 500:
                                break
                            offset += 500
                        watermark = newest
                    polls[0] += 1
                    if finished:
                        return

        read = threading.Thread(target=reader)
        read.start()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        read.join()
    versions = [v for _, v in acked]
    changes = {(doc, v) for doc, v in acked}
    missed = [(doc, v) for doc, v in changes if seen.get(doc, 0) < v]
    print(
        f"\nwatermark proof (two server processes, {writers} writer threads): writes={len(acked)} "
        f"distinct changes={len(changes)} documents seen={len(seen)} reader polls={polls[0]} missed={len(missed)}"
    )
    assert len(acked) == writers * per_writer >= 5000
    # a no-op write returns the stored version; every real change got its own version
    assert len({v for _, v in changes}) == len(changes)
    assert len(set(versions)) >= len(seen)
    assert missed == []


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "crash.db")
    else:
        yield str(request.getfixturevalue("pg_dsn"))


def test_sigkill_during_writes_loses_no_acknowledged_write(crash_db: str, tmp_path: Path):
    server = ServerProcess("--db", crash_db, "--log-text", cwd=tmp_path).start()
    acked: dict[str, int] = {}
    stop = threading.Event()
    errors: list[str] = []

    def writer(n: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                school = samples.school(n * 1_000_000 + i, name=f"writer {n} #{i}")
                try:
                    response = http.post("/data/ed-fi/schools", json=school)
                except httpx.HTTPError:
                    return  # the server died under us: this write was never acknowledged
                if response.status_code not in (200, 201):
                    errors.append(response.text)
                    return
                acked[response.headers["location"].rsplit("/", 1)[1]] = _version(response)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 200, timeout=60, message="200 acknowledged writes")
    server.stop(kill=True)  # SIGKILL mid-stream
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors

    async def inspect() -> dict[str, Any]:
        store = await open_store(crash_db)
        try:
            present = {}
            for doc_id in acked:
                document = await store.get("ed-fi:schools", doc_id)
                present[doc_id] = None if document is None else document.content_version

            def half_stamped(tx: Any) -> int:
                row = tx.query_one(
                    "SELECT count(*) FROM documents d WHERE NOT EXISTS "
                    "(SELECT 1 FROM journal j WHERE j.change_version = d.content_version AND j.doc_pk = d.doc_pk) "
                    "OR d.identity_version > d.content_version"
                )
                return int(row[0])

            def max_version(tx: Any) -> int:
                row = tx.query_one("SELECT coalesce(max(content_version), 0) FROM documents")
                return int(row[0])

            return {
                "present": present,
                "half_stamped": await store.engine.read(half_stamped),
                "max_version": await store.engine.read(max_version),
                "newest": await store.newest_change_version(),
            }
        finally:
            await store.close()

    state = asyncio.run(inspect())
    lost = [
        doc
        for doc, v in acked.items()
        if state["present"][doc] is None or state["present"][doc] < v
    ]
    assert lost == [], f"{len(lost)} acknowledged writes lost"
    assert state["half_stamped"] == 0
    assert state["newest"] >= state["max_version"]
    # the restarted server allocates above everything stored
    with ServerProcess("--db", crash_db, "--log-text", cwd=tmp_path) as again:
        response = httpx.post(
            again.base_url + "/data/ed-fi/schools", json=samples.school(999_999_999), timeout=10
        )
        assert response.status_code == 201
        assert _version(response) > state["max_version"]


@pytest.mark.postgres
def test_workers_share_one_postgresql_database(pg_dsn: str, tmp_path: Path):
    with (
        ServerProcess("--db", pg_dsn, "--workers", "2", "--log-text", cwd=tmp_path) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        versions = []
        for i in range(40):
            response = http.post("/data/ed-fi/schools", json=samples.school(i + 1))
            assert response.status_code == 201
            versions.append(_version(response))
        assert len(set(versions)) == 40
        assert len(http.get("/data/ed-fi/schools", params={"limit": 100}).json()) == 40
        metrics = http.get("/metrics").text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("tidemark_journal_rows_total")
        )
        assert total == 40  # aggregated over both workers
