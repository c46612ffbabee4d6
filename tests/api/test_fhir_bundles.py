"""POST /fhir with transaction and batch Bundles."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from tests.api.fhir_bundle_support import bundle, entry, synthea_like, urn
from tests.api.fhir_support import (  # noqa: F401
    assert_outcome,
    fhir_fixture,
    fhir_store_fixture,
    patient,
)
from tidemark.api import ServerSettings


@pytest.fixture(name="fhir_settings")
def big_body_settings() -> ServerSettings:
    """Room for a 1,000-resource transaction."""
    return ServerSettings(max_body_bytes=4 * 1024 * 1024, default_page_size=10, max_page_size=50)


async def _total(fhir: httpx.AsyncClient, resource_type: str) -> int:
    return int((await fhir.get(f"/{resource_type}", params={"_count": "0"})).json()["total"])


async def test_a_synthea_style_transaction_creates_everything_with_references_rewritten(
    fhir: httpx.AsyncClient,
) -> None:
    sent = synthea_like(2)
    response = await fhir.post("", json=sent)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == 8
    locations = [e["response"]["location"] for e in answer["entry"]]
    assert all(e["response"]["status"] == "201 Created" for e in answer["entry"])
    assert "resource" not in answer["entry"][0]  # only the response unless Prefer asks
    stamps = {e["response"]["lastModified"] for e in answer["entry"]}
    assert len(stamps) == 1  # one transaction, one time
    patient_ref = "/".join(locations[0].split("/")[:2])
    encounter_ref = "/".join(locations[1].split("/")[:2])
    observation = (await fhir.get("/" + "/".join(locations[3].split("/")[:2]))).json()
    assert observation["subject"] == {"reference": patient_ref}
    assert observation["encounter"] == {"reference": encounter_ref}
    for resource_type in ("Patient", "Encounter", "Condition", "Observation"):
        assert await _total(fhir, resource_type) == 2


async def test_a_failing_entry_rolls_back_the_whole_transaction_and_is_named(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/kept", json=patient("kept", gender="male"))
    sent = synthea_like(3)
    sent["entry"].append(
        entry("PUT", "Patient/kept", patient("kept", gender="female"), ifMatch='W/"999"')
    )
    sent["entry"].append(entry("DELETE", "Patient/kept"))
    response = await fhir.post("", json={**sent, "entry": sent["entry"][:-1]})
    body = assert_outcome(response, 412)
    assert "Bundle.entry[12]" in body["issue"][0]["diagnostics"]
    for resource_type in ("Encounter", "Condition", "Observation"):
        assert await _total(fhir, resource_type) == 0
    assert await _total(fhir, "Patient") == 1
    assert (await fhir.get("/Patient/kept")).json()["gender"] == "male"
    # a resource the facade refuses (empty array) fails the transaction too
    bad = synthea_like(1)
    bad["entry"][2]["resource"]["category"] = []
    refused = await fhir.post("", json=bad)
    assert "Bundle.entry[2]" in assert_outcome(refused, 400)["issue"][0]["diagnostics"]
    assert await _total(fhir, "Encounter") == 0


async def test_transaction_order_conditional_entries_and_identity_overlap(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/old", json=patient("old", name=[{"family": "Old"}]))
    await fhir.put("/Patient/shaw", json=patient("shaw", name=[{"family": "Shaw"}]))
    p = urn()
    sent = bundle(
        "transaction",
        entry("GET", "Patient/old"),
        entry(
            "POST",
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": p},
            },
            urn(),
        ),
        entry("POST", "Patient", patient(name=[{"family": "Shaw"}]), p, ifNoneExist="name=Shaw"),
        entry("PUT", "Patient?name=Kim", patient(name=[{"family": "Kim"}])),
        entry("DELETE", "Patient/old"),
        entry(
            "POST",
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "y"},
                "subject": {"reference": "Patient?name=Shaw"},
            },
        ),
    )
    response = await fhir.post("", json=sent)
    assert response.status_code == 200, response.text
    results = response.json()["entry"]
    # GET entries run after the writes: the patient deleted in the same transaction is gone
    assert results[0]["response"]["status"] == "410 Gone"
    assert results[2]["response"]["status"] == "200 OK"  # conditional create matched shaw
    assert results[2]["response"]["location"].startswith("Patient/shaw/")
    assert results[3]["response"]["status"] == "201 Created"
    assert results[4]["response"]["status"] == "204 No Content"
    first = (
        await fhir.get("/" + "/".join(results[1]["response"]["location"].split("/")[:2]))
    ).json()
    last = (
        await fhir.get("/" + "/".join(results[5]["response"]["location"].split("/")[:2]))
    ).json()
    assert first["subject"] == last["subject"] == {"reference": "Patient/shaw"}
    overlap = bundle(
        "transaction", entry("PUT", "Patient/a", patient("a")), entry("DELETE", "Patient/a")
    )
    assert_outcome(await fhir.post("", json=overlap), 400)
    dangling = bundle(
        "transaction",
        entry(
            "POST",
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": urn()},
            },
        ),
    )
    assert_outcome(await fhir.post("", json=dangling), 400)
    no_match = bundle(
        "transaction",
        entry(
            "POST",
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient?name=Nobody"},
            },
        ),
    )
    assert_outcome(await fhir.post("", json=no_match), 412)
    invalid = bundle("transaction", entry("POST", "Patient", patient(), ifNoneExist="_count=1"))
    assert_outcome(await fhir.post("", json=invalid), 400)
    assert await _total(fhir, "Observation") == 2


async def test_transaction_patch_entries_and_preferred_representation(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p", json=patient("p", gender="male"))
    json_patch = [{"op": "replace", "path": "/gender", "value": "female"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(json_patch)).decode(),
    }
    fhirpath = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.active"},
                    {"name": "value", "valueBoolean": False},
                ],
            }
        ],
    }
    await fhir.put("/Patient/q", json=patient("q"))
    sent = bundle(
        "transaction",
        entry("PATCH", "Patient/p", binary),
        entry("POST", "Patient", patient(gender="other")),
        entry("PATCH", "Patient/q", fhirpath),
    )
    response = await fhir.post("", json=sent, headers={"Prefer": "return=representation"})
    assert response.status_code == 200, response.text
    results = response.json()["entry"]
    assert results[0]["response"]["status"] == "200 OK"
    assert results[0]["resource"]["gender"] == "female"
    assert results[1]["resource"]["gender"] == "other"
    assert (await fhir.get("/Patient/p")).json()["gender"] == "female"
    assert results[2]["resource"]["active"] is False


async def test_a_batch_answers_every_entry_on_its_own(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p", json=patient("p"))
    sent = bundle(
        "batch",
        entry("POST", "Patient", patient(gender="male")),
        entry("PUT", "Patient/q", patient("wrong")),
        entry("GET", "Patient/p"),
        entry("GET", "Patient?_id=p"),
        entry("DELETE", "Patient/p"),
        {"request": {"method": "FROB", "url": "Patient"}},
        entry("PUT", "Patient/r", patient("r"), ifMatch='W/"5"'),
    )
    response = await fhir.post("", json=sent)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == [
        "201 Created",
        "400 Bad Request",
        "200 OK",
        "200 OK",
        "204 No Content",
        "400 Bad Request",
        "412 Precondition Failed",
    ]
    assert answer["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert answer["entry"][2]["resource"]["id"] == "p"
    assert answer["entry"][3]["resource"]["type"] == "searchset"
    assert answer["entry"][0]["response"]["location"].startswith("Patient/")
    assert await _total(fhir, "Patient") == 1  # the POSTed one; p was deleted


async def test_bundle_errors(fhir: httpx.AsyncClient) -> None:
    assert_outcome(await fhir.post("", json=patient()), 400)
    assert_outcome(await fhir.post("", json={"resourceType": "Bundle", "type": "collection"}), 400)
    empty = await fhir.post("", json={"resourceType": "Bundle", "type": "transaction"})
    assert empty.status_code == 200 and "entry" not in empty.json()
    assert_outcome(await fhir.get(""), 404)


async def test_a_1000_resource_transaction_is_all_or_nothing(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/anchor", json=patient("anchor"))
    sent = synthea_like(250)
    # after all 1,000 creates, an update whose If-Match fails: the store rolls everything back
    sent["entry"].append(entry("PUT", "Patient/anchor", patient("anchor"), ifMatch='W/"999999"'))
    body = assert_outcome(await fhir.post("", json=sent), 412)
    assert "Bundle.entry[1000]" in body["issue"][0]["diagnostics"]
    for resource_type in ("Patient", "Encounter", "Condition", "Observation"):
        assert await _total(fhir, resource_type) == (1 if resource_type == "Patient" else 0)
    accepted = await fhir.post("", json=synthea_like(250))
    assert accepted.status_code == 200
    assert len(accepted.json()["entry"]) == 1000
    assert await _total(fhir, "Observation") == 250
