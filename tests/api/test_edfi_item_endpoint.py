"""The item route's plain GET, answered by the endpoint itself, is byte for byte the handler's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Route
from starlette.types import Message

from tidemark.api import ServerSettings, create_app
from tidemark.api._edfi import ItemEndpoint
from tidemark.store import Store


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
