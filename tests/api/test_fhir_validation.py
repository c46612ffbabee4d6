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
