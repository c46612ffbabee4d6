"""StructureDefinition → FHIRSchema: the reference format, and the decisions where we differ."""

import copy
import subprocess
import sys

import pytest

from tidemark.core import canonical_bytes, canonical_hash
from tidemark.fhir.schema import ConversionError, convert

CORE = "http://hl7.org/fhir/StructureDefinition/"


def _sd(elements, snapshot=None, **header):
    sd = {
        "resourceType": "StructureDefinition",
        "id": "test-profile",
        "url": "http://example.org/StructureDefinition/test-profile",
        "name": "TestProfile",
        "kind": "resource",
        "type": "Patient",
        "derivation": "constraint",
        "baseDefinition": CORE + "Patient",
        "differential": {"element": [{"id": "Patient", "path": "Patient"}, *elements]},
    }
    if snapshot is not None:
        sd["snapshot"] = {"element": snapshot}
    sd.update(header)
    return sd


def _el(element_id, **fields):
    path = ".".join(part.split(":")[0] for part in element_id.split("."))
    return {"id": element_id, "path": path, **fields}


def test_all_655_r4_core_definitions_convert(r4_core):
    entries = r4_core.structure_definitions()
    assert len(entries) == 655
    for entry in entries:
        schema = convert(r4_core.resource(entry))
        assert schema["url"] == entry.url
        assert "[Circular Reference]" not in canonical_bytes(schema).decode()


def test_all_us_core_definitions_convert(us_core):
    entries = us_core.structure_definitions()
    assert len(entries) == 59
    for entry in entries:
        assert convert(us_core.resource(entry))["url"] == entry.url


def test_patient_has_the_reference_shape(r4_core):
    schema = convert(r4_core.resource(CORE + "Patient"))
    assert schema["class"] == "resource" and schema["base"] == CORE + "DomainResource"
    elements = schema["elements"]
    assert elements["name"]["array"] is True and elements["name"]["type"] == "HumanName"
    assert elements["deceased"]["choices"] == ["deceasedBoolean", "deceasedDateTime"]
    assert elements["deceasedDateTime"] == {
        **elements["deceasedDateTime"],
        "type": "dateTime",
        "choiceOf": "deceased",
    }
    assert elements["generalPractitioner"]["refers"] == [
        CORE + "Organization",
        CORE + "Practitioner",
        CORE + "PractitionerRole",
    ]
    assert elements["gender"]["binding"]["strength"] == "required"
    assert "pat-1" in elements["contact"]["constraint"]
    assert elements["link"]["required"] == ["other", "type"]


def test_content_references_become_element_references(r4_core):
    schema = convert(r4_core.resource(CORE + "Questionnaire"))
    assert schema["elements"]["item"]["elements"]["item"]["elementReference"] == [
        CORE + "Questionnaire",
        "elements",
        "item",
    ]


def test_primitive_types_are_header_only(r4_core):
    assert convert(r4_core.resource(CORE + "date")) == {
        "name": "date",
        "type": "date",
        "kind": "primitive-type",
        "class": "primitive-type",
        "url": CORE + "date",
        "version": "4.0.1",
        "description": "Base StructureDefinition for date Type: A date or partial date (e.g. just year or year + month). There is no time zone. The format is a union of the schema types gYear, gYearMonth and date.  Dates SHALL be valid dates.",
        "derivation": "specialization",
        "base": CORE + "Element",
    }


