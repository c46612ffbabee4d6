"""Discovery and metadata as ODS/API 7.x serves them: version document, /metadata/ list, Ed-Fi
OpenAPI sections, dependency order (JSON and GraphML), token_info; retention pass interval."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import require_data
from tidemark import __version__
from tidemark.api import ServerSettings, create_app, edfi_openapi_document
from tidemark.core import ManualClock
from tidemark.store import ResourceModel, Store, load_model, open_store


@pytest.fixture(scope="module")
def ds51() -> ResourceModel:
    return load_model(require_data("edfi/ds-5.1-api-schema.json"))


@pytest.fixture
async def secured(api_store: Store, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_store, ServerSettings(clients=["app:s3cret"]), clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http


@pytest.fixture
async def ds_client(
    ds51: ResourceModel, tmp_path: Any, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store(tmp_path / "ds.db", model=ds51, clock=clock)
    app = create_app(store, ServerSettings(clients=["app:s3cret"]), clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http
    await store.close()


async def _token(http: httpx.AsyncClient) -> str:
    basic = base64.b64encode(b"app:s3cret").decode()
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    return str(response.json()["access_token"])


async def test_discovery_document_announces_ods_api_73_and_every_url(secured: httpx.AsyncClient):
    root = (await secured.get("/")).json()
    assert root["version"] == "7.3"
    assert tuple(int(p) for p in root["version"].split(".")) >= (7, 3)
    assert root["applicationVersion"] == __version__
    assert root["apiMode"] == "Shared Instance"
    assert root["dataModels"][0]["name"] == "Ed-Fi"
    assert root["urls"] == {
        "dependencies": "http://t/metadata/data/v3/dependencies",
        "openApiMetadata": "http://t/metadata/",
        "oauth": "http://t/oauth/token",
        "oauthTokenIntrospection": "http://t/oauth/token_info",
        "dataManagementApi": "http://t/data/v3/",
        "changeQueries": "http://t/changeQueries/v1/",
    }


async def test_metadata_needs_no_token_and_lists_the_sections(secured: httpx.AsyncClient):
    listing = await secured.get("/metadata/")
    assert listing.status_code == 200
    by_name = {entry["name"]: entry for entry in listing.json()}
    assert set(by_name) == {"Resources", "Descriptors", "Server"}
    for entry in listing.json():
        assert entry["prefix"] == ""
        assert (await secured.get(entry["endpointUri"])).status_code == 200, entry
    assert (await secured.get("/metadata/data/v3/dependencies")).status_code == 200
    assert (await secured.get("/metadata/data/v3/widgets/swagger.json")).status_code == 404
    # data routes keep needing a token
    assert (await secured.get("/data/v3/ed-fi/schools")).status_code == 401
    assert (await secured.get("/data/v3/ed-fi/schools/partitions")).status_code == 401


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    prefix, _, name = ref.rpartition("/")
    assert prefix in ("#/components/schemas", "#/components/parameters", "#/components/responses")
    found: dict[str, Any] = document["components"][prefix.rsplit("/", 1)[1]][name]
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_resources_section_is_shaped_as_ods_api_names_it(ds51: ResourceModel):
    document = edfi_openapi_document(ds51, "resources")
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        _resolve(document, ref)  # every $ref resolves
    assert all(path.count("/") >= 2 and path.startswith("/ed-fi/") for path in document["paths"])
    assert {"/ed-fi/students", "/ed-fi/students/{id}", "/ed-fi/students/deletes"} <= set(
        document["paths"]
    )
    assert {"/ed-fi/students/keyChanges", "/ed-fi/students/partitions"} <= set(document["paths"])
    assert {tag["name"] for tag in document["tags"]} >= {"students", "studentSchoolAssociations"}
    assert all(tag["description"] for tag in document["tags"])
    ssa = schemas["edFi_studentSchoolAssociation"]
    assert {"entryDate", "entryGradeLevelDescriptor", "schoolReference", "studentReference"} <= set(
        ssa["required"]
    )
    assert ssa["properties"]["entryDate"]["x-Ed-Fi-isIdentity"] is True
    assert "x-Ed-Fi-isIdentity" not in ssa["properties"]["entryGradeLevelDescriptor"]
    assert ssa["properties"]["schoolReference"] == {
        "$ref": "#/components/schemas/edFi_schoolReference"
    }
    plans = ssa["properties"]["alternativeGraduationPlans"]
    assert plans["type"] == "array"
    item = _resolve(document, plans["items"]["$ref"])
    assert plans["items"]["$ref"].endswith("edFi_studentSchoolAssociationAlternativeGraduationPlan")
    # identity members inside a collection item's reference are marked too
    inner = _resolve(document, item["properties"]["alternativeGraduationPlanReference"]["$ref"])
    assert all(inner["properties"][name].get("x-Ed-Fi-isIdentity") for name in inner["required"])
    session_ref = schemas["edFi_sessionReference"]
    assert set(session_ref["required"]) == {"schoolId", "schoolYear", "sessionName"}
    assert session_ref["properties"]["schoolYear"]["type"] == "integer"
    student = schemas["edFi_student"]
    assert student["properties"]["studentUniqueId"]["x-Ed-Fi-isIdentity"] is True
    assert {"id", "_etag", "_lastModifiedDate"} <= set(student["properties"])
    listing = document["paths"]["/ed-fi/sessions"]["get"]
    names = {
        _resolve(document, p["$ref"])["name"] if "$ref" in p else p["name"]
        for p in listing["parameters"]
    }
    assert {"offset", "limit", "pageToken", "pageSize", "totalCount", "schoolYear"} <= names
    assert set(listing["responses"]["200"]["headers"]) == {"Total-Count", "Next-Page-Token"}
    assert not any(spec.endswith("Descriptors") for spec in document["paths"])


def test_descriptors_section_holds_only_descriptors(ds51: ResourceModel):
    document = edfi_openapi_document(ds51, "descriptors")
    assert document["paths"] and all("Descriptors" in path for path in document["paths"])
    grade = document["components"]["schemas"]["edFi_gradeLevelDescriptor"]
    assert set(grade["required"]) >= {"codeValue", "namespace", "shortDescription"}
    assert grade["properties"]["codeValue"]["x-Ed-Fi-isIdentity"] is True
    with pytest.raises(ValueError, match="unknown section"):
        edfi_openapi_document(ds51, "composites")


async def test_sections_are_served_from_cache(ds_client: httpx.AsyncClient):
    first = await ds_client.get("/metadata/data/v3/resources/swagger.json")
    second = await ds_client.get("/metadata/data/v3/Resources/swagger.json")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.json()["servers"] == [{"url": "/data/v3"}]


async def test_dependency_order_never_loads_a_reference_before_its_target(
    ds_client: httpx.AsyncClient, ds51: ResourceModel
):
    rows = (await ds_client.get("/metadata/data/v3/dependencies")).json()
    order = {row["resource"]: row["order"] for row in rows}
    assert len(order) == len(ds51) == len(rows)
    assert all(row["operations"] == ["Create", "Update"] for row in rows)
    assert [row["order"] for row in rows] == sorted(row["order"] for row in rows)
    for spec in ds51:
        me = order[f"/{spec.project_endpoint}/{spec.endpoint}"]
        for ref in spec.references:
            target = ds51.by_name(ref.target_project, ref.target)
            targets = (
                [target]
                if target is not None
                else [s for s in ds51 if s.superclass and s.superclass[1] == ref.target]
            )
            assert targets, ref.target
            for t in targets:
                if t is not spec:
                    assert order[f"/{t.project_endpoint}/{t.endpoint}"] < me, (spec.endpoint, t)
    # EducationOrganization is abstract: schools come before what references an EdOrg
    assert order["/ed-fi/schools"] < order["/ed-fi/courses"] < order["/ed-fi/courseOfferings"]
    assert order["/ed-fi/gradeLevelDescriptors"] == 1


async def test_dependencies_as_graphml(ds_client: httpx.AsyncClient):
    for media_type in ("application/graphml", "text/graphml"):
        response = await ds_client.get(
            "/metadata/data/v3/dependencies", headers={"Accept": media_type}
        )
        assert response.headers["content-type"].startswith(media_type)
        root = ET.fromstring(response.content)
        ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
        nodes = {n.attrib["id"] for n in root.iterfind(".//g:node", ns)}
        edges = {(e.attrib["source"], e.attrib["target"]) for e in root.iterfind(".//g:edge", ns)}
        assert "/ed-fi/schools" in nodes
        assert ("/ed-fi/schools", "/ed-fi/studentSchoolAssociations") in edges
        assert ("/ed-fi/students", "/ed-fi/studentSchoolAssociations") in edges
        assert all(a in nodes and b in nodes for a, b in edges)


async def test_token_info_describes_the_callers_own_token(secured: httpx.AsyncClient):
    token = await _token(secured)
    auth = {"Authorization": f"Bearer {token}"}
    info = await secured.post("/oauth/token_info", data={"token": token}, headers=auth)
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["active"] is True and body["client_id"] == "app"
    assert {"resource": "/ed-fi/schools", "operations": ["Create", "Read", "Update", "Delete"]} in (
        body["resources"]
    )
    as_json = await secured.post("/oauth/token_info", json={"token": token}, headers=auth)
    assert as_json.json()["client_id"] == "app"
    other = await secured.post("/oauth/token_info", data={"token": "x.y"}, headers=auth)
    assert other.status_code == 400
    assert (await secured.post("/oauth/token_info", data={}, headers=auth)).status_code == 400
    assert (await secured.post("/oauth/token_info", data={"token": token})).status_code == 401


async def test_token_info_on_an_open_server_reports_inactive(client: httpx.AsyncClient):
    response = await client.post("/oauth/token_info", data={"token": "anything"})
    assert response.json() == {"active": False}


@pytest.mark.parametrize(
    ("retain", "explicit", "expected"),
    [
        (1.0, None, 1.0),
        (0.2, None, 1.0),
        (30.0, None, 30.0),
        (86400.0, None, 60.0),
        (5, 0.02, 0.02),
    ],
)
def test_retention_pass_follows_the_retention_period(
    retain: float, explicit: float | None, expected: float
):
    settings = ServerSettings(retain_changes=retain, retention_interval=explicit)
    assert settings.retention_pass_interval == expected
