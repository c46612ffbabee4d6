"""Required bindings: ValueSets expanded from the loaded packages, codes checked against them."""

from __future__ import annotations

from typing import Any

import pytest

from tidemark.fhir.packages import PackageSet
from tidemark.fhir.schema import PackageSchemaResolver, Terminology, Validator

US_CORE_PATIENT = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"

SYSTEM = "http://example.org/cs"
RESOURCES: dict[str, dict[str, Any]] = {
    SYSTEM: {
        "resourceType": "CodeSystem",
        "url": SYSTEM,
        "content": "complete",
        "concept": [
            {
                "code": "animal",
                "concept": [{"code": "dog"}, {"code": "cat", "concept": [{"code": "lion"}]}],
            },
            {"code": "plant"},
        ],
    },
    "http://example.org/fragment": {
        "resourceType": "CodeSystem",
        "url": "http://example.org/fragment",
        "content": "fragment",
        "concept": [{"code": "a"}],
    },
    "vs/all": {"resourceType": "ValueSet", "compose": {"include": [{"system": SYSTEM}]}},
    "vs/listed": {
        "resourceType": "ValueSet",
        "compose": {"include": [{"system": "http://other", "concept": [{"code": "x"}]}]},
    },
    "vs/cats": {
        "resourceType": "ValueSet",
        "compose": {
            "include": [
                {
                    "system": SYSTEM,
                    "filter": [{"property": "concept", "op": "is-a", "value": "cat"}],
                }
            ]
        },
    },
    "vs/below-animal": {
        "resourceType": "ValueSet",
        "compose": {
            "include": [
                {
                    "system": SYSTEM,
                    "filter": [{"property": "concept", "op": "descendent-of", "value": "animal"}],
                }
            ],
            "exclude": [{"system": SYSTEM, "concept": [{"code": "dog"}]}],
        },
    },
    "vs/imported": {
        "resourceType": "ValueSet",
        "compose": {"include": [{"valueSet": ["vs/listed"]}, {"valueSet": ["vs/cats"]}]},
    },
    "vs/external": {
        "resourceType": "ValueSet",
        "compose": {"include": [{"system": "http://snomed.info/sct"}]},
    },
    "vs/fragment": {
        "resourceType": "ValueSet",
        "compose": {"include": [{"system": "http://example.org/fragment"}]},
    },
    "vs/cycle": {"resourceType": "ValueSet", "compose": {"include": [{"valueSet": ["vs/cycle"]}]}},
    "vs/expanded": {
        "resourceType": "ValueSet",
        "expansion": {
            "contains": [{"system": "s", "code": "1", "contains": [{"system": "s", "code": "2"}]}]
        },
    },
}


@pytest.fixture
def terminology() -> Terminology:
    return Terminology(RESOURCES.get)


def test_whole_code_systems_filters_exclusions_and_imports_expand(terminology: Terminology):
    assert set(terminology.expand("vs/all") or ()) == {
        (SYSTEM, c) for c in ("animal", "dog", "cat", "lion", "plant")
    }
    assert set(terminology.expand("vs/cats") or ()) == {(SYSTEM, "cat"), (SYSTEM, "lion")}
    assert set(terminology.expand("vs/below-animal") or ()) == {(SYSTEM, "cat"), (SYSTEM, "lion")}
    assert set(terminology.expand("vs/imported") or ()) == {
        ("http://other", "x"),
        (SYSTEM, "cat"),
        (SYSTEM, "lion"),
    }
    assert set(terminology.expand("vs/expanded|1.0") or ()) == {("s", "1"), ("s", "2")}
    assert terminology.contains("vs/listed", None, "x") is True
    assert terminology.contains("vs/listed", SYSTEM, "x") is False


@pytest.mark.parametrize("url", ["vs/external", "vs/fragment", "vs/cycle", "vs/missing"])
def test_value_sets_that_cannot_be_expanded_are_unknown_not_empty(
    terminology: Terminology, url: str
):
    assert terminology.expand(url) is None
    assert terminology.contains(url, None, "anything") is None


@pytest.fixture(scope="module")
def binding_validator(r4_core, us_core) -> Validator:
    packages = PackageSet([us_core, r4_core])
    return Validator(PackageSchemaResolver(packages), terminology=Terminology(packages.resource))


def _errors(result: Any) -> list[tuple[str, str]]:
    return [(i.code, i.expression) for i in result.issues if i.severity == "error"]


@pytest.mark.data
def test_a_us_core_patient_with_gender_f_is_an_error(binding_validator: Validator):
    patient = {
        "resourceType": "Patient",
        "meta": {"profile": [US_CORE_PATIENT]},
        "identifier": [{"system": "http://hospital.example.org", "value": "1"}],
        "name": [{"family": "Shaw"}],
        "gender": "F",
    }
    errors = _errors(binding_validator.validate(patient))
    assert ("code-invalid", "Patient.gender") in errors
    assert _errors(binding_validator.validate({**patient, "gender": "female"})) == []


@pytest.mark.data
def test_codings_and_codeable_concepts_are_checked_by_system_and_code(binding_validator: Validator):
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        # Observation.status is a code; Narrative.status and Identifier.use too (all required)
        "identifier": [{"use": "sideways", "value": "1"}],
    }
    errors = _errors(binding_validator.validate(observation))
    assert ("code-invalid", "Observation.identifier[0].use") in errors
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    }
    # Encounter.class is bound (extensible) to an external code system: never judged
    assert _errors(binding_validator.validate(encounter)) == []
    checked = binding_validator.counters["bindings_checked"]
    assert checked > 0


@pytest.mark.data
def test_an_unknown_meta_profile_is_a_warning_not_an_error(binding_validator: Validator):
    patient = {
        "resourceType": "Patient",
        "meta": {"profile": ["http://example.org/no-such-profile"]},
    }
    result = binding_validator.validate(patient)
    assert _errors(result) == []
    warnings = [i for i in result.issues if i.severity == "warning" and i.code == "not-found"]
    assert warnings and "no-such-profile" in warnings[0].diagnostics