def test_conversion_is_deterministic_across_processes(r4_core, us_core, tmp_path):
    profile = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
    sds = [r4_core.resource(CORE + name) for name in ("Patient", "Observation", "Extension")]
    sds.append(us_core.resource(profile))
    here = [canonical_hash(convert(sd)) for sd in sds]
    assert here == [canonical_hash(convert(sd)) for sd in sds]
    source = tmp_path / "sds.json"
    source.write_bytes(canonical_bytes(sds))
    script = (
        "import sys, orjson; from tidemark.fhir.schema import convert;"
        "from tidemark.core import canonical_hash;"
        "sds = orjson.loads(open(sys.argv[1], 'rb').read());"
        "print(' '.join(canonical_hash(convert(sd)) for sd in sds))"
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(source)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert done.stdout.split() == here


def test_the_input_is_not_modified(us_core):
    sd = us_core.resource("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
    before = copy.deepcopy(sd)
    convert(sd)
    assert sd == before


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"resourceType": "Patient"},
        {"resourceType": "StructureDefinition", "differential": {"element": "nope"}},
        {"resourceType": "StructureDefinition", "differential": {"element": [{"id": "x"}]}},
        {"resourceType": "StructureDefinition", "kind": "primitive-type", "description": {1, 2}},
    ],
)
def test_what_is_not_a_structure_definition_is_a_conversion_error(value):
    with pytest.raises(ConversionError):
        convert(value)


def test_fixed_and_pattern_stay_distinct():
    schema = convert(
        _sd(
            [
                _el("Patient.gender", fixedCode="female"),
                _el(
                    "Patient.maritalStatus",
                    patternCodeableConcept={"coding": [{"system": "http://s", "code": "M"}]},
                ),
            ]
        )
    )
    elements = schema["elements"]
    assert elements["gender"]["fixed"] == {"type": "code", "value": "female"}
    assert elements["maritalStatus"]["pattern"]["type"] == "CodeableConcept"
    assert elements["maritalStatus"]["type"] == "CodeableConcept"  # taken from the pattern


CATEGORY_SNAPSHOT = [
    {"id": "Observation", "path": "Observation", "base": {"path": "Observation", "max": "*"}},
    {
        "id": "Observation.category",
        "path": "Observation.category",
        "base": {"path": "Observation.category", "max": "*"},
        "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"},
    },
    {
        "id": "Observation.category:lab",
        "path": "Observation.category",
        "sliceName": "lab",
        "base": {"path": "Observation.category", "max": "*"},
    },
]
LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


def _category_profile():
    return _sd(
        [
            _el(
                "Observation.category:lab",
                sliceName="lab",
                min=1,
                max="1",
                patternCodeableConcept=LAB,
            )
        ],
        snapshot=CATEGORY_SNAPSHOT,
        type="Observation",
        baseDefinition=CORE + "Observation",
    )


def test_d1_a_slice_without_slicing_root_does_not_constrain_the_sliced_element():
    category = convert(_category_profile())["elements"]["category"]
    assert set(category) == {"slicing"}  # no pattern, type or cardinality copied from the slice


def test_d11_an_inherited_slicing_comes_from_the_snapshot_and_gives_the_match():
    slicing = convert(_category_profile())["elements"]["category"]["slicing"]
    assert slicing["discriminator"] == [{"type": "pattern", "path": "$this"}]
    assert slicing["rules"] == "open"
    assert slicing["slices"]["lab"]["match"] == LAB


def test_d3_slice_cardinality_lives_on_the_slice_not_in_its_schema():
    node = convert(_category_profile())["elements"]["category"]["slicing"]["slices"]["lab"]
    assert node["min"] == 1 and node["max"] == 1
    assert not {"min", "max", "array", "_required"} & set(node["schema"])
    assert node["schema"]["pattern"]["value"] == LAB


