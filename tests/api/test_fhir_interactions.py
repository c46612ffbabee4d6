"""The FHIR facade's REST interactions: create, update, read, vread, delete, history, metadata."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.api.fhir_support import (  # noqa: F401
    FHIR_JSON,
    assert_outcome,
    fhir_fixture,
    fhir_settings_fixture,
    fhir_store_fixture,
    patient,
)
from tests.support import require_data
from tidemark.core import (
    BadRequestError,
    ConflictError,
    GoneError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    TidemarkError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)


def _http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


async def test_put_creates_with_201_then_updates_with_200(fhir: httpx.AsyncClient) -> None:
    created = await fhir.put("/Patient/p1", json=patient("p1", gender="male"))
    assert created.status_code == 201
    assert created.headers["content-type"].startswith(FHIR_JSON)
    body = created.json()
    assert body["id"] == "p1" and body["gender"] == "male"
    first_version = body["meta"]["versionId"]
    assert created.headers["location"].endswith(f"/fhir/Patient/p1/_history/{first_version}")

    updated = await fhir.put("/Patient/p1", json=patient("p1", gender="female"))
    assert updated.status_code == 200
    assert int(updated.json()["meta"]["versionId"]) > int(first_version)
    assert updated.headers["etag"] == f'W/"{updated.json()["meta"]["versionId"]}"'


async def test_put_without_body_id_is_a_400_and_stores_nothing(fhir: httpx.AsyncClient) -> None:
    response = await fhir.put("/Patient/noid", json=patient())
    body = assert_outcome(response, 400, "invalid")
    assert '"id": "noid"' in body["issue"][0]["diagnostics"]
    assert (await fhir.get("/Patient/noid")).status_code == 404


async def test_put_rejects_a_resource_type_that_differs_from_the_url(
    fhir: httpx.AsyncClient,
) -> None:
    response = await fhir.put("/Patient/p1", json={"resourceType": "Observation", "id": "p1"})
    assert_outcome(response, 400, "invalid")
    assert (await fhir.get("/Patient/p1")).status_code == 404


async def test_put_rejects_a_body_id_that_differs_from_the_url(fhir: httpx.AsyncClient) -> None:
    response = await fhir.put("/Patient/p1", json=patient("other"))
    body = assert_outcome(response, 400)
    assert "does not match the id in the URL" in body["issue"][0]["diagnostics"]
    assert (await fhir.get("/Patient/p1")).status_code == 404


async def test_post_assigns_a_server_id_and_answers_201_with_a_versioned_location(
    fhir: httpx.AsyncClient,
) -> None:
    response = await fhir.post("/Patient", json=patient("client-chosen"))
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"
    version = body["meta"]["versionId"]
    location = response.headers["location"]
    assert location == f"http://testserver/fhir/Patient/{body['id']}/_history/{version}"
    again = await fhir.get(location)
    assert again.status_code == 200 and again.json() == body
    assert (await fhir.get("/Patient/client-chosen")).status_code == 404


async def test_read_carries_weak_etag_and_last_modified_matching_meta(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    response = await fhir.get("/Patient/p1")
    assert response.status_code == 200
    meta = response.json()["meta"]
    assert response.headers["etag"] == f'W/"{meta["versionId"]}"'
    last_updated = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
    assert response.headers["last-modified"] == _http_date(last_updated.replace(microsecond=0))
    assert isinstance(meta["versionId"], str)


async def test_if_none_match_with_the_current_etag_answers_304(fhir: httpx.AsyncClient) -> None:
    etag = (await fhir.put("/Patient/p1", json=patient("p1"))).headers["etag"]
    response = await fhir.get("/Patient/p1", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    stale = await fhir.get("/Patient/p1", headers={"If-None-Match": 'W/"999999"'})
    assert stale.status_code == 200


async def test_if_modified_since_not_older_than_last_updated_answers_304(
    fhir: httpx.AsyncClient,
) -> None:
    body = (await fhir.put("/Patient/p1", json=patient("p1"))).json()
    last_updated = datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00"))
    # HTTP dates have one-second precision: the second of lastUpdated itself is "not older".
    same_second = _http_date(last_updated.replace(microsecond=0))
    assert (
        await fhir.get("/Patient/p1", headers={"If-Modified-Since": same_second})
    ).status_code == 304
    later = _http_date(last_updated + timedelta(hours=1))
    assert (await fhir.get("/Patient/p1", headers={"If-Modified-Since": later})).status_code == 304
    earlier = _http_date(last_updated - timedelta(seconds=1))
    assert (
        await fhir.get("/Patient/p1", headers={"If-Modified-Since": earlier})
    ).status_code == 200


async def test_if_none_match_decides_alone_when_both_validators_are_sent(
    fhir: httpx.AsyncClient,
) -> None:
    body = (await fhir.put("/Patient/p1", json=patient("p1"))).json()
    later = _http_date(datetime.now(UTC) + timedelta(days=1))
    response = await fhir.get(
        "/Patient/p1", headers={"If-None-Match": 'W/"0"', "If-Modified-Since": later}
    )
    assert response.status_code == 200
    assert response.json()["id"] == body["id"]


async def test_if_match_mismatch_on_put_and_delete_answers_412(fhir: httpx.AsyncClient) -> None:
    etag = (await fhir.put("/Patient/p1", json=patient("p1"))).headers["etag"]
    stale = await fhir.put(
        "/Patient/p1", json=patient("p1", gender="other"), headers={"If-Match": 'W/"1234567"'}
    )
    assert_outcome(stale, 412, "conflict")
    assert "gender" not in (await fhir.get("/Patient/p1")).json()
    assert_outcome(await fhir.delete("/Patient/p1", headers={"If-Match": 'W/"1234567"'}), 412)
    assert (await fhir.get("/Patient/p1")).status_code == 200

    fresh = await fhir.put(
        "/Patient/p1", json=patient("p1", gender="other"), headers={"If-Match": etag}
    )
    assert fresh.status_code == 200
    deleted = await fhir.delete("/Patient/p1", headers={"If-Match": fresh.headers["etag"]})
    assert deleted.status_code == 204


async def test_read_of_a_deleted_resource_is_410_and_of_an_unknown_one_404(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    assert (await fhir.delete("/Patient/p1")).status_code == 204
    assert_outcome(await fhir.get("/Patient/p1"), 410, "deleted")
    assert_outcome(await fhir.get("/Patient/never"), 404, "not-found")


async def test_delete_is_idempotent_but_deleting_what_never_existed_is_404(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    first = await fhir.delete("/Patient/p1")
    second = await fhir.delete("/Patient/p1")
    assert first.status_code == second.status_code == 204
    assert first.headers["etag"] == second.headers["etag"]
    assert_outcome(await fhir.delete("/Patient/p1", headers={"If-Match": 'W/"1"'}), 412)
    assert_outcome(await fhir.delete("/Patient/never"), 404)


async def test_noop_put_keeps_version_id_and_last_updated(fhir: httpx.AsyncClient) -> None:
    first = (await fhir.put("/Patient/p1", json=patient("p1", gender="male"))).json()
    # Same content, keys in another order, stale server meta echoed back: not a change.
    echoed = {
        "gender": "male",
        "meta": first["meta"],
        "active": True,
        "id": "p1",
        "resourceType": "Patient",
    }
    second = await fhir.put("/Patient/p1", json=echoed)
    assert second.status_code == 200
    assert second.json()["meta"] == first["meta"]
    history = (await fhir.get("/Patient/p1/_history")).json()
    assert history["total"] == 1


async def test_client_meta_stamps_are_ignored_but_other_meta_members_are_kept(
    fhir: httpx.AsyncClient,
) -> None:
    meta = {
        "versionId": "77",
        "lastUpdated": "1999-01-01T00:00:00Z",
        "profile": ["http://example.org/StructureDefinition/p"],
        "tag": [{"system": "http://example.org/tags", "code": "t1"}],
    }
    body = (await fhir.put("/Patient/p1", json=patient("p1", meta=meta))).json()
    assert body["meta"]["versionId"] != "77"
    assert not body["meta"]["lastUpdated"].startswith("1999")
    assert body["meta"]["profile"] == meta["profile"]
    assert body["meta"]["tag"] == meta["tag"]
    read = (await fhir.get("/Patient/p1")).json()
    assert read["meta"] == body["meta"]


async def test_vread_serves_current_and_previous_versions_and_410_for_a_deletion(
    fhir: httpx.AsyncClient,
) -> None:
    v1 = (await fhir.put("/Patient/p1", json=patient("p1", gender="male"))).json()
    v2 = (await fhir.put("/Patient/p1", json=patient("p1", gender="female"))).json()
    old = await fhir.get(f"/Patient/p1/_history/{v1['meta']['versionId']}")
    assert old.status_code == 200
    assert old.json()["gender"] == "male"
    assert old.json()["meta"] == v1["meta"]
    assert old.headers["etag"] == f'W/"{v1["meta"]["versionId"]}"'
    current = await fhir.get(f"/Patient/p1/_history/{v2['meta']['versionId']}")
    assert current.json() == v2
    deletion_version = (await fhir.delete("/Patient/p1")).headers["etag"][3:-1]
    assert_outcome(await fhir.get(f"/Patient/p1/_history/{deletion_version}"), 410, "deleted")
    assert (await fhir.get(f"/Patient/p1/_history/{v2['meta']['versionId']}")).status_code == 200
    assert_outcome(await fhir.get("/Patient/p1/_history/999999"), 404)
    assert_outcome(await fhir.get("/Patient/nope/_history/1"), 404)


async def test_history_is_a_bundle_of_every_version_newest_first(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p1", json=patient("p1", gender="male"))
    await fhir.put("/Patient/p1", json=patient("p1", gender="female"))
    await fhir.delete("/Patient/p1")
    await fhir.put("/Patient/p1", json=patient("p1", gender="unknown"))
    bundle = (await fhir.get("/Patient/p1/_history")).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert bundle["total"] == 4
    requests = [(e["request"]["method"], e["response"]["status"]) for e in bundle["entry"]]
    assert requests == [
        ("PUT", "201 Created"),
        ("DELETE", "204 No Content"),
        ("PUT", "200 OK"),
        ("PUT", "201 Created"),
    ]
    assert {e["request"]["url"] for e in bundle["entry"]} == {"Patient/p1"}
    genders = [entry.get("resource", {}).get("gender") for entry in bundle["entry"]]
    assert genders == ["unknown", None, "female", "male"]
    versions = [int(entry["response"]["etag"][3:-1]) for entry in bundle["entry"]]
    assert versions == sorted(versions, reverse=True)
    assert "resource" not in bundle["entry"][1]
    assert_outcome(await fhir.get("/Patient/never/_history"), 404)


async def test_history_pages_with_count_and_next_link(fhir: httpx.AsyncClient) -> None:
    for gender in ("male", "female", "other", "unknown"):
        await fhir.put("/Patient/p1", json=patient("p1", gender=gender))
    first = (await fhir.get("/Patient/p1/_history", params={"_count": "3"})).json()
    assert len(first["entry"]) == 3 and first["total"] == 4
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = (await fhir.get(next_url)).json()
    assert [e["resource"]["gender"] for e in second["entry"]] == ["male"]


async def test_metadata_is_a_capability_statement_with_interactions_and_search_params(
    fhir: httpx.AsyncClient,
) -> None:
    response = await fhir.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert len(resources) == 146
    structure_map = resources["StructureMap"]
    interactions = {i["code"] for i in structure_map["interaction"]}
    assert interactions == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "create",
        "search-type",
    }
    assert structure_map["operation"][0]["name"] == "validate"
    assert {i["code"] for i in statement["rest"][0]["interaction"]} == {"transaction", "batch"}
    params = {p["name"]: p["type"] for p in structure_map["searchParam"]}
    assert {
        "_id": "token",
        "_lastUpdated": "date",
        "url": "uri",
        "name": "string",
        "version": "token",
        "context-type": "token",
    }.items() <= params.items()
    definitions = {p["name"]: p["definition"] for p in structure_map["searchParam"]}
    assert definitions["url"] == "http://hl7.org/fhir/SearchParameter/conformance-url"
    # Only the parameters a type has: a Patient has no url, name is a HumanName search.
    patient_params = {p["name"]: p["type"] for p in resources["Patient"]["searchParam"]}
    assert "url" not in patient_params and "version" not in patient_params
    assert {"identifier", "birthdate", "gender", "name", "family"} <= set(patient_params)
    assert "Observation:patient" in resources["Observation"]["searchInclude"]
    assert structure_map["conditionalRead"] == "full-support"


def test_the_r4_resource_type_list_matches_the_core_package() -> None:
    import tarfile

    from tidemark.api._fhir_model import R4_RESOURCE_TYPES

    package = require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz")
    concrete = set()
    with tarfile.open(package) as archive:
        for member in archive.getmembers():
            if not member.name.startswith("package/StructureDefinition-"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            definition = orjson.loads(handle.read())
            if (
                definition.get("kind") == "resource"
                and definition.get("derivation") == "specialization"
                and not definition.get("abstract")
            ):
                concrete.add(definition["type"])
    assert concrete == set(R4_RESOURCE_TYPES)


async def test_unknown_resource_type_is_404(fhir: httpx.AsyncClient) -> None:
    assert_outcome(await fhir.get("/patient/p1"), 404, "not-found")
    assert_outcome(await fhir.put("/Gadget/g1", json={"resourceType": "Gadget"}), 404)


async def test_unsupported_method_is_405_with_allow(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/Patient/p1", json=patient("p1"))
    assert_outcome(response, 405, "not-supported")
    assert "PUT" in response.headers["allow"] and "PATCH" in response.headers["allow"]
    assert_outcome(await fhir.post("/Patient/p1/_history"), 405)


async def test_body_over_the_limit_is_413(fhir: httpx.AsyncClient) -> None:
    big = patient("p1", text={"status": "generated", "div": "x" * (70 * 1024)})
    assert_outcome(await fhir.put("/Patient/p1", json=big), 413, "too-costly")
    assert (await fhir.get("/Patient/p1")).status_code == 404


async def test_xml_body_is_415_and_xml_format_is_406(fhir: httpx.AsyncClient) -> None:
    response = await fhir.put(
        "/Patient/p1",
        content=b"<Patient xmlns='http://hl7.org/fhir'/>",
        headers={"Content-Type": "application/fhir+xml"},
    )
    assert_outcome(response, 415, "not-supported")
    assert_outcome(await fhir.get("/metadata", params={"_format": "xml"}), 406)
    assert_outcome(await fhir.get("/metadata", headers={"Accept": "application/fhir+xml"}), 406)


async def test_plain_json_content_type_and_accept_are_served(fhir: httpx.AsyncClient) -> None:
    response = await fhir.put(
        "/Patient/p1",
        content=orjson.dumps(patient("p1")),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")


async def test_malformed_json_and_non_object_bodies_are_400(fhir: httpx.AsyncClient) -> None:
    headers = {"Content-Type": FHIR_JSON}
    assert_outcome(
        await fhir.put("/Patient/p1", content=b'{"resourceType": "Pat', headers=headers), 400
    )
    assert_outcome(await fhir.put("/Patient/p1", content=b"[1, 2]", headers=headers), 400)
    assert_outcome(await fhir.put("/Patient/p1", content=b"", headers=headers), 400)
    assert_outcome(await fhir.put("/Patient/p1", json=patient("p1", meta="nope")), 400)
    assert_outcome(await fhir.put("/Patient/bad$id", json=patient()), 400)
    assert (await fhir.get("/Patient/p1")).status_code == 404


async def test_prefer_return_minimal_sends_no_body(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    assert (await fhir.get(response.headers["location"])).status_code == 200


async def test_if_none_exist_creates_only_when_nothing_matches(fhir: httpx.AsyncClient) -> None:
    structure_map = {"resourceType": "StructureMap", "url": "http://example.org/sm/a", "name": "A"}
    first = await fhir.post(
        "/StructureMap",
        json=structure_map,
        headers={"If-None-Exist": "url=http://example.org/sm/a"},
    )
    assert first.status_code == 201
    second = await fhir.post(
        "/StructureMap",
        json=structure_map,
        headers={"If-None-Exist": "url=http://example.org/sm/a"},
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    await fhir.post("/StructureMap", json=structure_map)
    third = await fhir.post(
        "/StructureMap",
        json=structure_map,
        headers={"If-None-Exist": "url=http://example.org/sm/a"},
    )
    assert_outcome(third, 412)


async def test_validator_hook_rejects_writes_with_error_issues_as_422(
    fhir: httpx.AsyncClient,
) -> None:
    seen: list[dict[str, Any]] = []

    def validator(resource: dict[str, Any]) -> list[dict[str, Any]]:
        seen.append(resource)
        if resource.get("gender") == "invalid":
            return [
                {
                    "severity": "error",
                    "code": "value",
                    "diagnostics": "bad gender",
                    "expression": ["Patient.gender"],
                },
                {"severity": "warning", "code": "informational", "diagnostics": "just saying"},
            ]
        return [{"severity": "warning", "code": "informational", "diagnostics": "fine"}]

    fhir.app.state.fhir_validator = validator  # type: ignore[attr-defined]
    rejected = await fhir.put("/Patient/p1", json=patient("p1", gender="invalid"))
    assert rejected.status_code == 422
    outcome = rejected.json()
    assert outcome["issue"][0]["diagnostics"] == "bad gender"
    assert outcome["issue"][0]["expression"] == ["Patient.gender"]
    assert (await fhir.get("/Patient/p1")).status_code == 404
    accepted = await fhir.put("/Patient/p1", json=patient("p1", gender="male"))
    assert accepted.status_code == 201
    assert seen[-1]["id"] == "p1" and "versionId" not in seen[-1].get("meta", {})

    async def async_validator(resource: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"severity": "fatal", "code": "structure", "diagnostics": "no"}]

    fhir.app.state.fhir_validator = async_validator  # type: ignore[attr-defined]
    assert (await fhir.post("/Patient", json=patient())).status_code == 422


async def test_unknown_paths_under_fhir_answer_with_an_operation_outcome(
    fhir: httpx.AsyncClient,
) -> None:
    assert_outcome(await fhir.get("/Patient/p1/_history/1/extra"), 404)
    assert_outcome(await fhir.get("/Patient/_history"), 400, "not-supported")


@pytest.mark.parametrize(
    "store_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_facade_over_a_real_uvicorn_server_on_loopback(
    store_kind: str, tmp_path, request: pytest.FixtureRequest
) -> None:
    from tests.fhir.client.live_server import ThreadedServer

    db = str(tmp_path / "live.db") if store_kind == "sqlite" else request.getfixturevalue("pg_dsn")
    with (
        ThreadedServer(db, max_body_bytes=2048) as server,
        httpx.Client(base_url=server.fhir) as http,
    ):
        created = http.put("/Patient/p1", json=patient("p1"))
        assert created.status_code == 201
        etag = created.headers["etag"]
        assert http.get("/Patient/p1", headers={"If-None-Match": etag}).status_code == 304
        head = http.head("/Patient/p1")
        assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag
        # A declared Content-Length over the limit is refused before the body is read.
        too_big = http.put(
            "/Patient/p1", content=b"{" + b" " * 4096 + b"}", headers={"Content-Type": FHIR_JSON}
        )
        assert too_big.status_code == 413
        assert too_big.json()["resourceType"] == "OperationOutcome"
        bundle = http.get("/Patient", params={"_id": "p1"}).json()
        assert bundle["total"] == 1
        assert bundle["entry"][0]["fullUrl"] == f"{server.fhir}/Patient/p1"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequestError("bad"), 400, "invalid"),
        (NotFoundError("missing"), 404, "not-found"),
        (MethodNotAllowedError("no"), 405, "not-supported"),
        (ConflictError("conflict"), 409, "conflict"),
        (GoneError("gone"), 410, "deleted"),
        (PreconditionFailedError("stale"), 412, "conflict"),
        (PayloadTooLargeError("big"), 413, "too-costly"),
        (UnsupportedMediaTypeError("xml"), 415, "not-supported"),
        (UnprocessableError("invalid"), 422, "processing"),
        (TidemarkError("boom"), 500, "exception"),
    ],
)
def test_every_error_becomes_an_operation_outcome_with_its_status(
    error: TidemarkError, status: int, code: str
) -> None:
    from starlette.requests import Request

    from tidemark.api._fhir import outcome_response

    request = Request(
        {"type": "http", "method": "GET", "path": "/fhir/x", "headers": [], "query_string": b""}
    )
    response = outcome_response(request, error)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = orjson.loads(response.body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert outcome["issue"][0]["severity"] == ("fatal" if status >= 500 else "error")
    assert outcome["issue"][0]["diagnostics"] == error.detail
