import pytest

from tidemark.fhir.search import (
    SearchParameter,
    SearchParameterSet,
    expression_for,
    parameters_from_resource,
    split_union,
    unsupported_reason,
)


def test_a_union_splits_only_at_the_top_level():
    assert split_union("A.b | (A.c as X) | A.d.where(e | f) | A.g.where(h = '|')") == [
        "A.b",
        "(A.c as X)",
        "A.d.where(e | f)",
        "A.g.where(h = '|')",
    ]


def test_a_multi_type_expression_keeps_the_terms_of_one_type():
    expression = "Observation.subject | Condition.subject.where(resolve() is Patient) | Resource.id"
    bases = ["Observation", "Condition"]
    assert expression_for(expression, "Condition", bases) == (
        "Condition.subject.where(resolve() is Patient) | Resource.id"
    )


@pytest.mark.parametrize(
    ("type_", "expression", "reason"),
    [
        ("composite", "Observation.code", "type composite"),
        ("special", "Location.position", "type special"),
        ("token", None, "no FHIRPath expression"),
        ("token", "Patient.extension.memberOf('x')", "memberOf()"),
        ("token", "Patient.gender", None),
    ],
)
def test_unsupported_parameters_say_why(type_, expression, reason):
    found = unsupported_reason(type_, expression)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found


def test_a_package_parameter_gives_one_definition_per_base():
    resource = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/SearchParameter/x-subject",
        "code": "x-subject",
        "base": ["Observation", "Condition"],
        "type": "reference",
        "expression": "Observation.subject | Condition.subject",
        "target": ["Patient"],
    }
    found, missing = parameters_from_resource(resource)
    assert missing == []
    assert [(p.base, p.expression, p.targets) for p in found] == [
        ("Observation", "Observation.subject", ("Patient",)),
        ("Condition", "Condition.subject", ("Patient",)),
    ]


def test_the_bundled_table_holds_the_parameters_clients_use_first():
    parameters = SearchParameterSet.r4_core()
    patient = parameters.for_type("Patient")
    assert {"identifier", "birthdate", "gender", "name", "family", "_id", "_tag"} <= set(patient)
    observation = parameters.for_type("Observation")
    assert observation["patient"].expression == "Observation.subject.where(resolve() is Patient)"
    assert observation["patient"].targets == ("Patient", "Group")
    assert observation["code"].url == "http://hl7.org/fhir/SearchParameter/clinical-code"
    assert "Patient" in observation["subject"].targets


def test_a_package_parameter_replaces_the_core_one_and_changes_the_fingerprint():
    core = SearchParameterSet.r4_core()
    custom = SearchParameterSet.r4_core(
        [
            {
                "resourceType": "SearchParameter",
                "url": "http://example.org/SearchParameter/gender",
                "code": "gender",
                "base": ["Patient"],
                "type": "token",
                "expression": "Patient.extension('http://example.org/gender').value",
            }
        ]
    )
    assert custom.get("Patient", "gender").url == "http://example.org/SearchParameter/gender"
    assert custom.fingerprint != core.fingerprint
    assert SearchParameterSet.r4_core().fingerprint == core.fingerprint
    assert len(custom) == len(core)


def test_an_empty_set_has_no_parameters():
    empty = SearchParameterSet([SearchParameter("Patient", "x", "token", "Patient.x", "u")])
    assert empty.get("Observation", "x") is None
    assert empty.get("Patient", "x").expression == "Patient.x"
