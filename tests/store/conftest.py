from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import require_data
from tidemark.core import ManualClock
from tidemark.store import ResourceModel, Store, load_model, open_store


@pytest.fixture
async def store(store_url: str, clock: ManualClock) -> AsyncIterator[Store]:
    """A store with the bundled sample model, on both engines."""
    opened = await open_store(store_url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def ds51_model() -> ResourceModel:
    return load_model(require_data("edfi/ds-5.1-api-schema.json"))


@pytest.fixture
async def ds_store(
    store_url: str, ds51_model: ResourceModel, clock: ManualClock
) -> AsyncIterator[Store]:
    """A store with the Ed-Fi DS 5.1 model, on both engines."""
    opened = await open_store(store_url, model=ds51_model, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
