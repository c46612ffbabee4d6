"""A ``_lastUpdated=gt<T>`` poller sees each write exactly once: with two server processes on
one PostgreSQL database, and with one server process on SQLite.

The poller passes each search Bundle's ``meta.lastUpdated`` back as its next ``gt`` bound, as
tidemark's mapping provider does, while writers hammer the servers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess

PAGE = 5000


def _patient(id: str, n: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "active": True, "name": [{"family": f"v{n}"}]}


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """The database and how many server processes share it."""
    if request.param == "sqlite":
        return str(tmp_path / "horizon.db"), 1
    return str(request.getfixturevalue("pg_dsn")), 2


def test_a_last_updated_poller_sees_every_write_of_every_server_process_once(
    databases: tuple[str, int], tmp_path: Path
):
    db, processes = databases
    writers = 4
    per_writer = int(os.environ.get("TIDEMARK_HORIZON_PROOF_WRITES", "250"))
    env = {"TIDEMARK_SERVER_MAX_PAGE_SIZE": str(PAGE)}
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(ServerProcess("--db", db, "--log-text", cwd=tmp_path, env=env))
            for _ in range(processes)
        ]
        a = servers[0]
        acked: list[tuple[str, int]] = []
        acked_lock = threading.Lock()
        seen: dict[str, int] = {}
        deliveries: dict[tuple[str, int], int] = {}
        stop = threading.Event()
        polls = [0]
        full_pages = [0]
        errors: list[str] = []

        def writer(n: int) -> None:
            clients = [httpx.Client(base_url=s.base_url + "/fhir", timeout=30) for s in servers]
            try:
                for i in range(per_writer):
                    id = f"w{n}-{i // 3}"  # every third write updates the previous patient
                    response = clients[i % len(clients)].put(f"/Patient/{id}", json=_patient(id, i))
                    if response.status_code not in (200, 201):
                        errors.append(response.text)
                        return
                    with acked_lock:
                        acked.append((id, int(response.json()["meta"]["versionId"])))
            finally:
                for http in clients:
                    http.close()

        def poller() -> None:
            # Polls from the beginning: every request carries a lower bound, so each answers as
            # of its meta.lastUpdated (an unbounded first search would answer with the latest
            # versions, and could see a write in flight then once more in the next poll).
            since = "1900-01-01T00:00:00.000Z"
            with httpx.Client(base_url=a.base_url + "/fhir", timeout=30) as http:
                while True:
                    finished = stop.is_set()
                    params = {
                        "_count": str(PAGE),
                        "_sort": "_lastUpdated",
                        "_lastUpdated": f"gt{since}",
                    }
                    bundle = http.get("/Patient", params=params).json()
                    entries = bundle.get("entry", [])
                    if len(entries) >= PAGE:
                        full_pages[0] += 1
                    for item in entries:
                        resource = item["resource"]
                        key = (resource["id"], int(resource["meta"]["versionId"]))
                        deliveries[key] = deliveries.get(key, 0) + 1
                        seen[key[0]] = max(seen.get(key[0], 0), key[1])
                    since = bundle["meta"]["lastUpdated"]
                    polls[0] += 1
                    if finished:
                        return

        poll = threading.Thread(target=poller)
        poll.start()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        poll.join()
    assert errors == []
    final: dict[str, int] = {}
    for id, version in acked:
        final[id] = max(final.get(id, 0), version)
    missed = sorted(id for id, version in final.items() if seen.get(id, 0) < version)
    redelivered = sum(count - 1 for count in deliveries.values() if count > 1)
    print(
        f"\n_lastUpdated horizon proof ({processes} server process(es) on {'postgresql' if processes > 1 else 'sqlite'}, "
        f"{writers} writers): "
        f"writes={len(acked)} resources={len(final)} polls={polls[0]} "
        f"versions delivered={len(deliveries)} missed={len(missed)} redelivered={redelivered}"
    )
    assert len(acked) == writers * per_writer
    assert full_pages[0] == 0, "a poll filled a page: raise PAGE"
    assert missed == []
    assert redelivered == 0
    # every version the poller saw is one a writer was acknowledged for
    assert set(deliveries) <= set(acked)
