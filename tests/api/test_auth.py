"""OAuth2 client credentials and bearer-token access control."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.api._auth import TokenIssuer
from tidemark.api._settings import parse_clients
from tidemark.core import ConfigurationError, ManualClock, UnauthorizedError
from tidemark.store import Store


@pytest.fixture
async def secured(api_store: Store, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServerSettings(clients=["app:s3cret", "other:pw"], token_lifetime=60)
    app = create_app(api_store, settings, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http


def _basic(key: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


async def _token(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic("app", "s3cret")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 60
    assert response.headers["cache-control"] == "no-store"
    return str(body["access_token"])


async def test_data_and_change_query_routes_need_a_token(secured: httpx.AsyncClient):
    for path in (
        "/data/ed-fi/schools",
        "/changeQueries/v1/availableChangeVersions",
        "/data/ed-fi/schools/deletes",
    ):
        response = await secured.get(path)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["type"] == "urn:ed-fi:api:security:unauthorized"
    token = await _token(secured)
    ok = await secured.get("/data/ed-fi/schools", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


async def test_open_paths_need_no_token(secured: httpx.AsyncClient):
    for path in ("/", "/metadata/openapi.json", "/health", "/metrics"):
        assert (await secured.get(path)).status_code == 200, path


async def test_expired_and_tampered_tokens_are_401(secured: httpx.AsyncClient, clock: ManualClock):
    token = await _token(secured)
    body, signature = token.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature
    response = await secured.get(
        "/data/ed-fi/schools", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401 and "invalid" in response.json()["detail"]
    clock.advance(61)
    expired = await secured.get("/data/ed-fi/schools", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


async def test_token_endpoint_rejects_bad_credentials_and_grants(secured: httpx.AsyncClient):
    wrong = await secured.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic("app", "nope")
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    missing = await secured.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert missing.status_code == 401
    garbage = await secured.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic !!!"},
    )
    assert garbage.status_code == 401
    grant = await secured.post(
        "/oauth/token", data={"grant_type": "password"}, headers=_basic("app", "s3cret")
    )
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    as_json = await secured.post(
        "/oauth/token", json={"grant_type": "client_credentials"}, headers=_basic("other", "pw")
    )
    assert as_json.status_code == 200


def test_tokens_from_one_process_verify_in_another_with_the_same_clients():
    clients = parse_clients(["app:s3cret"])
    token, _ = TokenIssuer(clients).issue("app")
    assert TokenIssuer(dict(clients)).verify(token) == "app"
    with pytest.raises(UnauthorizedError):
        TokenIssuer(parse_clients(["app:changed"])).verify(token)


def test_malformed_client_settings_are_refused():
    with pytest.raises(ConfigurationError):
        parse_clients(["no-secret"])
    with pytest.raises(ConfigurationError):
        parse_clients(["a:1", "a:2"])
    with pytest.raises(ConfigurationError):
        ServerSettings(clients=[":x"]).check()


def test_a_token_verified_once_still_expires_and_still_needs_its_client():
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    issuer = TokenIssuer({"app": "s3cret", "etl": "pw"}, lifetime=60, clock=clock)
    token, _ = issuer.issue("app")
    assert issuer.verify(token) == "app"
    assert issuer.verify(token) == "app"  # the second check is answered from memory
    clock.advance(61)
    with pytest.raises(UnauthorizedError, match="expired"):
        issuer.verify(token)
    other, _ = issuer.issue("etl")
    assert issuer.verify(other) == "etl"
    del issuer.clients["etl"]  # a client removed while its token is remembered
    with pytest.raises(UnauthorizedError, match="no longer configured"):
        issuer.verify(other)
    tampered = other[:-2] + ("A" if other[-2] != "A" else "B") + other[-1]
    with pytest.raises(UnauthorizedError, match="invalid"):
        issuer.verify(tampered)
