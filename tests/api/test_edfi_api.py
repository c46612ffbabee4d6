"""The Ed-Fi data API over HTTP: status codes, headers, problem+json, parameters."""

from __future__ import annotations

import httpx

from tests.store import samples

JSON = {"Content-Type": "application/json"}


async def _post(
    client: httpx.AsyncClient, endpoint: str, body: object, **headers: str
) -> httpx.Response:
    return await client.post(f"/data/ed-fi/{endpoint}", json=body, headers=headers)


def _assert_problem(response: httpx.Response, status: int, type_suffix: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].startswith("urn:ed-fi:api:") and body["type"].endswith(type_suffix)
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["correlationId"] == response.headers["correlation-id"]
    assert "validationErrors" in body and "errors" in body
    return body


async def test_post_creates_with_location_then_updates_with_200(client: httpx.AsyncClient):
    created = await _post(client, "schools", samples.school(1))
    assert created.status_code == 201
    location = created.headers["location"]
    assert location.startswith("http://tidemark.test/data/ed-fi/schools/")
    fetched = await client.get(location)
    assert fetched.status_code == 200
    assert fetched.headers["etag"] == f'"{fetched.json()["_etag"]}"'
    assert fetched.json()["_lastModifiedDate"].endswith("Z")
    updated = await _post(client, "schools", samples.school(1, name="Renamed"))
    assert updated.status_code == 200
    assert updated.headers["location"] == location
    assert updated.headers["etag"] != created.headers["etag"]
    unchanged = await _post(client, "schools", samples.school(1, name="Renamed"))
    assert unchanged.status_code == 200 and unchanged.headers["etag"] == updated.headers["etag"]


