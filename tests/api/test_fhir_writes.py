"""FHIR writes: conditional create/update/delete/patch, PATCH, PUT id rules, history filters,
and the shape of what the facade answers (no empty arrays, OperationOutcomes everywhere)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.fhir_support import (  # noqa: F401
    FHIR_JSON,
    assert_outcome,
    fhir_fixture,
    fhir_settings_fixture,
    fhir_store_fixture,
    patient,
)
from tidemark.api import ServerSettings, create_app
from tidemark.store import Store


async def _count(fhir: httpx.AsyncClient, resource_type: str = "Patient") -> int:
    return int((await fhir.get(f"/{resource_type}", params={"_count": "0"})).json()["total"])


def _named(family: str, id: str | None = None, **members: Any) -> dict[str, Any]:
    return patient(id, name=[{"family": family}], **members)


# -- conditional create --------------------------------------------------------------------------
@pytest.mark.parametrize("criteria", ["", "  ", "_count=1", "%ZZ=&&&", "name", "name=", "&&"])
async def test_if_none_exist_with_empty_or_invalid_criteria_is_400_and_creates_nothing(
    fhir: httpx.AsyncClient, criteria: str
) -> None:
    await fhir.put("/Patient/other", json=_named("Other", "other"))
    response = await fhir.post("/Patient", json=_named("Shaw"), headers={"If-None-Exist": criteria})
    assert_outcome(response, 400, "invalid")
    assert await _count(fhir) == 1


async def test_if_none_exist_creates_once_returns_the_match_and_refuses_two(
    fhir: httpx.AsyncClient,
) -> None:
    first = await fhir.post("/Patient", json=_named("Shaw"), headers={"If-None-Exist": "name=Shaw"})
    assert first.status_code == 201
    again = await fhir.post(
        "/Patient", json=_named("Shaw"), headers={"If-None-Exist": "Patient?name=Shaw"}
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    await fhir.put("/Patient/second", json=_named("Shawn", "second"))
    both = await fhir.post("/Patient", json=_named("Shaw"), headers={"If-None-Exist": "name=Shaw"})
    assert_outcome(both, 412)
    assert await _count(fhir) == 2
    unknown = await fhir.post("/Patient", json=_named("X"), headers={"If-None-Exist": "nope=1"})
    assert_outcome(unknown, 400)


async def test_post_with_criteria_in_the_query_is_a_conditional_create(
    fhir: httpx.AsyncClient,
) -> None:
    created = await fhir.post("/Patient", params={"name": "Kim"}, json=_named("Kim"))
    assert created.status_code == 201
    matched = await fhir.post("/Patient", params={"name": "Kim"}, json=_named("Kim"))
    assert matched.status_code == 200 and matched.json()["id"] == created.json()["id"]
    both = await fhir.post(
        "/Patient", params={"name": "Kim"}, json=_named("Kim"), headers={"If-None-Exist": "name=K"}
    )
    assert_outcome(both, 400)
    assert await _count(fhir) == 1


# -- conditional update, delete, patch -----------------------------------------------------------
async def test_conditional_update_creates_updates_and_refuses_ambiguity(
    fhir: httpx.AsyncClient,
) -> None:
    created = await fhir.put("/Patient", params={"name": "Lee"}, json=_named("Lee", gender="male"))
    assert created.status_code == 201
    id = created.json()["id"]
    updated = await fhir.put(
        "/Patient", params={"name": "Lee"}, json=_named("Lee", gender="female")
    )
    assert updated.status_code == 200 and updated.json()["id"] == id
    assert updated.json()["gender"] == "female"
    wrong_id = await fhir.put("/Patient", params={"name": "Lee"}, json=_named("Lee", "other"))
    assert_outcome(wrong_id, 400)
    await fhir.put("/Patient/lee2", json=_named("Leeds", "lee2"))
    assert_outcome(await fhir.put("/Patient", params={"name": "Lee"}, json=_named("Lee")), 412)
    assert_outcome(await fhir.put("/Patient", json=_named("Lee")), 400)
    assert_outcome(await fhir.put("/Patient", params={"_count": "1"}, json=_named("Lee")), 400)
    stale = await fhir.put(
        "/Patient",
        params={"name": "Leeds"},
        json=_named("Leeds"),
        headers={"If-Match": 'W/"1"'},
    )
    assert_outcome(stale, 412)
    assert await _count(fhir) == 2


async def test_conditional_delete_deletes_the_one_match(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/a", json=_named("Ames", "a"))
    await fhir.put("/Patient/b", json=_named("Bates", "b"))
    await fhir.put("/Patient/c", json=_named("Batesman", "c"))
    nothing = await fhir.delete("/Patient", params={"name": "Nobody"})
    assert nothing.status_code == 200
    assert nothing.json()["issue"][0]["severity"] == "warning"
    assert_outcome(await fhir.delete("/Patient", params={"name": "Bates"}), 412)
    assert_outcome(await fhir.delete("/Patient"), 400)
    deleted = await fhir.delete("/Patient", params={"name": "Ames"})
    assert deleted.status_code == 204
    assert_outcome(await fhir.get("/Patient/a"), 410)
    assert await _count(fhir) == 2


async def test_json_patch_applies_and_a_failing_test_changes_nothing(
    fhir: httpx.AsyncClient,
) -> None:
    first = (await fhir.put("/Patient/p", json=_named("Shaw", "p", gender="male"))).json()
    patch = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/name/0/given", "value": ["Amy"]},
    ]
    patched = await fhir.patch(
        "/Patient/p", content=_json(patch), headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["gender"] == "female" and body["name"][0]["given"] == ["Amy"]
    assert int(body["meta"]["versionId"]) > int(first["meta"]["versionId"])
    failing = [
        {"op": "replace", "path": "/gender", "value": "other"},
        {"op": "test", "path": "/gender", "value": "male"},
    ]
    refused = await fhir.patch(
        "/Patient/p",
        content=_json(failing),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(refused, 422)
    current = (await fhir.get("/Patient/p")).json()
    assert current["gender"] == "female" and current["meta"] == body["meta"]
    missing_path = [{"op": "remove", "path": "/birthDate"}]
    assert_outcome(
        await fhir.patch(
            "/Patient/p",
            content=_json(missing_path),
            headers={"Content-Type": "application/json-patch+json"},
        ),
        422,
    )
    malformed = await fhir.patch(
        "/Patient/p",
        content=_json({"op": "replace"}),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(malformed, 400)
    change_id = [{"op": "replace", "path": "/id", "value": "q"}]
    assert_outcome(
        await fhir.patch(
            "/Patient/p",
            content=_json(change_id),
            headers={"Content-Type": "application/json-patch+json"},
        ),
        422,
    )


async def test_merge_patch_and_plain_json_patch_merge(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p", json=_named("Shaw", "p", gender="male", birthDate="1980-01-01"))
    merged = await fhir.patch(
        "/Patient/p",
        content=_json({"gender": "female", "birthDate": None}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["gender"] == "female" and "birthDate" not in merged.json()
    plain = await fhir.patch("/Patient/p", json={"active": False})
    assert plain.status_code == 200 and plain.json()["active"] is False
    assert plain.json()["name"] == [{"family": "Shaw"}]


async def test_patch_errors_are_outcomes(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p", json=_named("Shaw", "p"))
    wrong_type = await fhir.patch(
        "/Patient/p", content=b"gender=male", headers={"Content-Type": "text/plain"}
    )
    body = assert_outcome(wrong_type, 415)
    assert "application/json-patch+json" in body["issue"][0]["diagnostics"]
    assert_outcome(await fhir.patch("/Patient/none", json={"active": True}), 404)
    stale = await fhir.patch("/Patient/p", json={"active": True}, headers={"If-Match": 'W/"999"'})
    assert_outcome(stale, 412)
    await fhir.delete("/Patient/p")
    assert_outcome(await fhir.patch("/Patient/p", json={"active": True}), 410)


async def test_conditional_patch_patches_the_one_match(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p", json=_named("Shaw", "p"))
    patched = await fhir.patch("/Patient", params={"name": "Shaw"}, json={"gender": "other"})
    assert patched.status_code == 200 and patched.json()["id"] == "p"
    assert_outcome(await fhir.patch("/Patient", params={"name": "Zed"}, json={"active": 1}), 404)


async def test_concurrent_patches_of_one_resource_all_apply(fhir: httpx.AsyncClient) -> None:
    await fhir.put(
        "/Patient/p", json=_named("Shaw", "p", extension=[{"url": "x", "valueInteger": 0}])
    )
    ops = [[{"op": "add", "path": "/name/-", "value": {"family": f"F{i}"}}] for i in range(8)]
    responses = await asyncio.gather(
        *(
            fhir.patch(
                "/Patient/p",
                content=_json(op),
                headers={"Content-Type": "application/json-patch+json"},
            )
            for op in ops
        )
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    names = {n["family"] for n in (await fhir.get("/Patient/p")).json()["name"]}
    assert names == {"Shaw", *(f"F{i}" for i in range(8))}


# -- PUT ids, empty members ----------------------------------------------------------------------
async def test_put_with_a_body_id_other_than_the_url_is_400(fhir: httpx.AsyncClient) -> None:
    assert_outcome(await fhir.put("/Patient/a", json=_named("A", "b")), 400)
    assert_outcome(await fhir.put("/Patient/a", json=_named("A")), 400)
    assert (await fhir.get("/Patient/a")).status_code == 404


@pytest.mark.parametrize(
    ("members", "where"),
    [
        ({"identifier": []}, "Patient.identifier"),
        ({"name": [{}]}, "Patient.name[0]"),
        ({"gender": ""}, "Patient.gender"),
        ({"birthDate": None}, "Patient.birthDate"),
    ],
)
async def test_empty_members_are_refused_so_none_are_ever_served(
    fhir: httpx.AsyncClient, members: dict[str, Any], where: str
) -> None:
    body = assert_outcome(await fhir.put("/Patient/e", json=patient("e", **members)), 400)
    assert where in body["issue"][0]["diagnostics"]
    assert (await fhir.get("/Patient/e")).status_code == 404


# -- history -------------------------------------------------------------------------------------
async def test_history_paging_keeps_since_and_never_returns_older_versions(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p", json=_named("V0", "p"))
    await fhir.put("/Patient/p", json=_named("V1", "p"))
    since = (await fhir.get("/Patient/p")).json()["meta"]["lastUpdated"]
    await asyncio.sleep(0)
    for i in range(2, 6):
        await fhir.put("/Patient/p", json=_named(f"V{i}", "p"))
    first = (await fhir.get("/Patient/p/_history", params={"_since": since, "_count": "2"})).json()
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "_since=" in links["self"] and "_since=" in links["next"]
    seen = [e["resource"]["name"][0]["family"] for e in first["entry"]]
    url: str | None = links["next"]
    while url:
        page = (await fhir.get(url)).json()
        seen += [e["resource"]["name"][0]["family"] for e in page["entry"]]
        url = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
    assert "V0" not in seen and seen[:4] == ["V5", "V4", "V3", "V2"]
    assert len(seen) == first["total"]


async def test_history_at_returns_the_versions_current_then(fhir: httpx.AsyncClient) -> None:
    v1 = (await fhir.put("/Patient/p", json=_named("V1", "p"))).json()
    v2 = (await fhir.put("/Patient/p", json=_named("V2", "p"))).json()
    at = v2["meta"]["lastUpdated"]
    page = (await fhir.get("/Patient/p/_history", params={"_at": at})).json()
    assert [e["resource"]["meta"]["versionId"] for e in page["entry"]] == [v2["meta"]["versionId"]]
    assert "_at=" in page["link"][0]["url"]
    before = (await fhir.get("/Patient/p/_history", params={"_at": "1999"})).json()
    assert before["total"] == 0 and "entry" not in before
    assert v1["meta"]["versionId"] != v2["meta"]["versionId"]
    assert_outcome(await fhir.get("/Patient/p/_history", params={"_at": "yesterday"}), 400)


# -- errors and open paths on a secured server ---------------------------------------------------
async def test_fhir_401s_are_operation_outcomes_and_metadata_is_open(fhir_store: Store) -> None:
    app = create_app(fhir_store, ServerSettings(clients=["app:s3cret"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as http:
        denied = await http.get("/Patient/p")
        assert denied.status_code == 401
        assert denied.headers["content-type"].startswith(FHIR_JSON)
        outcome = denied.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "login"
        assert "www-authenticate" in denied.headers
        assert (await http.get("/metadata")).json()["resourceType"] == "CapabilityStatement"
        edfi = await http.get("http://t/data/ed-fi/schools")
        assert edfi.headers["content-type"].startswith("application/problem+json")


async def test_unsupported_body_type_names_the_fhir_media_types(fhir: httpx.AsyncClient) -> None:
    response = await fhir.put(
        "/Patient/p", content=b"<Patient/>", headers={"Content-Type": "application/xml"}
    )
    body = assert_outcome(response, 415)
    assert "application/fhir+json" in body["issue"][0]["diagnostics"]


def _json(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


def _fhirpath_patch(*operations: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    parameters = []
    for kind, path, parts in operations:
        items: list[dict[str, Any]] = [
            {"name": "type", "valueCode": kind},
            {"name": "path", "valueString": path},
        ]
        items += [{"name": name, **value} for name, value in parts.items()]
        parameters.append({"name": "operation", "part": items})
    return {"resourceType": "Parameters", "parameter": parameters}


async def test_fhirpath_patch_replaces_deletes_and_needs_definitions_to_add(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p", json=_named("Shaw", "p", gender="male", birthDate="1970-01-01"))
    body = _fhirpath_patch(
        ("replace", "Patient.gender", {"value": {"valueCode": "female"}}),
        ("delete", "Patient.birthDate", {}),
        (
            "add",
            "Patient.name[0]",
            {"name": {"valueString": "given"}, "value": {"valueString": "x"}},
        ),
    )
    refused = await fhir.patch("/Patient/p", json=body, headers={"Content-Type": FHIR_JSON})
    assert "--fhir-package" in assert_outcome(refused, 422)["issue"][0]["diagnostics"]
    body["parameter"].pop()
    patched = await fhir.patch("/Patient/p", json=body, headers={"Content-Type": FHIR_JSON})
    assert patched.status_code == 200, patched.text
    assert patched.json()["gender"] == "female" and "birthDate" not in patched.json()


async def test_methods_no_fhir_route_knows_are_operation_outcomes(fhir: httpx.AsyncClient) -> None:
    response = await fhir.request("PROPFIND", "/Patient/p")
    assert_outcome(response, 405)
