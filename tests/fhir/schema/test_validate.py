"""Validator rules, shown with US Core resources written for these tests (valid and invalid)."""

import copy
from typing import Any

import pytest

from tidemark.fhir.schema import (
    ValidationIssue,
    Validator,
    operation_outcome,
    validate,
)

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
PATIENT = US_CORE + "us-core-patient"
LAB = US_CORE + "us-core-observation-lab"
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}

VALID_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "amy",
    "meta": {"profile": [PATIENT]},
    "text": NARRATIVE,
    "extension": [
        {
            "url": US_CORE + "us-core-race",
            "extension": [
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"},
                },
                {"url": "text", "valueString": "White"},
            ],
        },
        {"url": US_CORE + "us-core-birthsex", "valueCode": "F"},
    ],
    "identifier": [{"system": "http://hospital.example.org", "value": "1032702"}],
    "name": [{"family": "Shaw", "given": ["Amy", "V."]}],
    "telecom": [{"system": "phone", "value": "555-555-5555"}],
    "gender": "female",
    "birthDate": "1987-02-20",
    "generalPractitioner": [{"reference": "Practitioner/p1"}],
}

VALID_LAB: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "glucose",
    "meta": {"profile": [LAB]},
    "text": NARRATIVE,
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
    "subject": {"reference": "Patient/amy"},
    "effectiveDateTime": "2023-01-01T10:00:00Z",
    "valueQuantity": {
        "value": 6.3,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    },
}


def _errors(validator: Validator, resource) -> list[tuple[str, str]]:
    return [(i.expression, i.code) for i in validator.validate(resource).errors]


def _patient(**changes):
    resource = copy.deepcopy(VALID_PATIENT)
    for key, value in changes.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def test_valid_us_core_patient_has_no_issues(validator):
    result = validator.validate(VALID_PATIENT)
    assert result.valid, result.issues
    assert result.issues == ()


def test_valid_us_core_lab_observation_has_no_issues(validator):
    result = validator.validate(VALID_LAB)
    assert result.valid and result.issues == ()


@pytest.mark.parametrize("missing", ["identifier", "name", "gender"])
def test_us_core_patient_requires_identifier_name_and_gender(validator, missing):
    result = validator.validate(_patient(**{missing: None}))
    assert [(i.expression, i.code) for i in result.errors] == [(f"Patient.{missing}", "required")]
    assert missing in result.errors[0].diagnostics


def test_without_the_profile_the_same_patient_is_valid(validator):
    resource = _patient(identifier=None, name=None, gender=None, meta=None)
    assert validator.validate(resource).valid


def test_profiles_can_be_passed_explicitly(validator):
    resource = _patient(identifier=None, meta=None)
    assert _errors(validator, resource) == []
    result = validator.validate(resource, profiles=[PATIENT])
    assert [i.expression for i in result.errors] == ["Patient.identifier"]


@pytest.mark.parametrize(
    "birth_date", ["1987-13-01", "87-02-20", "1987-02-30", "1987/02/20", "", "1987-02-20T10:00"]
)
def test_bad_date_formats_are_value_errors_at_the_element(validator, birth_date):
    assert _errors(validator, _patient(birthDate=birth_date)) == [("Patient.birthDate", "value")]


@pytest.mark.parametrize("birth_date", ["1987", "1987-02", "1987-02-20", "2000-02-29"])
def test_partial_dates_are_valid_dates(validator, birth_date):
    assert _errors(validator, _patient(birthDate=birth_date)) == []


def test_a_number_where_a_code_belongs_is_a_value_error(validator):
    assert _errors(validator, _patient(gender=1)) == [("Patient.gender", "value")]


def test_bad_primitives_inside_arrays_are_located_by_index(validator):
    name = [{"family": "Shaw", "given": ["Amy", 7]}]
    assert _errors(validator, _patient(name=name)) == [("Patient.name[0].given[1]", "value")]


