"""The item route's plain GET, answered by the endpoint itself, is byte for byte the handler's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from starlette.types import Message

from tidemark.api import ServerSettings, create_app
from tidemark.api._edfi import ItemEndpoint
from tidemark.store import Store, open_store

from .test_operation import _metric


async def _call(asgi: Any, scope: dict[str, Any]) -> tuple[int, list[Any], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await asgi(dict(scope), receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], start["headers"], body


@pytest.mark.parametrize("root", ["/data", "/data/v3"])
async def test_a_plain_get_answers_what_the_handler_answers(api_store: Store, root: str):
    app = create_app(api_store, ServerSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        created = await http.post(
            "/data/ed-fi/schools", json={"schoolId": 9, "nameOfInstitution": "Nine"}
        )
        id = created.headers["location"].rsplit("/", 1)[1]
        etag = created.headers["etag"]
    [route] = [
        r
        for r in app.routes
        if isinstance(r, Route) and r.path == root + "/{project}/{endpoint}/{id}"
    ]
    endpoint = route.endpoint
    assert isinstance(endpoint, ItemEndpoint)
    for headers in (
        [],
        [(b"if-none-match", etag.encode())],
        [(b"if-none-match", b'"0", ' + etag.encode())],
    ):
        scope = {
            "type": "http",
            "app": app,
            "method": "GET",
            "path": f"{root}/ed-fi/schools/{id}",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"t"), *headers],
            "path_params": {"project": "ed-fi", "endpoint": "schools", "id": id},
        }
        fast = await _call(endpoint, scope)
        handled = await _call(endpoint.handler, scope)
        assert fast == handled
        assert fast[0] == (304 if headers else 200)


async def test_a_get_the_endpoint_cannot_answer_is_the_handlers(client: httpx.AsyncClient):
    missing = await client.get("/data/ed-fi/schools/0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    unknown = await client.get("/data/ed-fi/nothings/0123456789abcdef0123456789abcdef")
    assert unknown.status_code == 404
    assert "/ed-fi/nothings" in unknown.json()["detail"]
    parameters = await client.get("/data/ed-fi/schools/0123456789abcdef?limit=1")
    assert parameters.status_code == 400
    created = await client.post(
        "/data/ed-fi/schools", json={"schoolId": 3, "nameOfInstitution": "x"}
    )
    head = await client.head(created.headers["location"])
    get = await client.get(created.headers["location"])
    assert head.status_code == get.status_code == 200
    assert head.headers["etag"] == get.headers["etag"] and head.content == b""


def _without_correlation(headers: httpx.Headers) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in headers.items() if k != "correlation-id")


@pytest.mark.parametrize("root", ["/data", "/data/v3"])
async def test_a_plain_get_through_the_app_is_the_routes_answer_and_counted_as_it(
    api_store: Store, root: str
):
    app = create_app(api_store, ServerSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        created = await http.post(
            "/data/ed-fi/schools", json={"schoolId": 11, "nameOfInstitution": "Eleven"}
        )
        id = created.headers["location"].rsplit("/", 1)[1]
        before = (await http.get("/metrics")).text
        fast = await http.get(f"{root}/ed-fi/schools/{id}")
        unchanged = await http.get(
            f"{root}/ed-fi/schools/{id}", headers={"If-None-Match": fast.headers["etag"]}
        )
        after = (await http.get("/metrics")).text
    [route] = [
        r
        for r in app.routes
        if isinstance(r, Route) and r.path == root + "/{project}/{endpoint}/{id}"
    ]
    assert isinstance(route.endpoint, ItemEndpoint)
    scope = {
        "type": "http",
        "app": app,
        "method": "GET",
        "path": f"{root}/ed-fi/schools/{id}",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "path_params": {"project": "ed-fi", "endpoint": "schools", "id": id},
    }
    status, headers, body = await _call(route.endpoint.handler, scope)
    assert fast.status_code == status == 200 and fast.content == body
    assert _without_correlation(fast.headers) == sorted(
        (k.decode(), v.decode()) for k, v in headers
    )
    assert fast.headers["correlation-id"]
    assert unchanged.status_code == 304 and unchanged.content == b""
    for code in ("200", "304"):
        labels = {"route": route.path, "method": "GET", "status": code}
        counted = _metric(after, "tidemark_http_requests_total", **labels)
        assert counted - _metric(before, "tidemark_http_requests_total", **labels) == 1


async def test_paths_of_other_routes_in_an_items_shape_reach_those_routes(
    client: httpx.AsyncClient,
):
    await client.post("/data/ed-fi/schools", json={"schoolId": 12, "nameOfInstitution": "x"})
    collection = await client.get("/data/v3/ed-fi/schools")  # the ODS/API collection route
    assert collection.status_code == 200 and collection.json()[0]["schoolId"] == 12
    for root in ("/data", "/data/v3"):
        deletes = await client.get(f"{root}/ed-fi/schools/deletes")
        assert deletes.status_code == 200 and deletes.json() == []
        key_changes = await client.get(f"{root}/ed-fi/schools/keyChanges")
        assert key_changes.status_code == 200 and key_changes.json() == []
        partitions = await client.get(f"{root}/ed-fi/schools/partitions")
        assert partitions.status_code == 200 and "pageTokens" in partitions.json()
    trailing = await client.get("/data/ed-fi/schools/abc/")
    assert trailing.status_code in (307, 404)


async def test_a_plain_get_needs_a_token_when_clients_exist(api_store: Store):
    app = create_app(api_store, ServerSettings(clients=["app:s3cret"]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/data/ed-fi/schools/0123456789abcdef0123456789abcdef")
    assert response.status_code == 401


async def test_a_plain_get_whose_read_fails_is_answered_as_the_route_answers_it(
    tmp_path: Path,
):
    store = await open_store(tmp_path / "gone.db")
    app = create_app(store, ServerSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        created = await http.post(
            "/data/ed-fi/schools", json={"schoolId": 13, "nameOfInstitution": "x"}
        )
        await store.close()
        response = await http.get(created.headers["location"])
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["correlationId"] == response.headers["correlation-id"]
