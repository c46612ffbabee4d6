"""The FHIR indexer on the store: entries per written resource, and a reindex when the search
parameters change (a new package)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_fhir_package_parameters import _patient
from tests.support import require_data
from tidemark.api import ServerSettings, create_app
from tidemark.api._fhir_index import FhirIndexer
from tidemark.fhir.packages import FhirPackage
from tidemark.fhir.search import SearchParameterSet
from tidemark.schemas import SchemaStore, StorageSettings
from tidemark.store import KeyEntry, RangeEntry, Store


def test_the_indexer_reads_the_type_from_the_collection():
    indexer = FhirIndexer(SearchParameterSet.r4_core())
    body = {"gender": "female", "birthDate": "1949", "name": [{"family": "Shaw"}]}
    entries = set(indexer.entries("fhir:Patient", body))
    assert KeyEntry("gender", "female") in entries
    assert KeyEntry("family", "shaw") in entries
    assert any(isinstance(e, RangeEntry) and e.name == "birthdate" for e in entries)
    assert indexer.fingerprint.endswith(SearchParameterSet.r4_core().fingerprint)


async def _put_patients(http: httpx.AsyncClient) -> None:
    for id, code in (("white", "2106-3"), ("asian", "2028-9")):
        response = await http.put(f"/Patient/{id}", json=_patient(id, code))
        assert response.status_code in (200, 201), response.text


@pytest.mark.data
async def test_a_new_package_reindexes_the_stored_resources_in_the_background(api_store: Store):
    core_app = create_app(api_store, ServerSettings())
    transport = httpx.ASGITransport(app=core_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as http:
        await _put_patients(http)
        unknown = await http.get("/Patient", params={"race": "2028-9"})
        assert unknown.status_code == 400  # R4 core has no race parameter
    packages = [FhirPackage.load(require_data("fhir/hl7.fhir.us.core-6.1.0.tgz"))]
    async with SchemaStore(StorageSettings(strategy="memory"), packages=packages) as schemas:
        app = create_app(api_store, ServerSettings(), schema_store=schemas)
        app.state.fhir_validator = None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as http:
            assert (await http.get("/metadata")).status_code == 200  # registers the indexer
            status = app.state.fhir_index
            await status.wait()
            assert status.ready and status.done == status.total == 2
            assert api_store.counters["documents_reindexed"] >= 2
            found = (await http.get("/Patient", params={"race": "2028-9"})).json()
            assert [e["resource"]["id"] for e in found["entry"]] == ["asian"]