def test_unknown_elements_are_reported(validator):
    resource = _patient(nickname="Ames")
    resource["name"][0]["middle"] = "V"
    assert sorted(_errors(validator, resource)) == [
        ("Patient.name[0].middle", "structure"),
        ("Patient.nickname", "structure"),
    ]


def test_array_and_single_value_shapes_are_enforced(validator):
    assert _errors(validator, _patient(name={"family": "Shaw"})) == [("Patient.name", "structure")]
    assert _errors(validator, _patient(gender=["female"])) == [("Patient.gender", "structure")]
    assert ("Patient.telecom", "structure") in _errors(validator, _patient(telecom=[]))


def test_two_variants_of_one_choice_are_an_error(validator):
    resource = _patient(deceasedBoolean=False, deceasedDateTime="2020-01-01")
    assert _errors(validator, resource) == [("Patient.deceasedDateTime", "structure")]


def test_reference_to_a_resource_type_the_element_does_not_allow(validator):
    resource = _patient(generalPractitioner=[{"reference": "Patient/someone-else"}])
    result = validator.validate(resource)
    assert [(i.expression, i.code) for i in result.errors] == [
        ("Patient.generalPractitioner[0]", "structure")
    ]
    assert "Patient is not allowed" in result.errors[0].diagnostics


@pytest.mark.parametrize(
    "reference",
    [
        {"reference": "Practitioner/p1"},
        {"reference": "https://example.org/fhir/Organization/o1/_history/2"},
        {"reference": "urn:uuid:0a1b2c3d-0000-0000-0000-000000000000"},
        {"type": "PractitionerRole", "identifier": {"value": "x"}},
    ],
)
def test_allowed_or_untypeable_references_pass(validator, reference):
    assert _errors(validator, _patient(generalPractitioner=[reference])) == []


def test_profile_reference_targets_are_typed_by_the_target_profile(validator):
    lab = copy.deepcopy(VALID_LAB)
    lab["subject"] = {"reference": "Practitioner/1"}
    result = validator.validate(lab)
    assert [(i.expression, i.code) for i in result.errors] == [("Observation.subject", "structure")]


def test_a_contained_reference_is_typed_by_the_contained_resource(validator):
    resource = _patient(
        contained=[{"resourceType": "Patient", "id": "other"}],
        generalPractitioner=[{"reference": "#other"}],
    )
    assert ("Patient.generalPractitioner[0]", "structure") in _errors(validator, resource)


def test_us_core_lab_category_slice_requires_the_laboratory_category(validator):
    lab = copy.deepcopy(VALID_LAB)
    lab["category"][0]["coding"][0]["code"] = "vital-signs"
    result = validator.validate(lab)
    assert [(i.expression, i.code) for i in result.errors] == [
        ("Observation.category", "structure")
    ]
    assert "slice 'us-core'" in result.errors[0].diagnostics


def test_other_categories_besides_the_sliced_one_are_allowed(validator):
    lab = copy.deepcopy(VALID_LAB)
    lab["category"].append({"text": "chemistry"})
    assert _errors(validator, lab) == []


def test_complex_extension_slices_are_checked(validator):
    resource = _patient()
    race = resource["extension"][0]
    race["extension"] = race["extension"][:1]  # drop the required "text" sub-extension
    result = validator.validate(resource)
    assert [(i.expression, i.code) for i in result.errors] == [
        ("Patient.extension[0].extension", "structure")
    ]
    assert "slice 'text'" in result.errors[0].diagnostics


def test_an_extension_value_of_a_type_its_definition_does_not_allow(validator):
    resource = _patient()
    resource["extension"][1] = {"url": US_CORE + "us-core-birthsex", "valueString": "F"}
    assert _errors(validator, resource) == [("Patient.extension[1].valueString", "structure")]


def test_a_prohibited_element_is_reported(validator):
    resource = _patient()
    resource["extension"][0]["valueString"] = "White"  # us-core-race has value[x] 0..0
    errors = _errors(validator, resource)
    assert ("Patient.extension[0].valueString", "structure") in errors
    assert ("Patient.extension[0]", "invariant") in errors  # ext-1: value and extensions


BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp",
    "meta": {"profile": [US_CORE + "us-core-blood-pressure"]},
    "text": NARRATIVE,
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/amy"},
    "effectiveDateTime": "2023-01-01",
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }
        for code, value in (("8480-6", 120), ("8462-4", 80))
    ],
}


def test_valid_blood_pressure_has_no_errors(validator):
    assert _errors(validator, BLOOD_PRESSURE) == []


def test_a_fixed_value_must_match_exactly(validator):
    bp = copy.deepcopy(BLOOD_PRESSURE)
    bp["component"][0]["valueQuantity"]["code"] = "mmHg"
    result = validator.validate(bp)
    assert [(i.expression, i.code) for i in result.errors] == [
        ("Observation.component[0].valueQuantity.code", "value")
    ]
    assert 'exactly "mm[Hg]"' in result.errors[0].diagnostics


def test_a_pattern_must_be_contained_in_the_value(validator):
    bp = copy.deepcopy(BLOOD_PRESSURE)
    bp["code"]["coding"].insert(0, {"system": "http://example.org", "code": "bp"})
    bp["code"]["text"] = "Blood pressure"
    assert _errors(validator, bp) == []  # more than the pattern is fine
    bp["code"]["coding"] = [{"system": "http://loinc.org", "code": "1234-5"}]
    assert _errors(validator, bp) == [("Observation.code", "value")]


def test_a_missing_component_slice_is_reported_on_the_sliced_element(validator):
    bp = copy.deepcopy(BLOOD_PRESSURE)
    del bp["component"][1]
    result = validator.validate(bp)
    assert [(i.expression, i.diagnostics) for i in result.errors] == [
        ("Observation.component", "component needs at least 2 item(s), found 1"),
        ("Observation.component", "slice 'diastolic' needs at least 1 item(s), found 0"),
    ]


def test_invariants_of_profile_elements_are_evaluated(validator):
    result = validator.validate(_patient(name=[{"use": "official"}]))
    assert [(i.expression, i.code) for i in result.errors] == [("Patient.name[0]", "invariant")]
    assert result.errors[0].diagnostics.startswith("us-core-6:")


def test_invariants_of_base_elements_are_evaluated(validator):
    resource = _patient(contact=[{"gender": "female"}])
    errors = validator.validate(resource).errors
    assert [(i.expression, i.diagnostics[:6]) for i in errors] == [("Patient.contact[0]", "pat-1:")]


def test_an_empty_object_breaks_ele_1(validator):
    assert _errors(validator, _patient(maritalStatus={})) == [
        ("Patient.maritalStatus", "invariant")
    ]


def test_a_primitive_with_only_an_extension_satisfies_required(validator):
    absent = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    resource = _patient(gender=None)
    resource["_gender"] = absent
    assert _errors(validator, resource) == []


def test_unknown_extensions_are_warnings_and_unknown_modifier_extensions_errors(validator):
    resource = _patient()
    resource["extension"].append(
        {"url": "http://example.org/ext/favourite-colour", "valueString": "red"}
    )
    result = validator.validate(resource)
    assert result.valid
    assert [(i.severity, i.expression) for i in result.warnings] == [
        ("warning", "Patient.extension[2]")
    ]
    resource["modifierExtension"] = [
        {"url": "http://example.org/ext/not-really", "valueBoolean": True}
    ]
    assert _errors(validator, resource) == [("Patient.modifierExtension[0]", "not-supported")]


def test_an_unknown_profile_is_a_warning_and_a_profile_of_another_type_an_error(validator):
    resource = _patient(meta={"profile": ["http://example.org/StructureDefinition/unknown"]})
    result = validator.validate(resource)
    assert result.valid and result.warnings[0].code == "not-found"
    resource = _patient(meta={"profile": [LAB]})
    assert _errors(validator, resource) == [("Patient", "structure")]