async def test_get_with_matching_if_none_match_is_304(client: httpx.AsyncClient):
    location = (await _post(client, "schools", samples.school(1))).headers["location"]
    etag = (await client.get(location)).headers["etag"]
    assert (await client.get(location, headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(location, headers={"If-None-Match": '"0"'})).status_code == 200


async def test_put_replaces_and_checks_if_match(client: httpx.AsyncClient):
    location = (await _post(client, "schools", samples.school(1))).headers["location"]
    etag = (await client.get(location)).headers["etag"]
    replaced = await client.put(
        location, json=samples.school(1, name="B"), headers={"If-Match": etag}
    )
    assert replaced.status_code == 204 and replaced.headers["etag"] != etag
    stale = await client.put(location, json=samples.school(1, name="C"), headers={"If-Match": etag})
    _assert_problem(stale, 412, "optimistic-lock-failed")
    assert stale.json()["detail"] == "The item has been modified by another user."
    star = await client.put(
        "/data/ed-fi/schools/" + "0" * 32, json=samples.school(1), headers={"If-Match": "*"}
    )
    _assert_problem(star, 412, "optimistic-lock-failed")


async def test_put_identity_change_on_a_fixed_key_resource_is_400(client: httpx.AsyncClient):
    location = (await _post(client, "schools", samples.school(1))).headers["location"]
    response = await client.put(location, json=samples.school(2))
    _assert_problem(response, 400, "key-change-not-supported")


async def test_put_body_id_must_match(client: httpx.AsyncClient):
    location = (await _post(client, "schools", samples.school(1))).headers["location"]
    response = await client.put(location, json={**samples.school(1), "id": "x" * 32})
    _assert_problem(response, 400, "data-validation-failed")


async def test_if_none_match_star_on_post_of_existing_key_is_412(client: httpx.AsyncClient):
    await _post(client, "schools", samples.school(1))
    response = await _post(client, "schools", samples.school(1, name="X"), **{"If-None-Match": "*"})
    _assert_problem(response, 412, "optimistic-lock-failed")


async def test_delete_204_then_404_and_409_when_referenced(client: httpx.AsyncClient):
    await _post(client, "termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    school = (await _post(client, "schools", samples.school(1))).headers["location"]
    await _post(client, "sessions", samples.session())
    conflict = await client.delete(school)
    body = _assert_problem(conflict, 409, "dependent-item-exists")
    assert "Session" in body["detail"]
    other = (await _post(client, "schools", samples.school(2))).headers["location"]
    assert (await client.delete(other)).status_code == 204
    _assert_problem(await client.delete(other), 404, "not-found")
    _assert_problem(await client.get(other), 404, "not-found")


async def test_missing_references_are_409_naming_each(client: httpx.AsyncClient):
    response = await _post(client, "sessions", samples.session(school_id=5))
    body = _assert_problem(response, 409, "unresolved-reference")
    assert set(body["validationErrors"]) == {"$.schoolReference", "$.termDescriptor"}


async def test_schema_errors_are_400_with_every_path(client: httpx.AsyncClient):
    response = await _post(
        client, "sessions", {"sessionName": 4, "schoolYearTypeReference": {"schoolYear": "2025"}}
    )
    body = _assert_problem(response, 400, "data-validation-failed")
    assert {
        "$.sessionName",
        "$.schoolYearTypeReference.schoolYear",
        "$.schoolReference",
        "$.beginDate",
    } <= set(body["validationErrors"])


async def test_malformed_json_non_object_oversized_and_wrong_media_type(
    client: httpx.AsyncClient, settings
):
    broken = await client.post("/data/ed-fi/schools", content=b'{"schoolId": 1,', headers=JSON)
    _assert_problem(broken, 400, "malformed-body")
    empty = await client.post("/data/ed-fi/schools", content=b"", headers=JSON)
    _assert_problem(empty, 400, "malformed-body")
    array = await client.post("/data/ed-fi/schools", json=[samples.school(1)])
    _assert_problem(array, 400, "malformed-body")
    big = {"schoolId": 1, "nameOfInstitution": "x" * (settings.max_body_bytes + 10)}
    _assert_problem(await _post(client, "schools", big), 413, "payload-too-large")
    form = await client.post(
        "/data/ed-fi/schools", content=b"schoolId=1", headers={"Content-Type": "text/plain"}
    )
    _assert_problem(form, 415, "unsupported-media-type")
    listing = await client.get("/data/ed-fi/schools")
    assert listing.json() == []  # nothing was stored by any of them


async def test_unknown_endpoint_and_unknown_route_are_404(client: httpx.AsyncClient):
    _assert_problem(await client.get("/data/ed-fi/widgets"), 404, "not-found")
    _assert_problem(await _post(client, "widgets", {}), 404, "not-found")
    _assert_problem(await client.get("/nothing/here"), 404, "not-found")
    _assert_problem(await client.patch("/data/ed-fi/schools"), 405, "method-not-allowed")


async def test_listing_paging_total_count_and_query_fields(client: httpx.AsyncClient):
    for i in range(1, 6):
        await _post(client, "schools", samples.school(i, name="Odd" if i % 2 else "Even"))
    page = await client.get("/data/ed-fi/schools", params={"limit": 2, "offset": 1})
    assert [s["schoolId"] for s in page.json()] == [2, 3]
    assert "total-count" not in page.headers
    counted = await client.get("/data/ed-fi/schools", params={"totalCount": "true", "limit": 1})
    assert counted.headers["total-count"] == "5"
    odd = await client.get("/data/ed-fi/schools", params={"nameOfInstitution": "Odd"})
    assert [s["schoolId"] for s in odd.json()] == [1, 3, 5]
    by_id = await client.get("/data/ed-fi/schools", params={"schoolId": "4"})
    assert [s["schoolId"] for s in by_id.json()] == [4]
    for item in odd.json():
        assert set(item) >= {"id", "_etag", "_lastModifiedDate"}


async def test_bad_parameters_get_one_message_each(client: httpx.AsyncClient):
    response = await client.get(
        "/data/ed-fi/schools",
        params={
            "limit": "501",
            "offset": "-1",
            "totalCount": "maybe",
            "schoolId": "abc",
            "color": "red",
        },
    )
    body = _assert_problem(response, 400, "parameter-validation-failed")
    assert "Limit must be omitted or set to a numeric value between 0 and 500." in body["errors"]
    assert "Offset must be a numeric value greater than or equal to 0." in body["errors"]
    assert "TotalCount must be a boolean value." in body["errors"]
    assert any("schoolId" in e for e in body["errors"])
    assert any("'color'" in e for e in body["errors"])
    assert len(body["errors"]) == 5


async def test_history_route_newest_first(client: httpx.AsyncClient, clock):
    location = (await _post(client, "schools", samples.school(1, name="A"))).headers["location"]
    clock.advance(1)
    await _post(client, "schools", samples.school(1, name="B"))
    clock.advance(1)
    await _post(client, "schools", samples.school(1, name="C"))
    history = (await client.get(location + "/history")).json()
    assert [h["document"]["nameOfInstitution"] for h in history] == ["B", "A"]
    assert history[0]["validFrom"] < history[0]["validTo"]
    assert history[1]["validTo"] == history[0]["validFrom"]
    _assert_problem(
        await client.get("/data/ed-fi/schools/" + "0" * 32 + "/history"), 404, "not-found"
    )


async def test_discovery_and_openapi(client: httpx.AsyncClient):
    root = (await client.get("/")).json()
    assert root["applicationName"] == "tidemark"
    assert root["dataModels"] == [
        {"name": "Ed-Fi", "version": "5.1.0", "informationalVersion": "5.1.0"}
    ]
    assert root["urls"]["dataManagementApi"] == "http://tidemark.test/data/v3/"
    listing = (await client.get(root["urls"]["openApiMetadata"])).json()
    server = next(entry for entry in listing if entry["name"] == "Server")
    document = (await client.get(server["endpointUri"])).json()
    assert document["openapi"].startswith("3.")
    assert "/data/ed-fi/sessions" in document["paths"]
    assert set(document["paths"]["/data/ed-fi/sessions/{id}"]) == {"get", "put", "delete"}
    params = {p["name"] for p in document["paths"]["/data/ed-fi/sessions"]["get"]["parameters"]}
    assert {"limit", "offset", "totalCount", "sessionName", "schoolId"} <= params
