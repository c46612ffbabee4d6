"""FHIRPath Patch applied to resources (pure): the five operations, paths, values, errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tidemark.api._fhirpath_patch import apply_fhirpath_patch
from tidemark.core import BadRequestError, UnprocessableError

ARRAYS = {("name",), ("name", "given"), ("identifier",), ("telecom",), ("extension",)}


def repeats(resource_type: str, names: Sequence[str]) -> bool | None:
    if tuple(names) in ARRAYS:
        return True
    if tuple(names) in {("birthDate",), ("gender",), ("maritalStatus",)}:
        return False
    return None


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if name == "value":
            items.append({"name": "value", **value})
        elif isinstance(value, int):
            items.append({"name": name, "valueInteger": value})
        else:
            items.append({"name": name, "valueString": value})
    return {"name": "operation", "part": items}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p",
    "identifier": [
        {"system": "http://a", "value": "1"},
        {"system": "http://b", "value": "2"},
    ],
    "name": [{"family": "Shaw", "given": ["Amy"]}],
    "gender": "female",
    "extension": [{"url": "http://x", "valueString": "old"}],
}


def test_replace_delete_add_insert_and_move() -> None:
    result = apply_fhirpath_patch(
        PATIENT,
        patch(
            operation("replace", "Patient.gender", value={"valueCode": "other"}),
            operation("delete", "Patient.identifier.where(system = 'http://a')"),
            operation("add", "Patient", name="birthDate", value={"valueDate": "1970-01-01"}),
            operation("add", "Patient.name[0]", name="given", value={"valueString": "Jo"}),
            operation(
                "insert",
                "Patient.identifier",
                index=0,
                value={"valueIdentifier": {"system": "http://c", "value": "3"}},
            ),
            operation("move", "Patient.identifier", source=0, destination=1),
            operation(
                "replace", "Patient.extension('http://x').value", value={"valueString": "new"}
            ),
        ),
        repeats,
    )
    assert result["gender"] == "other" and result["birthDate"] == "1970-01-01"
    assert [i["value"] for i in result["identifier"]] == ["2", "3"]
    assert result["name"][0]["given"] == ["Amy", "Jo"]
    assert result["extension"] == [{"url": "http://x", "valueString": "new"}]
    assert PATIENT["gender"] == "female"  # the input is untouched


def test_complex_values_from_parts_and_new_arrays() -> None:
    value = {
        "part": [
            {"name": "system", "valueString": "phone"},
            {"name": "value", "valueString": "555"},
        ]
    }
    result = apply_fhirpath_patch(
        PATIENT, patch(operation("add", "Patient", name="telecom", value=value)), repeats
    )
    assert result["telecom"] == [{"system": "phone", "value": "555"}]


def test_delete_of_nothing_is_a_no_op_and_last_item_removes_the_member() -> None:
    result = apply_fhirpath_patch(
        PATIENT,
        patch(
            operation("delete", "Patient.birthDate"),
            operation("delete", "Patient.name.first()"),
        ),
        repeats,
    )
    assert "name" not in result and result["gender"] == "female"


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (
            operation("replace", "Patient.identifier", value={"valueString": "x"}),
            UnprocessableError,
        ),
        (
            operation("replace", "Patient.birthDate", value={"valueDate": "2000"}),
            UnprocessableError,
        ),
        (
            operation("add", "Patient", name="gender", value={"valueCode": "male"}),
            UnprocessableError,
        ),
        (operation("add", "Patient", name="photo", value={"valueString": "x"}), UnprocessableError),
        (
            operation("insert", "Patient.identifier", index=5, value={"valueString": "x"}),
            UnprocessableError,
        ),
        (operation("move", "Patient.identifier", source=0, destination=9), UnprocessableError),
        (
            operation("replace", "Observation.status", value={"valueCode": "final"}),
            UnprocessableError,
        ),
        (
            operation("replace", "Patient.name.children()", value={"valueString": "x"}),
            UnprocessableError,
        ),
        (operation("frob", "Patient.gender"), BadRequestError),
        (operation("replace", "Patient.gender"), BadRequestError),
        (operation("replace", "Patient..gender", value={"valueCode": "x"}), BadRequestError),
    ],
)
def test_patches_that_do_not_fit_are_refused(op: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        apply_fhirpath_patch(PATIENT, patch(op), repeats)


def test_a_failing_operation_leaves_the_input_unchanged() -> None:
    with pytest.raises(UnprocessableError):
        apply_fhirpath_patch(
            PATIENT,
            patch(
                operation("replace", "Patient.gender", value={"valueCode": "other"}),
                operation("replace", "Patient.birthDate", value={"valueDate": "2000"}),
            ),
            repeats,
        )
    assert PATIENT["gender"] == "female"
