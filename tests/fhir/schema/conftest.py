"""Shared, session-scoped packages and a validator over R4 core + US Core (loaded once)."""

from __future__ import annotations

import pytest

from tests.support import require_data
from tidemark.fhir.packages import FhirPackage, PackageSet
from tidemark.fhir.schema import PackageSchemaResolver, Validator


@pytest.fixture(scope="session")
def r4_core() -> FhirPackage:
    return FhirPackage.load(require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz"))


@pytest.fixture(scope="session")
def us_core() -> FhirPackage:
    return FhirPackage.load(require_data("fhir/hl7.fhir.us.core-6.1.0.tgz"))


@pytest.fixture(scope="session")
def resolver(r4_core, us_core) -> PackageSchemaResolver:
    return PackageSchemaResolver(PackageSet([us_core, r4_core]))


@pytest.fixture(scope="session")
def validator(resolver) -> Validator:
    return Validator(resolver)
