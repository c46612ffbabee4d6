"""SIGKILL of a ``tidemark replicate`` process during a round: the rerun finishes the round from
the last committed page, and the replica equals the source (no loss, no duplicates)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.replicate.support import (
    KEY,
    RESOURCES,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
)
from tests.support import ServerProcess, async_wait_until, tidemark_command
from tidemark.replicate import load_state, replicate
from tidemark.store import Store, open_store

STUDENTS = 1500
PAGE = 25


def _start(source: ServerProcess, replica_url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [*tidemark_command(), "replicate", source.base_url, "--db", replica_url]
    command += ["--api-schema", str(ds51_schema()), "--page-size", str(PAGE), "--once"]
    for endpoint in RESOURCES:
        command += ["--resources", endpoint]
    env = {
        **os.environ,
        "TIDEMARK_REPLICATE_CLIENT_ID": KEY,
        "TIDEMARK_REPLICATE_CLIENT_SECRET": SECRET,
    }
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)


async def _kill_mid_round(
    process: subprocess.Popen[bytes], store: Store, url: str, stage: str
) -> None:
    """SIGKILL ``process`` once it has committed a page of students in ``stage``."""

    async def in_students() -> bool:
        assert process.poll() is None, "the round ended before it could be interrupted"
        state = await load_state(store, url)
        return (
            state.position is not None
            and state.position.collection == "ed-fi:students"
            and state.position.stage == stage
        )

    await async_wait_until(in_students, timeout=60, interval=0.01)
    process.kill()
    process.wait(timeout=30)


async def test_sigkill_during_a_round_resumes_without_loss_duplicates_or_restart(
    source_server: ServerProcess, replica_url: str, tmp_path: Path
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    for n in range(STUDENTS):
        writer.post(
            "students",
            {
                "studentUniqueId": f"K{n}",
                "firstName": "Kim",
                "lastSurname": "L",
                "birthDate": "2010-01-01",
            },
        )
    store = await open_store(replica_url, model=ds51_schema())
    try:
        # The first extract, killed among the students.
        process = _start(source_server, replica_url, tmp_path / "first.log")
        await _kill_mid_round(process, store, source_server.base_url, "extract")
        before = await load_state(store, source_server.base_url)
        assert before.watermark is None and before.round_kind == "extract"
        [resumed] = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            page_size=PAGE,
        )
        sizes = await compare(writer, store)
        total = sum(sizes.values())
        # Resumed, not restarted: the committed pages were not fetched again.
        assert resumed.kind == "extract"
        assert 0 < resumed.counters["fetched"] < total

        # A round of changes, killed among the students.
        for doc_id, body in list(writer.all("students").items())[: STUDENTS // 2]:
            assert (
                writer.put("students", doc_id, {**body, "firstName": "Changed"}).status_code == 204
            )
        process = _start(source_server, replica_url, tmp_path / "second.log")
        await _kill_mid_round(process, store, source_server.base_url, "live")
        [finished] = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            page_size=PAGE,
        )
        await compare(writer, store)
        assert finished.kind == "changes"
        assert 0 < finished.counters["written"] < STUDENTS // 2
    finally:
        await store.close()
        writer.close()
