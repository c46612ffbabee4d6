"""The SearchParameters of a server's FHIR packages are searchable and listed in its metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import require_data
from tidemark.api import ServerSettings, create_app
from tidemark.fhir.packages import FhirPackage
from tidemark.schemas import SchemaStore, StorageSettings
from tidemark.store import Store

RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
pytestmark = pytest.mark.data


def _patient(id: str, race_code: str) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": id,
        "gender": "female",
        "extension": [
            {
                "url": RACE,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": "urn:oid:2.16.840.1.113883.6.238",
                            "code": race_code,
                        },
                    },
                    {"url": "text", "valueString": "some text"},
                ],
            }
        ],
    }


@pytest.fixture
async def us_core(api_store: Store) -> AsyncIterator[httpx.AsyncClient]:
    packages = [FhirPackage.load(require_data("fhir/hl7.fhir.us.core-6.1.0.tgz"))]
    async with SchemaStore(StorageSettings(strategy="memory"), packages=packages) as schemas:
        app = create_app(api_store, ServerSettings(), schema_store=schemas)
        app.state.fhir_validator = None  # these patients are not complete US Core patients
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as http:
            yield http


async def test_a_package_parameter_is_searchable_and_in_the_metadata(us_core: httpx.AsyncClient):
    for id, code in (("white", "2106-3"), ("asian", "2028-9")):
        response = await us_core.put(f"/Patient/{id}", json=_patient(id, code))
        assert response.status_code == 201, response.text
    found = (await us_core.get("/Patient", params={"race": "2028-9"})).json()
    matches = [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"]
    assert matches == ["asian"]
    statement = (await us_core.get("/metadata")).json()
    (patient,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    definitions = {p["name"]: p["definition"] for p in patient["searchParam"]}
    assert definitions["race"] == "http://hl7.org/fhir/us/core/SearchParameter/us-core-race"
    # US Core's own gender parameter replaces R4 core's.
    assert definitions["gender"].startswith("http://hl7.org/fhir/us/core/SearchParameter/")
