"""A schema store on the server validates /fhir writes: errors are a 422 OperationOutcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, require_data
from tidemark.api import ServerSettings, create_app
from tidemark.fhir.packages import FhirPackage
from tidemark.schemas import SchemaStore, StorageSettings
from tidemark.store import Store

US_CORE_PATIENT = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"


@pytest.fixture
async def validated(api_store: Store) -> AsyncIterator[httpx.AsyncClient]:
    packages = [
        FhirPackage.load(require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz")),
        FhirPackage.load(require_data("fhir/hl7.fhir.us.core-6.1.0.tgz")),
    ]
    async with SchemaStore(StorageSettings(strategy="memory"), packages=packages) as schemas:
        app = create_app(api_store, ServerSettings(), schema_store=schemas)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            yield http


async def test_invalid_resource_is_rejected_with_422_and_nothing_is_stored(
    validated: httpx.AsyncClient,
):
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "birthDate": "1987-02-30",
        "gender": "unknown-value",
    }
    response = await validated.put("/fhir/Patient/p1", json=patient)
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = [e for issue in outcome["issue"] for e in issue.get("expression", [])]
    assert "Patient.birthDate" in expressions
    assert (await validated.get("/fhir/Patient/p1")).status_code == 404


async def test_profile_in_meta_is_enforced(validated: httpx.AsyncClient):
    bare = {"resourceType": "Patient", "id": "p2", "meta": {"profile": [US_CORE_PATIENT]}}
    rejected = await validated.put("/fhir/Patient/p2", json=bare)
    assert rejected.status_code == 422
    complete = {
        **bare,
        "identifier": [{"system": "http://hospital.example.org", "value": "12345"}],
        "name": [{"family": "Shaw", "given": ["Amy"]}],
        "gender": "female",
    }
    accepted = await validated.put("/fhir/Patient/p2", json=complete)
    assert accepted.status_code == 201, accepted.text


async def test_valid_resource_is_stored(validated: httpx.AsyncClient):
    response = await validated.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "heart rate"},
            "valueQuantity": {"value": 72, "unit": "/min"},
        },
    )
    assert response.status_code == 201, response.text


def test_serve_with_fhir_packages_validates(tmp_path: Path):
    core = str(require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz"))
    env = {"TIDEMARK_STORAGE_STRATEGY": "memory"}
    with ServerProcess(
        "--db", str(tmp_path / "v.db"), "--fhir-package", core, "--log-text", cwd=tmp_path, env=env
    ) as server:
        bad = httpx.put(
            f"{server.base_url}/fhir/Patient/x",
            json={"resourceType": "Patient", "id": "x", "active": "yes"},
            timeout=60,
        )
        assert bad.status_code == 422
        good = httpx.put(
            f"{server.base_url}/fhir/Patient/x",
            json={"resourceType": "Patient", "id": "x", "active": True},
            timeout=60,
        )
        assert good.status_code == 201


def _us_core_patient(**members: object) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "meta": {"profile": [US_CORE_PATIENT]},
        "identifier": [{"system": "http://hospital.example.org", "value": "12345"}],
        "name": [{"family": "Shaw", "given": ["Amy"]}],
        "gender": "female",
        **members,
    }


def _errors(outcome: dict) -> list[tuple[str, str]]:
    return [
        (i["code"], e)
        for i in outcome["issue"]
        if i["severity"] in ("error", "fatal")
        for e in i.get("expression", [""])
    ]


async def test_required_bindings_are_enforced_on_writes(validated: httpx.AsyncClient):
    refused = await validated.put(
        "/fhir/Patient/f", json={**_us_core_patient(gender="F"), "id": "f"}
    )
    assert refused.status_code == 422
    assert ("code-invalid", "Patient.gender") in _errors(refused.json())
    assert (await validated.get("/fhir/Patient/f")).status_code == 404


async def test_validate_at_type_level_answers_an_outcome(validated: httpx.AsyncClient):
    bad = await validated.post("/fhir/Patient/$validate", json=_us_core_patient(gender="F"))
    assert bad.status_code == 200
    assert ("code-invalid", "Patient.gender") in _errors(bad.json())
    good = await validated.post("/fhir/Patient/$validate", json=_us_core_patient())
    assert good.status_code == 200 and _errors(good.json()) == []
    assert (await validated.get("/fhir/Patient?_count=0")).json()["total"] == 0  # nothing stored
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "gender": "female"}},
            {"name": "profile", "valueUri": US_CORE_PATIENT},
        ],
    }
    profiled = await validated.post("/fhir/Patient/$validate", json=parameters)
    assert ("required", "Patient.identifier") in _errors(profiled.json())
    wrong_type = await validated.post("/fhir/Observation/$validate", json=_us_core_patient())
    assert wrong_type.status_code == 200 and _errors(wrong_type.json())


async def test_validate_at_instance_level_and_unknown_profiles(validated: httpx.AsyncClient):
    unknown = {
        "resourceType": "Patient",
        "id": "u",
        "meta": {"profile": ["http://example.org/nope"]},
    }
    stored = await validated.put("/fhir/Patient/u", json=unknown)
    assert stored.status_code == 201, stored.text  # an unknown profile warns, never rejects
    outcome = (await validated.get("/fhir/Patient/u/$validate")).json()
    warnings = [
        i for i in outcome["issue"] if i["severity"] == "warning" and i["code"] == "not-found"
    ]
    assert warnings and "http://example.org/nope" in warnings[0]["diagnostics"]
    mismatch = await validated.post("/fhir/Patient/u/$validate", json={**unknown, "id": "v"})
    assert _errors(mismatch.json())
    delete_mode = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "delete"}],
    }
    assert (await validated.post("/fhir/Patient/u/$validate", json=delete_mode)).status_code == 200
    assert (
        await validated.post("/fhir/Patient/none/$validate", json=delete_mode)
    ).status_code == 404
    assert (await validated.get("/fhir/Patient/none/$validate")).status_code == 404


async def test_validate_without_packages_checks_the_shape_and_says_so(client: httpx.AsyncClient):
    outcome = (
        await client.post("/fhir/Patient/$validate", json={"resourceType": "Patient"})
    ).json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert (
        outcome["issue"][0]["severity"] == "warning"
        and "--fhir-package" in outcome["issue"][0]["diagnostics"]
    )
    empty = (
        await client.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "name": []})
    ).json()
    assert empty["issue"][0]["severity"] == "error"


async def test_fhirpath_patch_adds_by_the_packages_definitions(validated: httpx.AsyncClient):
    await validated.put(
        "/fhir/Patient/fp", json={"resourceType": "Patient", "id": "fp", "active": True}
    )

    def add(path: str, name: str, value: dict[str, object]) -> dict[str, object]:
        parts = [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": path},
            {"name": "name", "valueString": name},
            {"name": "value", **value},
        ]
        return {"name": "operation", "part": parts}

    body = {
        "resourceType": "Parameters",
        "parameter": [
            add("Patient", "name", {"valueHumanName": {"family": "Ng"}}),
            add("Patient.name[0]", "given", {"valueString": "Lin"}),
            add("Patient", "birthDate", {"valueDate": "1980-02-03"}),
        ],
    }
    patched = await validated.patch("/fhir/Patient/fp", json=body)
    assert patched.status_code == 200, patched.text
    resource = patched.json()
    assert resource["name"] == [{"family": "Ng", "given": ["Lin"]}]
    assert resource["birthDate"] == "1980-02-03"
    bad = {
        "resourceType": "Parameters",
        "parameter": [add("Patient", "gender", {"valueCode": "F"})],
    }
    assert (await validated.patch("/fhir/Patient/fp", json=bad)).status_code == 422
