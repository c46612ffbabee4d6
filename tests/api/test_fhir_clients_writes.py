"""Real FHIR clients write through a live ``tidemark serve``: fhirpy's conditional writes and
``patch()``, fhirclient's CRUD, a Synthea-style transaction and ``$validate`` from both; every
response body parses with fhir.resources' models (R4B, the R4 line those models ship)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from fhir.resources.R4B import get_fhir_model_class
from fhirclient import client as fhirclient_client
from fhirclient.models.bundle import Bundle as ClientBundle
from fhirclient.models.operationoutcome import OperationOutcome as ClientOutcome
from fhirclient.models.patient import Patient as ClientPatient
from fhirpy import SyncFHIRClient

from tests.api.fhir_bundle_support import synthea_like
from tests.support import ServerProcess, require_data


class Bodies:
    """Every JSON body the server answered, parsed with fhir.resources as it arrives."""

    def __init__(self) -> None:
        self.parsed: list[str] = []

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if not response.content:
            return
        body = response.json()
        model = get_fhir_model_class(body["resourceType"])
        model.model_validate(body)  # raises on a body that is not valid FHIR
        self.parsed.append(body["resourceType"])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    db = (
        str(tmp_path / "clients.db")
        if request.param == "sqlite"
        else request.getfixturevalue("pg_dsn")
    )
    core = str(require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz"))
    env = {"TIDEMARK_STORAGE_STRATEGY": "memory"}
    with ServerProcess(
        "--db", db, "--fhir-package", core, "--log-text", cwd=tmp_path, env=env
    ) as live:
        yield live


def test_fhirpy_conditional_writes_patch_transaction_and_validate(server: ServerProcess):
    bodies = Bodies()
    client = SyncFHIRClient(
        server.base_url + "/fhir",
        requests_config={"hooks": {"response": [bodies.hook]}, "timeout": 60},
    )
    patients = client.resources("Patient")
    shaw = client.resource("Patient", name=[{"family": "Shaw"}], gender="male")

    created, was_created = patients.search(name="Shaw").get_or_create(shaw)
    assert was_created and created.id
    again, was_created = patients.search(name="Shaw").get_or_create(shaw)
    assert not was_created and again.id == created.id

    updated, was_created = patients.search(name="Shaw").update(
        client.resource("Patient", name=[{"family": "Shaw"}], gender="female")
    )
    assert not was_created and updated.id == created.id and updated.gender == "female"

    patched = client.patch("Patient", created.id, birthDate="1970-01-02")
    assert patched["birthDate"] == "1970-01-02" and patched["gender"] == "female"
    fetched = patients.search(_id=created.id).get()
    fetched.patch(active=False)
    assert client.get("Patient", created.id)["active"] is False
    conditional = patients.search(name="Shaw").patch(gender="other")
    assert conditional.id == created.id and conditional.gender == "other"
    fetched = patients.search(_id=created.id).get()
    fetched["birthDate"] = "1971-03-04"
    fetched.save(fields=["birthDate"])  # fhirpy sends a PATCH with just these members
    assert client.get("Patient", created.id)["birthDate"] == "1971-03-04"

    answer = client.execute("/", method="post", data=synthea_like(2))
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 8
    observation_id = answer["entry"][3]["response"]["location"].split("/")[1]
    observation = client.get("Observation", observation_id)
    assert observation["subject"]["reference"].startswith("Patient/")

    bad = {"resourceType": "Patient", "gender": "F"}
    outcome = client.execute("Patient/$validate", method="post", data=bad)
    assert any(i["code"] == "code-invalid" for i in outcome["issue"])
    ok = client.execute("Patient/$validate", method="post", data={"resourceType": "Patient"})
    assert all(i["severity"] != "error" for i in ok["issue"])

    patients.search(name="Shaw").delete()
    assert patients.search(name="Shaw").fetch() == []
    assert "Bundle" in bodies.parsed and "OperationOutcome" in bodies.parsed
    assert bodies.parsed.count("Patient") >= 6


def test_fhirclient_crud_transaction_conditional_create_and_validate(server: ServerProcess):
    bodies = Bodies()
    smart = fhirclient_client.FHIRClient(
        settings={"app_id": "tidemark-tests", "api_base": server.base_url + "/fhir/"}
    )
    fhir_server = smart.server
    assert fhir_server is not None
    fhir_server.session.hooks["response"].append(bodies.hook)

    patient = ClientPatient({"name": [{"family": "Ng"}], "gender": "male"})
    created = ClientPatient(patient.create(fhir_server))
    read = ClientPatient.read(created.id, fhir_server)
    assert read.gender == "male" and read.name[0].family == "Ng"
    read.gender = "female"
    updated = ClientPatient(read.update(fhir_server))
    assert updated.gender == "female" and updated.meta.versionId != created.meta.versionId

    headers = {"Content-Type": "application/fhir+json", "If-None-Exist": "name=Ng"}
    url = fhir_server.base_uri + "Patient"
    matched = fhir_server.session.post(url, json={"resourceType": "Patient"}, headers=headers)
    assert matched.status_code == 200 and matched.json()["id"] == created.id
    invalid = fhir_server.session.post(
        url, json={"resourceType": "Patient"}, headers={**headers, "If-None-Exist": "_count=1"}
    )
    assert invalid.status_code == 400

    transaction = ClientBundle(synthea_like(3))
    response = ClientBundle(transaction.create(fhir_server))
    assert response.type == "transaction-response"
    assert all(e.response.status == "201 Created" for e in response.entry)

    outcome = ClientOutcome(
        fhir_server.post_json(
            "Patient/$validate", {"resourceType": "Patient", "gender": "F"}
        ).json()
    )
    assert any(i.code == "code-invalid" for i in outcome.issue)

    read.delete(fhir_server)
    gone = fhir_server.session.get(url + "/" + created.id)
    assert gone.status_code == 410
    assert {"Patient", "Bundle", "OperationOutcome"} <= set(bodies.parsed)


MRN = "urn:oid:2.16.840.1.113883.19.5"


def test_fhirpy_conditional_writes_by_identifier(server: ServerProcess):
    bodies = Bodies()
    client = SyncFHIRClient(
        server.base_url + "/fhir",
        requests_config={"hooks": {"response": [bodies.hook]}, "timeout": 60},
    )
    patients = client.resources("Patient")
    by_mrn = patients.search(identifier=f"{MRN}|m-1")

    def lee(gender: str) -> Any:
        return client.resource(
            "Patient",
            identifier=[{"system": MRN, "value": "m-1"}],
            name=[{"family": "Lee"}],
            gender=gender,
        )

    created, was_created = by_mrn.get_or_create(lee("male"))
    assert was_created and created.id
    again, was_created = by_mrn.get_or_create(lee("male"))
    assert not was_created and again.id == created.id

    updated, was_created = by_mrn.update(lee("female"))
    assert not was_created and updated.id == created.id and updated.gender == "female"
    assert client.get("Patient", created.id)["gender"] == "female"

    # A conditional update that matches nothing creates (and only the system|value pair matches).
    other, was_created = patients.search(identifier=f"{MRN}|m-2").update(
        client.resource("Patient", identifier=[{"system": MRN, "value": "m-2"}])
    )
    assert was_created and other.id != created.id
    assert [p.id for p in patients.search(identifier="urn:other|m-1").fetch()] == []
    assert [p.id for p in patients.search(identifier="m-1").fetch()] == [created.id]

    by_mrn.delete()
    assert by_mrn.fetch() == []
    assert [p.id for p in patients.search(identifier=f"{MRN}|m-2").fetch()] == [other.id]
    assert {"Patient", "Bundle"} <= set(bodies.parsed)


def test_fhirclient_conditional_writes_by_identifier(server: ServerProcess):
    bodies = Bodies()
    smart = fhirclient_client.FHIRClient(
        settings={"app_id": "tidemark-tests", "api_base": server.base_url + "/fhir/"}
    )
    fhir_server = smart.server
    assert fhir_server is not None
    fhir_server.session.hooks["response"].append(bodies.hook)
    criteria = f"identifier={quote(f'{MRN}|c-1')}"
    body = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "c-1"}]}
    headers = {"Content-Type": "application/fhir+json", "If-None-Exist": f"identifier={MRN}|c-1"}
    url = fhir_server.base_uri + "Patient"

    first = fhir_server.session.post(url, json=body, headers=headers)
    assert first.status_code == 201
    created = ClientPatient(first.json())
    second = fhir_server.session.post(url, json=body, headers=headers)
    assert second.status_code == 200 and ClientPatient(second.json()).id == created.id

    updated = fhir_server.put_json(f"Patient?{criteria}", {**body, "gender": "other"})
    assert updated.status_code == 200
    assert ClientPatient(updated.json()).id == created.id
    found = list(
        ClientPatient.where({"identifier": f"{MRN}|c-1"}).perform_resources_iter(fhir_server)
    )
    assert [(p.id, p.gender) for p in found] == [(created.id, "other")]

    made = fhir_server.put_json(
        f"Patient?identifier={quote(f'{MRN}|c-2')}",
        {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "c-2"}]},
    )
    assert made.status_code == 201 and ClientPatient(made.json()).id != created.id

    fhir_server.delete_json(f"Patient?{criteria}")
    gone = ClientPatient.where({"identifier": f"{MRN}|c-1"}).perform_resources_iter(fhir_server)
    assert list(gone) == []
    assert {"Patient", "Bundle"} <= set(bodies.parsed)
