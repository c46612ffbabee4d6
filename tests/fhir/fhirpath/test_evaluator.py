import pytest

from tidemark.fhir.fhirpath import (
    SUPPORTED_FUNCTIONS,
    FhirPathUnsupported,
    evaluate,
    evaluate_invariant,
)

PATIENT = {
    "resourceType": "Patient",
    "id": "amy",
    "name": [{"family": "Shaw", "given": ["Amy", "V."]}, {"given": ["Ames"]}],
    "birthDate": "1987-02-20",
    "deceasedBoolean": False,
    "_gender": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    },
    "contained": [{"resourceType": "Practitioner", "id": "gp"}],
}


def _values(expression, focus=PATIENT):
    return [item.value for item in evaluate(expression, focus, resource=focus)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("name.given", ["Amy", "V.", "Ames"]),
        ("name.family.exists()", [True]),
        ("name.where(family.exists()).count()", [1]),
        ("name.all(given.exists())", [True]),
        ("name.given.first()", ["Amy"]),
        ("name[1].given", ["Ames"]),
        ("name.given.count() > 2", [True]),
        ("birthDate = '1987-02-20'", [True]),
        ("birthDate != '1987-02-20'", [False]),
        ("name.family | name.given", ["Shaw", "Amy", "V.", "Ames"]),
        ("'Amy' in name.given", [True]),
        ("name.given contains 'Bob'", [False]),
        ("deceased", [False]),
        ("deceased.exists() and deceased = false", [True]),
        ("gender.exists()", [True]),
        ("gender.hasValue()", [False]),
        ("birthDate.hasValue()", [True]),
        ("name.given.select(length())", [3, 2, 4]),
        ("(1 + 2) * 3", [9]),
        ("7 div 2", [3]),
        ("'a' & 'b'", ["ab"]),
        ("birthDate.matches('^[0-9]{4}')", [True]),
        ("birthDate.substring(0, 4).toInteger()", [1987]),
        ("iif(name.exists(), 'yes', 'no')", ["yes"]),
        ("{}.exists()", [False]),
        ("%resource.id", ["amy"]),
        ("contained.ofType(Practitioner).id", ["gp"]),
        ("Patient.name.count()", [2]),
        ("extension.exists() implies true", [True]),
        ("name.family.empty() xor name.given.empty()", [False]),
    ],
)
def test_supported_expressions(expression, expected):
    assert _values(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true and {}", None),
        ("false and {}", False),
        ("true or {}", True),
        ("{} or false", None),
        ("false implies {}", True),
        ("{} implies true", True),
        ("true implies false", False),
        ("{} xor true", None),
    ],
)
def test_three_valued_logic(expression, expected):
    assert evaluate_invariant(expression, {}) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "htmlChecks()",
        "code.memberOf('http://example.org/vs')",
        "managingOrganization.resolve().name",  # only the type and id of a reference are known
        "url.resolve()",
        "birthDate.extension.exists()",  # extensions of primitives are not navigated
        "name.given = name.family.first() + 1",
        "value.ofType(Quantity).exists()",  # the JSON does not say what type 'value' is
        "gender = 'female'",  # gender has only an extension: comparing it is not decided
        "name.given.single()",
        "birthDate < '1990'",  # different precision
        "name.(given)",
    ],
)
def test_outside_the_subset_is_unsupported_never_guessed(expression):
    focus = dict(
        PATIENT,
        value={"value": 1},
        managingOrganization={"reference": "Organization/1"},
        url="http://example.org/x",
    )
    with pytest.raises(FhirPathUnsupported):
        evaluate(expression, focus)


def test_choice_elements_navigate_by_their_declared_name_with_known_type():
    focus = {"valueQuantity": {"value": 5}, "valueString": "x"}
    assert [i.type_name for i in evaluate("value", focus)] == ["Quantity", "string"]
    assert [i.value for i in evaluate("value.ofType(Quantity).value", focus)] == [5]


def test_the_function_list_is_published():
    assert {"exists", "where", "all", "matches", "ofType", "hasValue"} <= set(SUPPORTED_FUNCTIONS)
