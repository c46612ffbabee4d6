"""Fixtures of the schema store tests: R4 core and US Core (shared data), a profile package."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.schemas.builders import R4_CORE, US_CORE, dated_patient, named_patient, write_package
from tests.support import require_data
from tidemark.fhir.packages import FhirPackage
from tidemark.schemas import StorageSettings


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