def test_slice_cardinality_survives_children_and_match_values_in_arrays_are_wrapped():
    component = [
        _el(
            "Observation.component",
            slicing={"discriminator": [{"type": "pattern", "path": "code"}], "rules": "open"},
            min=2,
        ),
        _el("Observation.component:systolic", sliceName="systolic", min=1, max="1"),
        _el(
            "Observation.component:systolic.code",
            min=1,
            max="1",
            patternCodeableConcept={"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        ),
        _el("Observation.component:systolic.code.coding", min=1, max="*"),
        _el(
            "Observation.component:systolic.code.coding.code",
            fixedCode="8480-6",
        ),
    ]
    schema = convert(_sd(component, type="Observation", baseDefinition=CORE + "Observation"))
    slicing = schema["elements"]["component"]["slicing"]
    node = slicing["slices"]["systolic"]
    assert (node["min"], node["max"]) == (1, 1)
    assert node["match"] == {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}
    assert slicing["min"] == 2


def test_d4_extension_slices_match_on_their_profile_url():
    snapshot = [
        {
            "id": "Patient.extension",
            "path": "Patient.extension",
            "base": {"max": "*"},
            "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
        },
    ]
    race = "http://example.org/StructureDefinition/race"
    schema = convert(
        _sd(
            [
                _el(
                    "Patient.extension:race",
                    sliceName="race",
                    min=0,
                    max="1",
                    type=[{"code": "Extension", "profile": [race]}],
                )
            ],
            snapshot=snapshot,
        )
    )
    node = schema["elements"]["extension"]["slicing"]["slices"]["race"]
    assert node["match"] == {"url": race}
    assert schema["extensions"]["race"] == {"url": race, "max": 1, "index": 0}
    assert "max" not in node["schema"] and node["max"] == 1


def test_d2_extension_elements_drop_meaningless_cardinality():
    schema = convert(
        _sd(
            [
                _el(
                    "Patient.extension",
                    min=0,
                    max="*",
                    type=[{"code": "Extension", "profile": ["http://example.org/e"]}],
                )
            ]
        )
    )
    element = schema["elements"]["extension"]
    assert element["url"] == "http://example.org/e"
    assert "max" not in element and "min" not in element


def test_d5_an_untyped_choice_in_a_profile_is_kept():
    schema = convert(
        _sd(
            [_el("Observation.value[x]", min=1, mustSupport=True)],
            type="Observation",
            baseDefinition=CORE + "Observation",
        )
    )
    assert schema["elements"]["value"]["mustSupport"] is True
    assert schema["required"] == ["value"]


def test_d6_typed_choice_variants_of_a_profile_get_the_declaration_binding():
    binding = {"strength": "required", "valueSet": "http://example.org/vs"}
    snapshot = [{"id": "Observation.value[x]", "path": "Observation.value[x]", "binding": binding}]
    schema = convert(
        _sd(
            [_el("Observation.value[x]", type=[{"code": "CodeableConcept"}, {"code": "string"}])],
            snapshot=snapshot,
            id="an-id-that-is-not-the-type",
            type="Observation",
            baseDefinition=CORE + "Observation",
        )
    )
    assert schema["elements"]["valueCodeableConcept"]["binding"] == binding
    assert "binding" not in schema["elements"]["value"]


def test_d7_a_prohibited_element_is_listed_as_excluded():
    schema = convert(
        _sd(
            [
                _el("Extension.extension", max="0"),
                _el("Extension.value[x]", max="0"),
            ],
            type="Extension",
            kind="complex-type",
            baseDefinition=CORE + "Extension",
        )
    )
    assert schema["excluded"] == ["extension", "value"]


def test_d12_a_repeating_element_limited_to_one_is_still_an_array():
    snapshot = [
        {"id": "Patient.name", "path": "Patient.name", "base": {"path": "Patient.name", "max": "*"}}
    ]
    schema = convert(_sd([_el("Patient.name", min=1, max="1")], snapshot=snapshot))
    assert schema["elements"]["name"] == {"array": True, "min": 1, "max": 1, "index": 0}
    assert schema["required"] == ["name"]


def test_d9_shared_values_are_written_out_not_marked_circular(us_core):
    schema = convert(
        us_core.resource("http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure")
    )
    node = schema["elements"]["component"]["slicing"]["slices"]["systolic"]
    assert node["schema"]["elements"]["code"]["pattern"]["value"] == node["match"]["code"]
