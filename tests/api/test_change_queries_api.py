"""The Change Queries HTTP contract (Ed-Fi ODS/API)."""

from __future__ import annotations

import httpx

from tests.store import samples

from .test_edfi_api import _assert_problem, _post


async def test_available_change_versions_and_live_window(client: httpx.AsyncClient):
    empty = (await client.get("/changeQueries/v1/availableChangeVersions")).json()
    assert empty == {"oldestChangeVersion": 0, "newestChangeVersion": 0}
    await _post(client, "schools", samples.school(1))
    await _post(client, "schools", samples.school(2))
    versions = (await client.get("/changeQueries/v1/availableChangeVersions")).json()
    newest = versions["newestChangeVersion"]
    assert newest == 2
    window = await client.get(
        "/data/ed-fi/schools",
        params={"minChangeVersion": 2, "maxChangeVersion": newest, "totalCount": "true"},
    )
    assert [s["schoolId"] for s in window.json()] == [2]
    assert window.headers["total-count"] == "1"


async def test_deletes_and_key_changes_rows(client: httpx.AsyncClient):
    await _post(client, "schools", samples.school(1))
    period = (await _post(client, "classPeriods", samples.class_period("A"))).headers["location"]
    await client.put(period, json=samples.class_period("B"))
    await client.put(period, json=samples.class_period("C"))
    gone = (await _post(client, "schools", samples.school(5))).headers["location"]
    await client.delete(gone)
    newest = (await client.get("/changeQueries/v1/availableChangeVersions")).json()[
        "newestChangeVersion"
    ]
    deletes = (
        await client.get(
            "/data/ed-fi/schools/deletes",
            params={"minChangeVersion": newest, "maxChangeVersion": newest},
        )
    ).json()
    assert deletes == [
        {"id": gone.rsplit("/", 1)[1], "changeVersion": newest, "keyValues": {"schoolId": 5}}
    ]
    changes = (await client.get("/data/ed-fi/classPeriods/keyChanges")).json()
    assert len(changes) == 1
    assert changes[0]["oldKeyValues"] == {"classPeriodName": "A", "schoolId": 1}
    assert changes[0]["newKeyValues"] == {"classPeriodName": "C", "schoolId": 1}
    assert changes[0]["id"] == period.rsplit("/", 1)[1]


async def test_change_query_parameter_errors_one_message_each(client: httpx.AsyncClient):
    bad = await client.get(
        "/data/ed-fi/schools/deletes",
        params={
            "minChangeVersion": "x",
            "maxChangeVersion": "-3",
            "limit": "600",
            "offset": "-1",
            "totalCount": "1",
        },
    )
    body = _assert_problem(bad, 400, "parameter-validation-failed")
    assert body["errors"] == [
        "Limit must be omitted or set to a numeric value between 0 and 500.",
        "Offset must be a numeric value greater than or equal to 0.",
        "TotalCount must be a boolean value.",
        "MinChangeVersion must be a numeric value greater than or equal to 0.",
        "MaxChangeVersion must be a numeric value greater than or equal to 0.",
    ]
    reversed_window = await client.get(
        "/data/ed-fi/schools", params={"minChangeVersion": 9, "maxChangeVersion": 3}
    )
    body = _assert_problem(reversed_window, 400, "parameter-validation-failed")
    assert body["errors"] == ["MinChangeVersion must be less than or equal to MaxChangeVersion."]
    unknown = await client.get("/data/ed-fi/schools/keyChanges", params={"schoolId": 1})
    _assert_problem(unknown, 400, "parameter-validation-failed")


async def test_unknown_resource_on_deletes_and_key_changes_is_404(client: httpx.AsyncClient):
    _assert_problem(await client.get("/data/ed-fi/widgets/deletes"), 404, "not-found")
    _assert_problem(await client.get("/data/ed-fi/widgets/keyChanges"), 404, "not-found")


async def test_window_below_oldest_is_410_with_resync_advice(
    client: httpx.AsyncClient, api_store, clock
):
    from datetime import timedelta

    await _post(client, "schools", samples.school(1))
    clock.advance(7200)
    await _post(client, "schools", samples.school(2))
    await api_store.purge_changes(clock.now() - timedelta(hours=1))
    versions = (await client.get("/changeQueries/v1/availableChangeVersions")).json()
    assert versions["oldestChangeVersion"] == 2
    response = await client.get("/data/ed-fi/schools", params={"minChangeVersion": 0})
    body = _assert_problem(response, 410, "gone")
    assert "no longer retained" in body["detail"] and "full read" in body["detail"]
    ok = await client.get("/data/ed-fi/schools", params={"minChangeVersion": 2})
    assert [s["schoolId"] for s in ok.json()] == [2]
    full = await client.get("/data/ed-fi/schools")  # a full read still works
    assert len(full.json()) == 2
