"""Ed-Fi query filters over HTTP with the DS 5.1 model: typed values and the association's school."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.store.test_index_edfi import seed
from tests.support import require_data
from tidemark.api import ServerSettings, create_app
from tidemark.core import ManualClock
from tidemark.store import open_store


@pytest.fixture
async def ds_client(store_url: str, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    model = require_data("edfi/ds-5.1-api-schema.json")
    store = await open_store(store_url, model=model, clock=clock)
    try:
        await seed(store)
        transport = httpx.ASGITransport(app=create_app(store, ServerSettings()))
        async with httpx.AsyncClient(transport=transport, base_url="http://tidemark.test") as http:
            yield http
    finally:
        await store.close()


async def test_query_filters_match_as_the_ods_api_does(ds_client: httpx.AsyncClient):
    sessions = await ds_client.get("/data/ed-fi/sessions", params={"schoolYear": "2025"})
    assert sessions.status_code == 200
    assert [s["sessionName"] for s in sessions.json()] == ["Fall 2025"]
    enrolled = await ds_client.get(
        "/data/ed-fi/studentSchoolAssociations", params={"schoolId": "255901", "totalCount": "true"}
    )
    assert [a["studentReference"]["studentUniqueId"] for a in enrolled.json()] == ["S1"]
    assert enrolled.headers["total-count"] == "1"
    windowed = await ds_client.get(
        "/data/ed-fi/studentSchoolAssociations",
        params={"schoolId": "255902", "minChangeVersion": "0"},
    )
    assert [a["studentReference"]["studentUniqueId"] for a in windowed.json()] == ["S2"]
    primary = await ds_client.get(
        "/data/ed-fi/studentSchoolAssociations", params={"primarySchool": "true"}
    )
    assert [a["studentReference"]["studentUniqueId"] for a in primary.json()] == ["S1"]


async def test_a_value_of_the_wrong_type_is_a_400_naming_the_parameter(
    ds_client: httpx.AsyncClient,
):
    response = await ds_client.get(
        "/data/ed-fi/sessions", params={"schoolYear": "20x5", "beginDate": "2024-13-01"}
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "The value '20x5' is not valid for schoolYear: an integer is required." in errors
    assert any("beginDate" in e for e in errors) and len(errors) == 2
