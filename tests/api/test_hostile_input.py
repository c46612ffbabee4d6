"""Hostile request bodies get a clear 400 on every route, on SQLite and PostgreSQL: JSON nested
too deeply, NUL characters in strings, and Ed-Fi numbers the store cannot keep exactly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from tests.store import samples
from tests.support import free_port
from tidemark.api import ServerSettings, create_app
from tidemark.core import MAX_JSON_DEPTH
from tidemark.store import Store
from tidemark.sync import new_id

NOTE = new_id("k")
T1 = "2024-01-01T00:00:01.000000Z"
MALFORMED = "urn:ed-fi:api:bad-request:malformed-body"
INVALID = "urn:ed-fi:api:bad-request:data-validation-failed"


def nested(levels: int) -> Any:
    """A value whose arrays and objects nest ``levels`` deep."""
    value: Any = 1
    for level in range(levels):
        value = {"a": value} if level % 2 else [value]
    return value


def note_blob(**members: Any) -> dict[str, Any]:
    return {"Note": {NOTE: {"id": NOTE, "title": "t", "updated_at": T1, **members}}}


def depth_bodies(levels: int) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """(method, path, body, headers) of every route that reads JSON, the body ``levels`` deep."""
    inner = nested(levels - 1)  # each body adds one level of its own
    patient = {"resourceType": "Patient", "id": "p1", "extension": inner}
    return [
        ("POST", "/data/ed-fi/schools", {**samples.school(1), "deep": inner}, {}),
        ("PUT", "/data/ed-fi/schools/" + "0" * 32, {**samples.school(1), "deep": inner}, {}),
        ("PUT", "/fhir/Patient/p1", patient, {}),
        ("POST", "/fhir/Patient", patient, {}),
        ("PUT", "/sync/v1/ns/blobs/app.k", {"deep": inner}, {"If-None-Match": "*"}),
    ]


@pytest.mark.parametrize("route", range(5))
async def test_json_nested_deeper_than_the_limit_is_400_before_it_is_parsed(
    client: httpx.AsyncClient, route: int
):
    method, path, body, headers = depth_bodies(MAX_JSON_DEPTH + 1)[route]
    response = await client.request(method, path, content=orjson.dumps(body), headers=headers)
    assert response.status_code == 400, response.text
    text = response.text
    assert f"more than {MAX_JSON_DEPTH} levels deep" in text
    if path.startswith("/fhir"):
        assert response.json()["resourceType"] == "OperationOutcome"
    else:
        assert response.json()["type"] == MALFORMED


@pytest.mark.parametrize("route", range(5))
async def test_json_at_the_limit_is_not_refused_for_its_depth(
    client: httpx.AsyncClient, route: int
):
    method, path, body, headers = depth_bodies(MAX_JSON_DEPTH)[route]
    response = await client.request(method, path, content=orjson.dumps(body), headers=headers)
    # Each route judges the body on its merits (the Ed-Fi schema has no "deep" member; the
    # sync blob has no valid entity name "deep"), never by its nesting.
    assert "levels deep" not in response.text
    assert response.status_code < 500, response.text


@pytest.fixture
def served_app(api_store: Store) -> Iterator[int]:
    """The app on a real loopback port (uvicorn in a thread); yields the port."""
    port = free_port()
    app = create_app(api_store, ServerSettings(max_body_bytes=8 * 1024 * 1024))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(20)


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on ``sock`` and read its whole response (Content-Length framed)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-response"
        body += chunk
    return head.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_a_deep_body_leaves_the_keep_alive_connection_usable(served_app: int, levels: int):
    body = b'{"a":' * levels + b"1" + b"}" * levels
    with socket.create_connection(("127.0.0.1", served_app), timeout=30) as sock:
        for path in ("/data/ed-fi/schools", "/fhir/Basic", "/sync/v1/ns/blobs/app.k"):
            request = (
                f"PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"If-None-Match: *\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            method = b"POST" if not path.startswith("/sync") else b"PUT"
            status = _exchange(sock, method + request[3:])
            assert status == b"HTTP/1.1 400 Bad Request", status
        # The same connection still serves the next request.
        assert _exchange(sock, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n") == b"HTTP/1.1 200 OK"


# -- NUL characters ----------------------------------------------------------------------------
async def test_a_nul_character_in_an_ed_fi_string_is_400_naming_its_path(
    client: httpx.AsyncClient,
):
    response = await client.post(
        "/data/ed-fi/schools", json=samples.school(7, name="Nul\u0000School")
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == INVALID
    assert "NUL character" in problem["validationErrors"]["$.nameOfInstitution"][0]
    # Nothing was stored, and filtered reads keep working on both engines.
    listed = await client.get("/data/ed-fi/schools", params={"nameOfInstitution": "x"})
    assert listed.status_code == 200 and listed.json() == []


async def test_a_nul_character_in_a_fhir_resource_is_400_naming_its_path(
    client: httpx.AsyncClient,
):
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "a\u0000b"}]}
    response = await client.put("/fhir/Patient/p1", json=patient)
    assert response.status_code == 400, response.text
    issues = response.json()["issue"]
    assert any(
        item.get("expression") == ["$.name[0].family"] and "NUL" in item["diagnostics"]
        for item in issues
    ), issues
    assert (await client.get("/fhir/Patient", params={"_id": "p1"})).json()["total"] == 0


async def test_a_nul_character_in_a_sync_blob_or_member_name_is_400(client: httpx.AsyncClient):
    for blob, path in [
        (note_blob(title="a\u0000"), f"$.Note.{NOTE}.title"),
        (note_blob(**{"x\u0000y": 1}), f"$.Note.{NOTE}.x\u0000y"),
    ]:
        response = await client.put(
            "/sync/v1/ns/blobs/app.k", content=orjson.dumps(blob), headers={"If-None-Match": "*"}
        )
        assert response.status_code == 400, response.text
        assert path in response.json()["validationErrors"]
    assert (await client.get("/sync/v1/ns/metadata")).json()["keys"] == {}


# -- Ed-Fi numbers -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("123456789012345678901234567890", "is not an integer this API can store exactly"),
        ("1e308", "is not an integer this API can store exactly"),
        ("9223372036854775808", "outside the range of a 64-bit integer"),
        ("-9223372036854775809", "is not an integer this API can store exactly"),
        ("18446744073709551616", "is not an integer this API can store exactly"),
        ("1.5", 'is not of type "integer"'),
    ],
)
async def test_an_integer_the_store_cannot_keep_exactly_is_400_with_its_path(
    client: httpx.AsyncClient, literal: str, message: str
):
    body = orjson.dumps(samples.school(1)).replace(
        b'"schoolId":1', f'"schoolId":{literal}'.encode()
    )
    response = await client.post(
        "/data/ed-fi/schools", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["validationErrors"]["$.schoolId"][0]
    assert (await client.get("/data/ed-fi/schools")).json() == []


async def test_an_integral_number_with_a_fraction_is_stored_as_an_integer(
    client: httpx.AsyncClient,
):
    # JSON Schema 2020-12 (the ApiSchema's dialect) counts 5.0 as an integer: accepted, and kept
    # as 5, so that it is found by its natural key and compares equal to 5 everywhere.
    body = orjson.dumps(samples.school(5)).replace(b'"schoolId":5', b'"schoolId":5.0')
    created = await client.post(
        "/data/ed-fi/schools", content=body, headers={"Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    stored = await client.get(created.headers["location"])
    assert b'"schoolId":5,' in stored.content or b'"schoolId":5}' in stored.content
    found = (await client.get("/data/ed-fi/schools", params={"schoolId": "5"})).json()
    assert [school["schoolId"] for school in found] == [5]
    again = await client.post("/data/ed-fi/schools", json=samples.school(5))
    assert again.status_code == 200  # the same natural key: an update, not a second school
