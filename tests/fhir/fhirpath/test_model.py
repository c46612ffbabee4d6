"""The evaluator's knowledge of R4's types matches the R4 core package."""

import pytest

from tests.support import require_data
from tidemark.fhir.fhirpath import CHOICE_NAMES, COMPLEX_TYPES, PRIMITIVE_TYPES
from tidemark.fhir.packages import FhirPackage


@pytest.mark.data
def test_type_names_and_choice_names_are_those_of_r4_core():
    core = FhirPackage.load(require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz"))
    primitive, complex_, choices = set(), set(), set()
    for entry in core.structure_definitions():
        definition = core.resource(entry)
        if definition["kind"] == "logical":
            continue
        if definition.get("derivation") == "constraint":
            if definition["type"] == "Quantity":
                complex_.add(definition["name"])
            continue
        if definition["kind"] == "primitive-type":
            primitive.add(definition["type"])
        elif definition["kind"] == "complex-type":
            complex_.add(definition["type"])
        for element in definition["snapshot"]["element"]:
            if element["path"].endswith("[x]"):
                choices.add(element["path"].rsplit(".", 1)[1][:-3])
    assert primitive == PRIMITIVE_TYPES
    assert complex_ - {"Element"} == COMPLEX_TYPES  # Element is abstract: never a JSON suffix
    assert choices == CHOICE_NAMES
