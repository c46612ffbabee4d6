"""Fixtures for the FHIR facade tests: the app over a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.store import Store, open_store

FHIR_JSON = "application/fhir+json"


@pytest.fixture(
    name="fhir_store",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def fhir_store_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    """A fresh store, once on SQLite and once on PostgreSQL."""
    url = (
        str(tmp_path / "fhir.db")
        if request.param == "sqlite"
        else request.getfixturevalue("pg_dsn")
    )
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(name="fhir_settings")
def fhir_settings_fixture() -> ServerSettings:
    return ServerSettings(max_body_bytes=64 * 1024, default_page_size=10, max_page_size=50)


@pytest.fixture(name="fhir")
async def fhir_fixture(
    fhir_store: Store, fhir_settings: ServerSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app's ``/fhir`` base (in-process ASGI transport)."""
    app = create_app(fhir_store, fhir_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def patient(id: str | None = None, **members: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "active": True, **members}
    if id is not None:
        resource["id"] = id
    return resource


def assert_outcome(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is an OperationOutcome with ``status`` (and the issue ``code``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] in ("error", "fatal") for i in body["issue"])
    if code is not None:
        assert body["issue"][0]["code"] == code
    return body
