"""Fixtures of the schema store tests: R4 core (shared data) and a small profile package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_data
from tidemark.fhir.packages import FhirPackage
from tidemark.schemas import StorageSettings

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


@pytest.fixture(scope="session")
def r4_core() -> FhirPackage:
    return FhirPackage.load(require_data(R4_CORE))


@pytest.fixture(scope="session")
def us_core() -> FhirPackage:
    return FhirPackage.load(require_data(US_CORE))


@pytest.fixture
def profiles(tmp_path: Path) -> FhirPackage:
    return write_package(tmp_path / "profiles", [named_patient(), dated_patient()])


@pytest.fixture
def settings(tmp_path: Path) -> StorageSettings:
    """memory-disk under tmp_path, writes behind, compression on."""
    return StorageSettings(strategy="memory-disk", disk_cache_dir=tmp_path / "cache")
