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


def test_a_key_that_only_looks_like_a_choice_is_not_one():
    # 'subscriber' is no choice element: 'subscriberId' is an element of its own.
    coverage = {"resourceType": "Coverage", "subscriberId": "888", "subscriber": None}
    assert evaluate("Coverage.subscriber", coverage) == []
    assert _values("Coverage.subscriberId", coverage) == ["888"]


def test_resolve_gives_the_type_of_a_reference_and_contained_resources_whole():
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "http://example.org/fhir/Patient/p1/_history/3"},
        "performer": [{"reference": "#gp"}, {"display": "no reference"}],
        "contained": [{"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Bo"}]}],
    }
    assert _values("Observation.subject.where(resolve() is Patient).exists()", observation) == [
        True
    ]
    assert _values("Observation.subject.where(resolve() is Group).exists()", observation) == [False]
    assert _values("Observation.performer.resolve().name.family", observation) == ["Bo"]
    assert _values("Observation.subject.resolve().id", observation) == ["p1"]


def test_type_tests_see_fhir_subtypes():
    focus = {"sourceCanonical": "http://x/vs", "valueAge": {"value": 3}}
    assert _values("(source as uri)", focus) == ["http://x/vs"]
    assert _values("source.is(uri)", focus) == [True]
    assert _values("value.as(Quantity).value", focus) == [3]
    assert _values("(source as string)", focus) == []


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(1 | 2 | 3).intersect(2 | 3 | 4)", [2, 3]),
        ("(1 | 2 | 3).exclude(2)", [1, 3]),
        ("(1 | 2).union(2 | 3)", [1, 2, 3]),
        ("(1 | 2).combine(2)", [1, 2, 2]),
        ("(1 | 2 | 3).skip(1).take(1)", [2]),
        ("(1 | 2).subsetOf(1 | 2 | 3)", [True]),
        ("(1 | 2 | 3).supersetOf(4)", [False]),
        ("'a-b-c'.replace('-', '+')", ["a+b+c"]),
        ("'abc123'.replaceMatches('([a-z]+)([0-9]+)', '$2$1')", ["123abc"]),
        ("'abc'.indexOf('c')", [2]),
        ("%ucum", ["http://unitsofmeasure.org"]),
    ],
)
def test_set_and_string_functions(expression, expected):
    assert _values(expression) == expected


def test_repeat_walks_nested_items_once_each():
    questionnaire = {"item": [{"linkId": "1", "item": [{"linkId": "1.1"}]}, {"linkId": "2"}]}
    assert _values("repeat(item).linkId", questionnaire) == ["1", "2", "1.1"]


def test_quantities_compare_in_the_same_unit_only():
    same = {"low": {"value": 1, "code": "mg"}, "high": {"value": 2, "code": "mg"}}
    assert _values("low <= high", same) == [True]
    other = {"low": {"value": 1, "code": "mg"}, "high": {"value": 2, "code": "g"}}
    with pytest.raises(FhirPathUnsupported):
        evaluate("low <= high", other)


def test_a_function_named_like_an_operator_can_start_an_expression():
    assert _values("value.where(as(string) = 'x').exists()", {"valueString": "x"}) == [True]
    with pytest.raises(FhirPathUnsupported):  # children() do not say their type
        evaluate("children().where(as(string) = 'x').exists()", {"a": "x"})
