from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.core import ManualClock
from tidemark.store import Store, open_store


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
