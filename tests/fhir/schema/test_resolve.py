import threading

from tidemark.fhir.schema import (
    PackageSchemaResolver,
    schema_dependencies,
    type_url,
)

CORE = "http://hl7.org/fhir/StructureDefinition/"
US = "http://hl7.org/fhir/us/core/StructureDefinition/"


def test_type_url_expands_core_names_and_keeps_absolute_urls():
    assert type_url("HumanName") == CORE + "HumanName"
    assert type_url("http://example.org/Logical") == "http://example.org/Logical"
    assert type_url("urn:x:y") == "urn:x:y"


def test_resolver_converts_once_and_caches(r4_core, us_core):
    resolver = PackageSchemaResolver([us_core, r4_core])
    first = resolver(US + "us-core-patient")
    assert first is not None and first["base"] == CORE + "Patient"
    assert resolver(US + "us-core-patient") is first
    versioned = resolver(f"{CORE}Patient|4.0.1")
    assert versioned is not None and versioned["type"] == "Patient"
    assert resolver("http://example.org/nothing") is None
    assert resolver(CORE.replace("StructureDefinition", "ValueSet") + "x") is None
    counters = resolver.counters.snapshot()
    assert counters == {"conversions": 2, "hits": 1, "misses": 2}
    assert len(resolver.urls()) == 655 + 59


def test_resolver_is_safe_from_many_threads(r4_core):
    resolver = PackageSchemaResolver(r4_core)
    results = []

    def worker():
        results.append(resolver(CORE + "Observation"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(r) for r in results}) == 1


def test_dependencies_list_base_types_extensions_and_targets(us_core):
    schema = PackageSchemaResolver(us_core)(US + "us-core-patient")
    assert schema is not None
    dependencies = schema_dependencies(schema)
    assert CORE + "Patient" in dependencies
    assert US + "us-core-race" in dependencies
    assert CORE + "Extension" in dependencies
    assert US + "us-core-patient" not in dependencies
    assert dependencies == sorted(dependencies)


def test_dependencies_of_a_base_resource(r4_core):
    schema = PackageSchemaResolver(r4_core)(CORE + "Patient")
    assert schema is not None
    dependencies = schema_dependencies(schema)
    assert CORE + "DomainResource" in dependencies
    assert {CORE + "HumanName", CORE + "Organization", CORE + "date"} <= set(dependencies)