def test_contained_resources_are_validated_with_their_own_type(validator):
    resource = _patient(
        contained=[{"resourceType": "Practitioner", "id": "gp", "gender": "robot"}],
        generalPractitioner=[{"reference": "#gp"}],
    )
    # gender's binding is not checked (no terminology), but its type is: a code is fine.
    assert _errors(validator, resource) == []
    resource["contained"][0]["birthDate"] = "yesterday"
    assert _errors(validator, resource) == [("Patient.contained[0].birthDate", "value")]


def test_a_contained_resource_nobody_references_breaks_dom_3(validator):
    resource = _patient(contained=[{"resourceType": "Practitioner", "id": "lonely"}])
    assert _errors(validator, resource) == [("Patient.contained[0]", "invariant")]


def test_bundle_entries_are_validated_against_their_claimed_profiles(validator):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": _patient(gender=None)}, {"resource": copy.deepcopy(VALID_LAB)}],
    }
    assert _errors(validator, bundle) == [("Bundle.entry[0].resource.gender", "required")]


def test_a_missing_narrative_is_only_a_dom_6_warning(validator):
    result = validator.validate(_patient(text=None))
    assert result.valid
    assert [i.diagnostics[:6] for i in result.warnings] == ["dom-6:"]


@pytest.mark.parametrize(
    "resource",
    [None, [], "Patient", {"resourceType": 7}, {"resourceType": "NoSuchThing"}, {"id": "x"}],
)
def test_garbage_is_reported_not_raised(validator, resource):
    result = validator.validate(resource)
    assert not result.valid
    assert result.errors[0].code == "structure"


def test_deeply_wrong_values_are_reported_not_raised(validator):
    resource = _patient(name=[{"family": {"nested": True}, "given": [None]}], identifier=[[]])
    errors = _errors(validator, resource)
    assert ("Patient.name[0].family", "value") in errors
    assert ("Patient.name[0].given[0]", "structure") in errors
    assert ("Patient.identifier[0]", "structure") in errors


def test_a_resolver_that_knows_nothing_reports_the_unknown_type():
    result = validate({"resourceType": "Patient"}, lambda url: None)
    assert [(i.expression, i.code) for i in result.errors] == [("Patient", "structure")]


def test_operation_outcome_renders_issues_as_fhir(validator):
    outcome = operation_outcome(validator.validate(_patient(gender=None)))
    assert outcome == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "missing required element 'gender'",
                "expression": ["Patient.gender"],
            }
        ],
    }
    assert validator.validate(operation_outcome([])).valid


def test_issues_are_plain_values():
    issue = ValidationIssue("error", "value", "bad", "Patient.birthDate")
    assert issue.as_dict()["expression"] == ["Patient.birthDate"]


def test_counters_show_evaluated_and_skipped_invariants(resolver):
    validator = Validator(resolver)
    validator.validate(_patient(name=[{"use": "official"}]))
    snapshot = validator.counters.snapshot()
    assert snapshot["validations"] == 1 and snapshot["invariants_evaluated"] >= 1
    # Narrative.div carries txt-1/txt-2 (htmlChecks()), which the subset does not evaluate.
    assert snapshot["invariants_skipped"] >= 1


def test_validating_all_us_core_examples_finds_no_errors(validator, us_core):
    import tarfile

    import orjson

    from tests.support import require_data

    path = require_data("fhir/hl7.fhir.us.core-6.1.0.tgz")
    with tarfile.open(path) as archive:
        examples = [
            orjson.loads(archive.extractfile(m).read())  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.name.startswith("package/example/") and m.name.endswith(".json")
        ]
    assert len(examples) > 150
    failures = {
        f"{e['resourceType']}/{e.get('id')}": [str(i) for i in validator.validate(e).errors]
        for e in examples
    }
    assert {k: v for k, v in failures.items() if v} == {}
