"""Health, metrics, retention in the server, and worker settings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.store import samples
from tests.support import async_wait_until
from tidemark.api import ServerSettings, create_app
from tidemark.core import ConfigurationError

from .test_edfi_api import _post


async def test_health_reports_the_database(client: httpx.AsyncClient, api_store):
    body = (await client.get("/health")).json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["engine"] == api_store.engine.name


async def test_health_is_503_when_the_database_is_gone(tmp_path: Path):
    from tidemark.store import open_store

    store = await open_store(tmp_path / "h.db")
    app = create_app(store, ServerSettings())
    await store.close()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/health")
    assert response.status_code == 503 and response.json()["database"] == "unreachable"


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_count_requests_by_route_and_store_counters(client: httpx.AsyncClient):
    before = (await client.get("/metrics")).text
    await _post(client, "schools", samples.school(1))
    await _post(client, "schools", samples.school(1))  # no-op
    await client.get("/data/ed-fi/nothing")
    after = (await client.get("/metrics")).text
    route = "/data/{project}/{endpoint}"
    assert (
        _metric(after, "tidemark_http_requests_total", route=route, method="POST", status="201")
        - _metric(before, "tidemark_http_requests_total", route=route, method="POST", status="201")
        == 1
    )
    assert (
        _metric(after, "tidemark_http_requests_total", route=route, method="GET", status="404") >= 1
    )
    assert (
        _metric(after, "tidemark_noop_writes_skipped_total")
        - _metric(before, "tidemark_noop_writes_skipped_total")
        == 1
    )
    assert (
        _metric(after, "tidemark_change_versions_allocated_total")
        - _metric(before, "tidemark_change_versions_allocated_total")
        == 1
    )
    assert (
        _metric(after, "tidemark_journal_rows_total")
        - _metric(before, "tidemark_journal_rows_total")
        == 1
    )
    assert re.search(
        r'tidemark_http_request_duration_seconds_bucket\{le="[0-9.]+",route="/data', after
    )


async def test_retention_runs_in_the_background(tmp_path: Path):
    from tidemark.core import ManualClock
    from tidemark.store import open_store

    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    store = await open_store(tmp_path / "r.db", clock=clock)
    await store.upsert("schools", samples.school(1))
    clock.advance(timedelta(days=2).total_seconds())
    await store.upsert("schools", samples.school(2))
    settings = ServerSettings(retain_changes=86400, retention_interval=0.02)
    app = create_app(store, settings)
    async with app.router.lifespan_context(app):

        async def purged() -> bool:
            return (await store.available_change_versions()).oldest == 2

        await async_wait_until(purged, timeout=5, message="retention purged the old change")
    await store.close()


async def test_a_short_retention_is_honoured_within_about_its_period(tmp_path: Path):
    from tidemark.core import ManualClock
    from tidemark.store import open_store

    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    store = await open_store(tmp_path / "short.db", clock=clock)
    app = create_app(store, ServerSettings(retain_changes=1))  # no retention_interval: derived
    async with app.router.lifespan_context(app):
        await store.upsert("schools", samples.school(1))
        clock.advance(2)
        await store.upsert("schools", samples.school(2))

        async def oldest_is(version: int) -> bool:
            return (await store.available_change_versions()).oldest == version

        await async_wait_until(lambda: oldest_is(2), timeout=10, message="a first purge")
        # a pass has run since; the next one comes a second later (was 60 s whatever the period)
        clock.advance(2)
        await store.upsert("schools", samples.school(3))
        await async_wait_until(lambda: oldest_is(3), timeout=10, message="the next 1 s pass")
    await store.close()


def test_workers_need_postgresql():
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        ServerSettings(workers=2).check()
    ServerSettings(workers=2, db="postgresql://x@127.0.0.1/db").check()
