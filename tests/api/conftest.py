from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.core import ManualClock
from tidemark.store import Store, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "api.db")
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def settings() -> ServerSettings:
    return ServerSettings(max_body_bytes=64 * 1024)


@pytest.fixture
async def api_store(store_url: str, clock: ManualClock) -> AsyncIterator[Store]:
    store = await open_store(store_url, clock=clock)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def client(api_store: Store, settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client bound in-process to the app over the sample-model store."""
    app = create_app(api_store, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tidemark.test") as http:
        yield http
