"""Builders of the schema store tests: small profile packages written to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tidemark.fhir.packages import FhirPackage

R4_CORE = "fhir/hl7.fhir.r4.core-4.0.1.tgz"
US_CORE = "fhir/hl7.fhir.us.core-6.1.0.tgz"
EXAMPLE = "http://example.org/fhir/StructureDefinition"
PATIENT = "http://hl7.org/fhir/StructureDefinition/Patient"


def profile(name: str, base: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    """A Patient profile ``name`` constraining ``base`` with ``elements`` (differential)."""
    return {
        "resourceType": "StructureDefinition",
        "id": name,
        "url": f"{EXAMPLE}/{name}",
        "version": "1.0.0",
        "name": name,
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": base,
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient", "path": "Patient"}, *elements]},
    }


def named_patient(short: str = "a name is required") -> dict[str, Any]:
    return profile(
        "NamedPatient",
        PATIENT,
        [{"id": "Patient.name", "path": "Patient.name", "min": 1, "short": short}],
    )


def dated_patient() -> dict[str, Any]:
    return profile(
        "DatedPatient",
        f"{EXAMPLE}/NamedPatient",
        [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}],
    )


def broken_definition() -> dict[str, Any]:
    return profile("Broken", PATIENT, [{"id": "Patient.gender"}])


def write_package(
    folder: Path, resources: list[dict[str, Any]], *, version: str = "1.0.0"
) -> FhirPackage:
    """Write a folder package ``example.profiles`` holding ``resources``; load it."""
    package = folder / "package"
    package.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "example.profiles",
        "version": version,
        "dependencies": {"hl7.fhir.r4.core": "4.0.1"},
    }
    (package / "package.json").write_text(json.dumps(manifest))
    for resource in resources:
        (package / f"StructureDefinition-{resource['id']}.json").write_text(
            json.dumps(resource, indent=2)
        )
    return FhirPackage.load(folder)
