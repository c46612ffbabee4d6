"""Both URL layouts, ODS/API 7.3 cursor paging, and strict query parameters on every Ed-Fi route."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from tests.store import samples

LAYOUTS = ["/data/v3", "/data"]


async def _schools(client: httpx.AsyncClient, count: int, root: str = "/data") -> list[str]:
    locations = []
    for i in range(1, count + 1):
        created = await client.post(f"{root}/ed-fi/schools", json=samples.school(i))
        assert created.status_code == 201, created.text
        locations.append(created.headers["location"])
    return locations


@pytest.mark.parametrize("root", LAYOUTS)
async def test_every_route_answers_in_both_layouts_with_locations_in_the_same_layout(
    client: httpx.AsyncClient, root: str
):
    created = await client.post(f"{root}/ed-fi/schools", json=samples.school(1))
    location = created.headers["location"]
    assert location.startswith(f"http://tidemark.test{root}/ed-fi/schools/")
    id = location.rsplit("/", 1)[1]
    same = await client.post(f"{root}/ed-fi/schools", json=samples.school(1, name="Renamed"))
    assert same.headers["location"] == location
    assert (await client.get(location)).json()["nameOfInstitution"] == "Renamed"
    listed = (await client.get(f"{root}/ed-fi/schools")).json()
    assert [d["id"] for d in listed] == [id]
    history = (await client.get(f"{location}/history")).json()
    assert [h["document"]["nameOfInstitution"] for h in history] == ["Grand Bend High"]
    put = await client.put(location, json=samples.school(1, name="Again"))
    assert put.status_code == 204
    assert (await client.delete(location)).status_code == 204
    deletes = (await client.get(f"{root}/ed-fi/schools/deletes")).json()
    assert [d["id"] for d in deletes] == [id]
    assert (await client.get(f"{root}/ed-fi/schools/keyChanges")).json() == []
    assert (await client.get(f"{root}/ed-fi/schools/partitions")).json() == {"pageTokens": []}


async def test_layouts_share_one_store(client: httpx.AsyncClient):
    location = (await _schools(client, 1, "/data/v3"))[0]
    id = location.rsplit("/", 1)[1]
    assert (await client.get(f"/data/ed-fi/schools/{id}")).status_code == 200
    assert (await client.delete(f"/data/ed-fi/schools/{id}")).status_code == 204
    assert (await client.get(location)).status_code == 404


@pytest.mark.parametrize("root", LAYOUTS)
async def test_cursor_walk_returns_every_document_once_with_a_token_while_rows_remain(
    client: httpx.AsyncClient, root: str
):
    locations = await _schools(client, 7, root)
    first = await client.get(f"{root}/ed-fi/schools", params={"limit": 3})
    assert first.status_code == 200
    pages = [first.json()]
    token = first.headers.get("next-page-token")
    while token:
        page = await client.get(f"{root}/ed-fi/schools", params={"pageToken": token, "pageSize": 3})
        assert page.status_code == 200, page.text
        pages.append(page.json())
        token = page.headers.get("next-page-token")
    assert [len(p) for p in pages] == [3, 3, 1]
    walked = [d["id"] for p in pages for d in p]
    assert walked == [loc.rsplit("/", 1)[1] for loc in locations]
    # a full last page hands out no token: nothing remains
    exact = await client.get(f"{root}/ed-fi/schools", params={"limit": 7})
    assert "next-page-token" not in exact.headers
    assert (
        "next-page-token"
        not in (await client.get(f"{root}/ed-fi/schools", params={"limit": 0})).headers
    )
    # offset paging stays as it is, without tokens
    offset = await client.get(f"{root}/ed-fi/schools", params={"limit": 3, "offset": 3})
    assert [d["id"] for d in offset.json()] == walked[3:6]
    assert "next-page-token" not in offset.headers


async def test_cursor_walk_with_writes_between_pages_sees_each_document_once(
    client: httpx.AsyncClient,
):
    await _schools(client, 12)
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 4}
    step = 0
    while True:
        page = await client.get("/data/v3/ed-fi/schools", params=params)
        seen.extend(d["id"] for d in page.json())
        step += 1
        await client.post("/data/ed-fi/schools", json=samples.school(step, name=f"Edit {step}"))
        await client.post("/data/ed-fi/schools", json=samples.school(100 + step))
        token = page.headers.get("next-page-token")
        if not token:
            break
        params = {"pageToken": token, "pageSize": 4}
    assert len(seen) == len(set(seen))
    final = (await client.get("/data/ed-fi/schools", params={"limit": 100})).json()
    originals = [d["id"] for d in final if d["schoolId"] <= 12]
    assert set(originals) <= set(seen)


async def test_cursor_walk_of_a_change_window_follows_change_versions(client: httpx.AsyncClient):
    await _schools(client, 5)
    await client.post("/data/ed-fi/schools", json=samples.school(1, name="Changed"))
    versions = (await client.get("/changeQueries/v1/availableChangeVersions")).json()
    window = {"minChangeVersion": 2, "maxChangeVersion": versions["newestChangeVersion"]}
    page = await client.get("/data/v3/ed-fi/schools", params={**window, "limit": 2})
    rows = page.json()
    while token := page.headers.get("next-page-token"):
        page = await client.get(
            "/data/v3/ed-fi/schools", params={**window, "pageToken": token, "pageSize": 2}
        )
        rows += page.json()
    assert [r["schoolId"] for r in rows] == [2, 3, 4, 5, 1]
    assert [int(r["_etag"]) for r in rows] == sorted(int(r["_etag"]) for r in rows)


async def test_partitions_split_the_collection_for_parallel_walks(client: httpx.AsyncClient):
    locations = await _schools(client, 10)
    response = await client.get("/data/v3/ed-fi/schools/partitions", params={"number": 3})
    tokens = response.json()["pageTokens"]
    assert len(tokens) == 3

    async def drain(token: str) -> list[str]:
        ids: list[str] = []
        while token:
            page = await client.get(
                "/data/v3/ed-fi/schools", params={"pageToken": token, "pageSize": 2}
            )
            ids += [d["id"] for d in page.json()]
            token = page.headers.get("next-page-token", "")
        return ids

    parts = await asyncio.gather(*(drain(t) for t in tokens))
    assert sorted(i for part in parts for i in part) == sorted(
        loc.rsplit("/", 1)[1] for loc in locations
    )
    filtered = await client.get(
        "/data/ed-fi/schools/partitions", params={"number": 2, "nameOfInstitution": "nope"}
    )
    assert filtered.json() == {"pageTokens": []}


def _errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "urn:ed-fi:api:bad-request:parameter-validation-failed"
    return list(body["errors"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pageSize": "5"}, "PageToken is required when pageSize is specified."),
        ({"pageSize": "5", "offset": "0"}, "Use limit instead of pageSize"),
        ({"pageToken": "MSwy", "offset": "1"}, "cannot be used together"),
        ({"pageToken": "MSwy", "limit": "1"}, "Use pageSize instead of limit"),
        ({"pageToken": "MSwy", "totalCount": "true"}, "Total count cannot be determined"),
        ({"pageToken": "not a token"}, "The page token provided was invalid."),
        ({"pageToken": "MSwy", "pageSize": "501"}, "PageSize must be omitted"),
        ({"pageToken": base64.urlsafe_b64encode(b"9,3").decode()}, "page token provided"),
    ],
)
async def test_cursor_parameters_are_checked_as_ods_api_does(
    client: httpx.AsyncClient, params: dict[str, str], message: str
):
    errors = _errors(await client.get("/data/v3/ed-fi/schools", params=params))
    assert any(message in e for e in errors), errors


async def test_partition_count_is_bounded(client: httpx.AsyncClient):
    for number in ("0", "201", "x"):
        errors = _errors(
            await client.get("/data/ed-fi/schools/partitions", params={"number": number})
        )
        assert errors == ["Number of partitions must be between 1 and 200."]


@pytest.mark.parametrize("root", LAYOUTS)
async def test_repeated_or_unknown_parameters_are_400_on_every_route(
    client: httpx.AsyncClient, root: str
):
    location = (await _schools(client, 1, root))[0]
    base = f"{root}/ed-fi/schools"
    repeated = _errors(await client.get(f"{base}?limit=1&limit=2"))
    assert repeated == ["The query parameter 'limit' must be given only once."]
    for url in (
        f"{location}/history?limit=-1",
        f"{location}/history?foo=1",
        f"{location}?foo=1",
        f"{base}/deletes?foo=1",
        f"{base}/keyChanges?limit=1&limit=1",
        f"{base}/partitions?number=1&number=2",
        "/changeQueries/v1/availableChangeVersions?foo=1",
    ):
        assert _errors(await client.get(url)), url
    assert _errors(await client.post(f"{base}?foo=1", json=samples.school(2)))
    assert _errors(await client.put(f"{location}?foo=1", json=samples.school(1)))
    assert _errors(await client.delete(f"{location}?foo=1"))
    # nothing was written by the refused requests
    assert len((await client.get(base)).json()) == 1
    assert (await client.get(location)).status_code == 200
