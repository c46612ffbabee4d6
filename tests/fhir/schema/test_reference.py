"""A sample of the comparison with the reference converter (the full one: bench/fhirschema_reference.py).

Needs node and npm (and the npm registry the first time): skipped with the reason locally when
they are missing, failed in CI.
"""

import importlib
import sys
from types import ModuleType

import pytest

from tests.support import REPO_ROOT, unavailable

CORE = "http://hl7.org/fhir/StructureDefinition/"
BASE_SAMPLE = [
    "Patient",
    "Observation",
    "Questionnaire",
    "Bundle",
    "Claim",
    "ExplanationOfBenefit",
    "Extension",
    "Element",
    "BackboneElement",
    "Resource",
    "DomainResource",
    "HumanName",
    "Quantity",
    "Reference",
    "Timing",
    "Dosage",
    "ElementDefinition",
    "Meta",
    "Narrative",
    "string",
    "date",
    "dateTime",
    "code",
    "positiveInt",
]
PROFILE_SAMPLE = [
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure",
]


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    bench = str(REPO_ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    module = importlib.import_module("fhirschema_reference")
    try:
        module.ensure_reference()
    except module.ReferenceUnavailable as exc:
        unavailable(f"reference converter unavailable: {exc}")
    return module


def test_base_definitions_equal_the_reference_converter(reference, r4_core):
    sds = [r4_core.resource(CORE + name) for name in BASE_SAMPLE]
    theirs = reference.reference_convert(sds)
    ours = reference.tidemark_convert(sds)
    assert theirs.errors == {} and ours.errors == {}
    comparison = reference.compare(sds, ours.schemas, theirs.schemas)
    assert comparison.differences == {}
    assert comparison.equal["base"] == len(BASE_SAMPLE)


def test_every_profile_difference_is_a_documented_decision(reference, us_core):
    sds = [us_core.resource(url) for url in PROFILE_SAMPLE]
    comparison = reference.compare(
        sds,
        reference.tidemark_convert(sds).schemas,
        reference.reference_convert(sds).schemas,
    )
    unexplained = [
        line for lines in comparison.differences.values() for line in lines if "UNEXPLAINED" in line
    ]
    assert unexplained == []
    assert comparison.differences  # the profiles do differ: the decisions are real
