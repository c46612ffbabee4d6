"""PostgreSQL restarts and terminated connections cost at most one failed request: a broken
pooled connection is detected when used, the pool's dead connections are replaced at once, and
the transaction runs again on a fresh connection."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import psycopg
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.store import open_store

from . import samples

pytestmark = pytest.mark.postgres


def terminate(admin_dsn: str, application: str) -> int:
    """``pg_terminate_backend`` every connection of ``application``; how many there were."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application,),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_terminated_connections_cost_at_most_one_failed_request(
    pg_dsn: str, pg_admin_dsn: str
):
    application = f"tidemark-test-{secrets.token_hex(4)}"
    store = await open_store(f"{pg_dsn}&application_name={application}")
    app = create_app(store, ServerSettings())
    failures: list[tuple[str, int]] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        location = (await http.post("/data/ed-fi/schools", json=samples.school(1))).headers[
            "location"
        ]
        for round_ in range(3):
            # Several pooled connections are open and idle when the server drops them all.
            await asyncio.gather(*(http.get("/data/ed-fi/schools") for _ in range(12)))
            assert terminate(pg_admin_dsn, application) >= 1
            requests = [
                ("POST", "/data/ed-fi/schools", samples.school(1, name=f"Round {round_}")),
                ("GET", location, None),
                ("GET", "/data/ed-fi/schools", None),
                ("GET", "/health", None),
                ("GET", "/changeQueries/v1/availableChangeVersions", None),
            ]
            if round_ == 1:
                requests.reverse()  # a read first, then a write first
            for method, path, body in requests * 2:
                response = await http.request(method, path, json=body)
                if response.status_code >= 500:
                    failures.append((path, response.status_code))
            assert len(failures) <= 1, failures
            failures.clear()
        assert (await http.get(location)).json()["nameOfInstitution"] == "Round 2"
    await store.close()


async def test_only_a_lost_connection_is_retried(pg_dsn: str, pg_admin_dsn: str):
    application = f"tidemark-test-{secrets.token_hex(4)}"
    store = await open_store(f"{pg_dsn}&application_name={application}")
    try:
        await store.upsert("schools", samples.school(1))
        terminate(pg_admin_dsn, application)
        # The retry reconnects; a statement that fails on a live connection is not retried.
        with pytest.raises(psycopg.errors.UndefinedTable):
            await store.engine.read(lambda tx: tx.query("SELECT * FROM no_such_table"))
        assert (await store.query("ed-fi:schools")).items
    finally:
        await store.close()
