"""The sync server routes (``/sync/v1``) over SQLite and PostgreSQL stores."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import orjson
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.api._sync import collection_of, document_id
from tidemark.core import ManualClock, canonical_hash
from tidemark.store import Store
from tidemark.sync import TierMetadata, new_id

ID = new_id("k")
OTHER = new_id("k")
T1 = "2024-01-01T00:00:01.000000Z"
BASE = "/sync/v1/ns1"


def blob(title: str = "a", entity_id: str = ID) -> dict:
    return {"Note": {entity_id: {"id": entity_id, "title": title, "updated_at": T1}}}


async def put(client: httpx.AsyncClient, key: str, body: object, **headers: str) -> httpx.Response:
    return await client.put(f"{BASE}/blobs/{key}", content=orjson.dumps(body), headers=headers)


async def create(
    client: httpx.AsyncClient, key: str, body: object, **headers: str
) -> httpx.Response:
    """PUT that creates the key (``If-None-Match: *``, as the cloud tier sends it)."""
    return await put(client, key, body, **{"If-None-Match": "*"}, **headers)


async def test_put_creates_then_get_returns_the_blob_with_its_etag(client: httpx.AsyncClient):
    created = await create(client, "app.k", blob())
    assert created.status_code == 201, created.text
    meta = created.json()
    assert meta["hash"] == canonical_hash(blob())
    assert meta["entities"] == {"Note": {"count": 1, "deleted_count": 0}}
    assert created.headers["etag"] == meta["etag"]
    got = await client.get(f"{BASE}/blobs/app.k")
    assert got.status_code == 200
    assert got.json() == blob()
    assert got.headers["etag"] == meta["etag"]
    unchanged = await client.get(f"{BASE}/blobs/app.k", headers={"If-None-Match": meta["etag"]})
    assert unchanged.status_code == 304


async def test_rewriting_the_same_blob_keeps_its_etag(client: httpx.AsyncClient):
    first = (await create(client, "app.k", blob())).json()
    again = await put(client, "app.k", blob(), **{"If-Match": first["etag"]})
    assert again.status_code == 200
    assert again.json()["etag"] == first["etag"]


async def test_if_match_on_a_stale_etag_is_412_and_changes_nothing(client: httpx.AsyncClient):
    first = (await create(client, "app.k", blob("a"))).json()
    second = await put(client, "app.k", blob("b"), **{"If-Match": first["etag"]})
    assert second.status_code == 200
    stale = await put(client, "app.k", blob("c"), **{"If-Match": first["etag"]})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale.json()["type"] == "urn:ed-fi:api:optimistic-lock-failed"
    exists = await put(client, "app.k", blob("c"), **{"If-None-Match": "*"})
    assert exists.status_code == 412
    assert (await client.get(f"{BASE}/blobs/app.k")).json() == blob("b")


async def test_delete_honours_if_match_and_reports_absent_keys(client: httpx.AsyncClient):
    etag = (await create(client, "app.k", blob())).json()["etag"]
    wrong = await client.delete(f"{BASE}/blobs/app.k", headers={"If-Match": '"999"'})
    assert wrong.status_code == 412
    assert (
        await client.delete(f"{BASE}/blobs/app.k", headers={"If-Match": etag})
    ).status_code == 204
    assert (await client.get(f"{BASE}/blobs/app.k")).status_code == 404
    missing = await client.delete(f"{BASE}/blobs/app.k", headers={"If-Match": etag})
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:ed-fi:api:not-found"


async def test_metadata_lists_every_key_and_follows_updates_and_deletes(
    client: httpx.AsyncClient, api_store: Store
):
    assert (await client.get(f"{BASE}/metadata")).json()["keys"] == {}
    etag_k = (await create(client, "app.k", blob("a"))).json()["etag"]
    etag_j = (await create(client, "app.j", blob("j", OTHER))).json()["etag"]
    first = (await client.get(f"{BASE}/metadata")).json()
    assert set(first["keys"]) == {"app.j", "app.k"}
    assert first["keys"]["app.k"]["etag"] == etag_k
    assert first["keys"]["app.k"]["hash"] == canonical_hash(blob("a"))
    parsed = TierMetadata.from_json(first)
    assert first["root_hash"] == parsed.root_hash
    assert first["updated_at"] == T1
    await put(client, "app.k", blob("b"), **{"If-Match": etag_k})
    await client.delete(f"{BASE}/blobs/app.j", headers={"If-Match": etag_j})
    second = (await client.get(f"{BASE}/metadata")).json()
    assert set(second["keys"]) == {"app.k"}
    assert second["keys"]["app.k"]["hash"] == canonical_hash(blob("b"))
    # A write that bypasses this process (another server process) is seen too.
    await api_store.put(
        collection_of("ns1"),
        document_id("app.x"),
        {"key": "app.x", "blob": blob("x"), "meta": {"hash": canonical_hash(blob("x"))}},
    )
    third = (await client.get(f"{BASE}/metadata")).json()
    assert set(third["keys"]) == {"app.k", "app.x"}


async def test_metadata_survives_a_purged_change_feed(
    client: httpx.AsyncClient, api_store: Store, clock: ManualClock
):
    etag = (await create(client, "app.k", blob("a"))).json()["etag"]
    assert set((await client.get(f"{BASE}/metadata")).json()["keys"]) == {"app.k"}
    await create(client, "app.j", blob("j", OTHER))
    await client.delete(f"{BASE}/blobs/app.k", headers={"If-Match": etag})
    clock.advance(3600)
    assert await api_store.purge_changes(clock.now() + timedelta(seconds=1)) > 0
    after = (await client.get(f"{BASE}/metadata")).json()
    assert set(after["keys"]) == {"app.j"}


async def test_namespaces_are_separate(client: httpx.AsyncClient):
    await create(client, "app.k", blob())
    other = await client.get("/sync/v1/ns2/metadata")
    assert other.json()["keys"] == {}
    assert (await client.get("/sync/v1/ns2/blobs/app.k")).status_code == 404


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/sync/v1/ns1/blobs/bad..key", "bad-request:parameter-validation-failed"),
        ("/sync/v1/ns1/blobs/a%20b", "bad-request:parameter-validation-failed"),
        ("/sync/v1/ns1/blobs/" + "x" * 201, "bad-request:parameter-validation-failed"),
        ("/sync/v1/ns1/blobs/a%2F..%2Fb", "not-found"),
        ("/sync/v1/bad%20ns/metadata", "bad-request:parameter-validation-failed"),
    ],
)
async def test_bad_keys_and_namespaces_are_rejected(
    client: httpx.AsyncClient, path: str, expected: str
):
    response = await client.get(path)
    assert response.status_code == (404 if expected == "not-found" else 400)
    assert response.json()["type"] == f"urn:ed-fi:api:{expected}"


async def test_bad_bodies_get_clear_problems_and_store_nothing(client: httpx.AsyncClient):
    malformed = await client.put(
        f"{BASE}/blobs/app.k", content=b'{"Note": ', headers={"If-None-Match": "*"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "urn:ed-fi:api:bad-request:malformed-body"
    invalid = await create(client, "app.k", {"Note": {"not-an-id": {}}})
    assert invalid.status_code == 400
    assert invalid.json()["type"] == "urn:ed-fi:api:bad-request:data-validation-failed"
    assert "$.Note.not-an-id" in invalid.json()["validationErrors"]
    empty = await create(client, "app.k", {})
    assert empty.status_code == 400
    not_json = await client.put(
        f"{BASE}/blobs/app.k",
        content=b"x",
        headers={"Content-Type": "text/plain", "If-None-Match": "*"},
    )
    assert not_json.status_code == 415
    assert (await client.get(f"{BASE}/metadata")).json()["keys"] == {}


async def test_an_oversized_body_is_413(client: httpx.AsyncClient, settings: ServerSettings):
    huge = blob("x" * (settings.max_body_bytes + 1))
    response = await create(client, "app.k", huge)
    assert response.status_code == 413
    assert response.json()["type"] == "urn:ed-fi:api:bad-request:payload-too-large"


async def test_sync_routes_sit_behind_the_servers_access_control(api_store: Store):
    settings = ServerSettings(clients=["device:s3cret"])
    app = create_app(api_store, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        assert (await http.get(f"{BASE}/metadata")).status_code == 401
        assert (await create(http, "app.k", blob())).status_code == 401
        basic = base64.b64encode(b"device:s3cret").decode()
        token = (
            await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            )
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert (await create(http, "app.k", blob(), **auth)).status_code == 201
        assert set((await http.get(f"{BASE}/metadata", headers=auth)).json()["keys"]) == {"app.k"}


def stamped(stamp: object, entity_id: str = ID) -> dict:
    return {"Note": {entity_id: {"id": entity_id, "title": "t", "updated_at": stamp}}}


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (stamped("9999-12-31T23:59:59.999999Z"), f"$.Note.{ID}.updated_at", "check the writing"),
        (stamped("2025-03-01T14:00:00Z"), f"$.Note.{ID}.updated_at", "later than"),
        (stamped("not a time"), f"$.Note.{ID}.updated_at", "not an ISO-8601 date-time"),
        (stamped(20240101), f"$.Note.{ID}.updated_at", "not an ISO-8601 date-time"),
        (
            {"deleted": {"Note": {ID: "9999-12-31T23:59:59.999999Z"}}},
            f"$.deleted.Note.{ID}",
            "later than",
        ),
    ],
)
async def test_a_stamp_that_is_not_a_time_or_beyond_the_clock_skew_is_400(
    client: httpx.AsyncClient, body: dict, path: str, message: str
):
    # The server clock is 2025-03-01T12:00Z; the default skew allows one hour ahead.
    response = await create(client, "app.k", body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "urn:ed-fi:api:bad-request:data-validation-failed"
    assert "clock" in problem["detail"]
    assert any(message in text for text in problem["validationErrors"][path])
    assert (await client.get(f"{BASE}/metadata")).json()["keys"] == {}


async def test_stamps_up_to_the_configured_skew_are_accepted(api_store: Store):
    app = create_app(api_store, ServerSettings(sync_max_clock_skew=60))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        inside = await create(http, "app.a", stamped("2025-03-01T12:00:59.999999Z"))
        assert inside.status_code == 201, inside.text
        beyond = await create(http, "app.b", stamped("2025-03-01T12:01:00.000001Z"))
        assert beyond.status_code == 400
        assert "at most 60 s ahead" in beyond.json()["detail"]


async def test_unconditional_sync_writes_are_428_and_change_nothing(client: httpx.AsyncClient):
    created = await put(client, "app.k", blob("a"))
    assert created.status_code == 428
    problem = created.json()
    assert problem["type"] == "urn:ed-fi:api:precondition-required"
    assert "If-None-Match: *" in problem["detail"] and "If-Match" in problem["detail"]
    etag = (await create(client, "app.k", blob("a"))).json()["etag"]
    overwrite = await put(client, "app.k", blob("b"), **{"If-Match": "  "})
    assert overwrite.status_code == 428
    deleted = await client.delete(f"{BASE}/blobs/app.k")
    assert deleted.status_code == 428
    got = await client.get(f"{BASE}/blobs/app.k")
    assert got.json() == blob("a") and got.headers["etag"] == etag
