"""FHIR search by the parameters of R4 core: types, modifiers, prefixes, includes, result shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.fhir_support import (  # noqa: F401
    assert_outcome,
    fhir_fixture,
    fhir_settings_fixture,
    fhir_store_fixture,
)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


async def _put(fhir: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    response = await fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text


async def _search(fhir: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await fhir.get(path, params=params)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


async def _ids_of(fhir: httpx.AsyncClient, path: str, **params: Any) -> list[str]:
    return sorted(_ids(await _search(fhir, path, **params)))


@pytest.fixture
async def clinic(fhir: httpx.AsyncClient) -> httpx.AsyncClient:
    """Two patients, a group, an organization and observations about them."""
    await _put(fhir, {"resourceType": "Organization", "id": "org", "name": "Clinic"})
    await _put(
        fhir,
        {
            "resourceType": "Patient",
            "id": "amy",
            "identifier": [{"system": "urn:mrn", "value": "M-1"}],
            "name": [{"family": "Ñúñez", "given": ["Amy"]}],
            "gender": "female",
            "birthDate": "1949-03-02",
            "managingOrganization": {"reference": "Organization/org"},
        },
    )
    await _put(
        fhir,
        {
            "resourceType": "Patient",
            "id": "bob",
            "identifier": [{"system": "urn:mrn", "value": "M-2"}],
            "name": [{"family": "Aaron", "given": ["Bob"]}],
            "gender": "male",
            "birthDate": "1980",
        },
    )
    await _put(fhir, {"resourceType": "Group", "id": "g", "type": "person", "actual": True})
    observations = [
        ("o1", "Patient/amy", "8867-4", "2020-01-02T10:00:00Z", 72),
        ("o2", "Patient/amy", "8310-5", "2020-02-01", 37.5),
        ("o3", "Patient/bob", "8867-4", "2021-06-01", 88),
        ("o4", "Group/g", "8867-4", "2021-06-02", 60),
    ]
    for id, subject, code, when, value in observations:
        await _put(
            fhir,
            {
                "resourceType": "Observation",
                "id": id,
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}], "text": f"test {code}"},
                "subject": {"reference": subject},
                "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": "u", "system": UCUM, "code": "/min"},
            },
        )
    return fhir


async def test_references_by_type_and_id_by_id_and_by_url(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Observation", subject="Patient/amy") == ["o1", "o2"]
    assert await _ids_of(clinic, "/Observation", subject="amy") == ["o1", "o2"]
    assert await _ids_of(clinic, "/Observation", **{"subject:Patient": "amy"}) == ["o1", "o2"]
    own_url = "http://testserver/fhir/Patient/bob"
    assert await _ids_of(clinic, "/Observation", subject=own_url) == ["o3"]
    assert await _ids_of(clinic, "/Observation", patient="amy") == ["o1", "o2"]
    # patient= is a subject that is a Patient: the group's observation is not among them.
    assert await _ids_of(clinic, "/Observation", patient="Group/g") == []
    assert await _ids_of(clinic, "/Observation", subject="Group/g") == ["o4"]


async def test_tokens_with_and_without_system_text_and_not(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Observation", code="8867-4") == ["o1", "o3", "o4"]
    assert await _ids_of(clinic, "/Observation", code=f"{LOINC}|8310-5") == ["o2"]
    assert await _ids_of(clinic, "/Observation", code=f"{LOINC}|") == ["o1", "o2", "o3", "o4"]
    assert await _ids_of(clinic, "/Observation", code="|8310-5") == []
    assert await _ids_of(clinic, "/Observation", **{"code:text": "TEST 831"}) == ["o2"]
    assert await _ids_of(clinic, "/Observation", **{"code:not": "8867-4"}) == ["o2"]
    assert await _ids_of(clinic, "/Patient", identifier="urn:mrn|M-2") == ["bob"]
    assert await _ids_of(clinic, "/Patient", gender="female") == ["amy"]


async def test_comma_is_or_and_repeating_a_parameter_is_and(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Patient", gender="female,male") == ["amy", "bob"]
    both = await clinic.get(
        "/Observation", params=[("code", "8867-4"), ("subject", "Patient/amy,Patient/bob")]
    )
    assert sorted(_ids(both.json())) == ["o1", "o3"]
    narrowed = await clinic.get("/Observation", params=[("date", "ge2020"), ("date", "lt2021")])
    assert sorted(_ids(narrowed.json())) == ["o1", "o2"]


async def test_dates_compare_as_the_intervals_they_denote(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Patient", birthdate="1949") == ["amy"]
    assert await _ids_of(clinic, "/Patient", birthdate="1949-03") == ["amy"]
    # 1980 is the whole year: it is not within one day of it, nor wholly after 1980-06.
    assert await _ids_of(clinic, "/Patient", birthdate="1980-06-01") == []
    assert await _ids_of(clinic, "/Patient", birthdate="gt1980-06-01") == ["bob"]
    assert await _ids_of(clinic, "/Patient", birthdate="sa1949-03-02") == ["bob"]
    assert await _ids_of(clinic, "/Patient", birthdate="eb1950") == ["amy"]
    assert await _ids_of(clinic, "/Observation", date="2020-01-02") == ["o1"]
    assert await _ids_of(clinic, "/Observation", date="ge2021-06-02") == ["o4"]


async def test_quantities_with_units_and_prefixes(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Observation", **{"value-quantity": "72"}) == ["o1"]
    assert await _ids_of(clinic, "/Observation", **{"value-quantity": f"gt70|{UCUM}|/min"}) == [
        "o1",
        "o3",
    ]
    assert await _ids_of(clinic, "/Observation", **{"value-quantity": "lt40||u"}) == ["o2"]
    assert await _ids_of(clinic, "/Observation", **{"value-quantity": "gt70|urn:x|mg"}) == []
    assert await _ids_of(clinic, "/Observation", **{"value-quantity": "ap60"}) == ["o4"]


async def test_strings_by_prefix_exact_and_contains(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Patient", family="nun") == ["amy"]  # accents folded
    assert await _ids_of(clinic, "/Patient", family="NÚ") == ["amy"]
    assert await _ids_of(clinic, "/Patient", **{"family:exact": "Ñúñez"}) == ["amy"]
    assert await _ids_of(clinic, "/Patient", **{"family:exact": "ñúñez"}) == []
    assert await _ids_of(clinic, "/Patient", **{"name:contains": "N"}) == ["amy", "bob"]
    assert await _ids_of(clinic, "/Patient", **{"name:contains": "UNE"}) == ["amy"]
    assert await _ids_of(clinic, "/Patient", name="bob") == ["bob"]


async def test_missing_on_any_parameter(clinic: httpx.AsyncClient) -> None:
    assert await _ids_of(clinic, "/Patient", **{"organization:missing": "true"}) == ["bob"]
    assert await _ids_of(clinic, "/Patient", **{"organization:missing": "false"}) == ["amy"]


async def test_sort_by_parameters_with_missing_values_last(clinic: httpx.AsyncClient) -> None:
    await _put(clinic, {"resourceType": "Patient", "id": "cyd"})
    ascending = await _search(clinic, "/Patient", _sort="birthdate")
    assert _ids(ascending) == ["amy", "bob", "cyd"]
    descending = await _search(clinic, "/Patient", _sort="-birthdate")
    assert _ids(descending) == ["bob", "amy", "cyd"]
    by_family = await _search(clinic, "/Patient", _sort="-family,birthdate")
    assert _ids(by_family) == ["amy", "bob", "cyd"]
    by_value = await _search(clinic, "/Observation", _sort="-value-quantity", _count="2")
    assert _ids(by_value) == ["o3", "o1"]
    assert "_sort=-value-quantity" in str(_link(by_value, "next"))


async def test_include_and_revinclude_add_the_related_resources(clinic: httpx.AsyncClient) -> None:
    bundle = await _search(clinic, "/Observation", code="8310-5", _include="Observation:patient")
    assert _ids(bundle) == ["o2"] and _ids(bundle, "include") == ["amy"]
    typed = await _search(clinic, "/Observation", _include="Observation:subject:Group")
    assert _ids(typed, "include") == ["g"]
    reverse = await _search(clinic, "/Patient", _id="bob", _revinclude="Observation:subject")
    assert _ids(reverse) == ["bob"] and _ids(reverse, "include") == ["o3"]
    iterated = await clinic.get(
        "/Observation",
        params=[
            ("_id", "o1"),
            ("_include", "Observation:patient"),
            ("_include:iterate", "Patient:organization"),
        ],
    )
    assert sorted(_ids(iterated.json(), "include")) == ["amy", "org"]
    assert_outcome(await clinic.get("/Observation", params={"_include": "Observation:code"}), 400)


async def test_has_selects_the_resources_others_refer_to(clinic: httpx.AsyncClient) -> None:
    measured = await _ids_of(clinic, "/Patient", **{"_has:Observation:patient:code": "8310-5"})
    assert measured == ["amy"]
    both = await _ids_of(clinic, "/Patient", **{"_has:Observation:subject:code": "8867-4"})
    assert both == ["amy", "bob"]
    narrowed = await clinic.get(
        "/Patient",
        params=[("_has:Observation:subject:code", "8867-4"), ("gender", "male")],
    )
    assert _ids(narrowed.json()) == ["bob"]
    assert_outcome(await clinic.get("/Patient", params={"_has:Observation:code:code": "x"}), 400)
    assert_outcome(
        await clinic.get("/Patient", params={"_has:Observation:patient:_has:X:y:z": "x"}), 400
    )


async def test_a_chain_of_one_level_selects_by_the_referred_resources(
    clinic: httpx.AsyncClient,
) -> None:
    assert await _ids_of(clinic, "/Observation", **{"subject:Patient.name": "nunez"}) == [
        "o1",
        "o2",
    ]
    assert await _ids_of(clinic, "/Observation", **{"patient.gender": "male"}) == ["o3"]
    # Without a type every target type that has the parameter is searched.
    assert await _ids_of(clinic, "/Observation", **{"subject.identifier": "urn:mrn|M-2"}) == ["o3"]
    assert await _ids_of(clinic, "/Observation", **{"subject:Group.type": "person"}) == ["o4"]
    combined = await clinic.get(
        "/Observation", params=[("subject:Patient.name", "nunez"), ("code", "8867-4")]
    )
    assert _ids(combined.json()) == ["o1"]
    assert "subject%3APatient.name=nunez" in str(_link(combined.json(), "self")) or (
        "subject:Patient.name=nunez" in str(_link(combined.json(), "self"))
    )
    assert await _ids_of(clinic, "/Observation", **{"subject:Patient.name": "nobody"}) == []
    for bad in ("subject:Patient.organization.name", "subject:Patient.nope", "code.name"):
        assert_outcome(await clinic.get("/Observation", params={bad: "x"}), 400)
    assert_outcome(await clinic.get("/Observation", params={"subject:Organization.name": "x"}), 400)


async def test_summary_count_data_true_and_elements(clinic: httpx.AsyncClient) -> None:
    counted = await _search(clinic, "/Observation", code="8867-4", _summary="count")
    assert counted["total"] == 3 and "entry" not in counted
    summary = await _search(clinic, "/Patient", _id="amy", _summary="true")
    (resource,) = [e["resource"] for e in summary["entry"]]
    assert set(resource) == {
        "resourceType",
        "id",
        "meta",
        "identifier",
        "name",
        "gender",
        "birthDate",
        "managingOrganization",
    }
    assert any(tag["code"] == "SUBSETTED" for tag in resource["meta"]["tag"])
    elements = await _search(clinic, "/Observation", _id="o1", _elements="status,value")
    (resource,) = [e["resource"] for e in elements["entry"]]
    assert set(resource) == {"resourceType", "id", "meta", "status", "valueQuantity"}
    assert "_elements=status%2Cvalue" in str(_link(elements, "self")) or (
        "_elements=status,value" in str(_link(elements, "self"))
    )


async def test_total_none_leaves_the_total_out(clinic: httpx.AsyncClient) -> None:
    bundle = await _search(clinic, "/Observation", _total="none", _count="1")
    assert "total" not in bundle and len(bundle["entry"]) == 1
    assert _link(bundle, "next") is not None
    exact = await _search(clinic, "/Observation", _total="accurate")
    assert exact["total"] == 4


async def test_client_extras_are_ignored_not_rejected(clinic: httpx.AsyncClient) -> None:
    counted = await _search(clinic, "/Patient", _count="0", _totalMethod="count")
    assert counted["total"] == 2 and "entry" not in counted


async def test_a_searchset_without_matches_has_no_entry_and_paging_keeps_every_parameter(
    clinic: httpx.AsyncClient,
) -> None:
    empty = await _search(clinic, "/Observation", code="none")
    assert empty["total"] == 0 and "entry" not in empty
    first = await _search(
        clinic,
        "/Observation",
        code="8867-4",
        _sort="date",
        _count="1",
        _include="Observation:patient",
    )
    next_url = _link(first, "next")
    assert next_url is not None
    for expected in ("code=8867-4", "_sort=date", "_count=1", "_include=Observation:patient"):
        assert expected in next_url
    second = (await clinic.get(next_url)).json()
    assert _ids(second) == ["o3"] and _ids(second, "include") == ["bob"]


@pytest.mark.parametrize(
    "params",
    [
        {"_offset": "99999999999999999999999"},
        {"_lastUpdated": "gt10000-01-01"},
        {"birthdate": "2024-02-30"},
        {"birthdate": "2024-01-01T10:00+15:00"},
        {"value-quantity": "1e999"},
        {"code": "a|b|c"},
        {"_count": "-5"},
        {"gender:missing": "maybe"},
    ],
)
async def test_out_of_range_or_malformed_values_are_400s(
    fhir: httpx.AsyncClient, params: dict[str, str]
) -> None:
    path = "/Observation" if "value-quantity" in params or "code" in params else "/Patient"
    assert_outcome(await fhir.get(path, params=params), 400, "invalid")


async def test_the_largest_last_updated_bound_is_a_valid_search(fhir: httpx.AsyncClient) -> None:
    await _put(fhir, {"resourceType": "Patient", "id": "p"})
    bundle = await _search(fhir, "/Patient", _lastUpdated="gt9999-12-31T23:59:59.999999+14:00")
    assert "entry" not in bundle
    bundle = await _search(fhir, "/Patient", _lastUpdated="lt9999-12-31T23:59:59.999999-14:00")
    assert _ids(bundle) == ["p"]


async def test_the_mapping_providers_alias_search_finds_its_concept_map(
    fhir: httpx.AsyncClient,
) -> None:
    aliases = {
        "resourceType": "ConceptMap",
        "id": "aliases",
        "name": "FumeAliases",
        "status": "active",
        "useContext": [
            {
                "code": {
                    "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                    "code": "workflow",
                },
                "valueCodeableConcept": {
                    "coding": [{"system": "http://codes.fume.health", "code": "fume"}]
                },
            }
        ],
    }
    await _put(fhir, aliases)
    await _put(fhir, {"resourceType": "ConceptMap", "id": "other", "name": "FumeAliases"})
    found = await _ids_of(
        fhir, "/ConceptMap", name="FumeAliases", context="http://codes.fume.health|fume"
    )
    assert found == ["aliases"]
