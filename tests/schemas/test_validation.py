import pytest

from tests.schemas.builders import EXAMPLE, PATIENT
from tidemark.fhir.schema import operation_outcome
from tidemark.schemas import SchemaStore, StorageSettings

pytestmark = pytest.mark.data

US_CORE_PATIENT = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"


def _errors(result):
    return [(i.code, i.expression) for i in result.errors]


@pytest.fixture
async def store(tmp_path, r4_core, us_core, profiles):
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(settings, packages=[us_core, profiles, r4_core]) as opened:
        yield opened


async def test_a_valid_patient_passes_and_converts_only_what_it_needs(store):
    result = await store.validate({"resourceType": "Patient", "gender": "male"})
    assert result.valid
    assert 0 < store.counters["conversions"] < 40


async def test_a_wrong_type_is_an_error_at_its_location(store):
    result = await store.validate({"resourceType": "Patient", "gender": 5})
    assert _errors(result) == [("value", "Patient.gender")]


async def test_an_explicit_profile_is_checked(store):
    result = await store.validate(
        {"resourceType": "Patient", "gender": "male"}, profiles=[f"{EXAMPLE}/NamedPatient"]
    )
    assert _errors(result) == [("required", "Patient.name")]


async def test_meta_profile_brings_in_us_core(store):
    patient = {
        "resourceType": "Patient",
        "meta": {"profile": [US_CORE_PATIENT]},
        "gender": "male",
        "name": [{"family": "Chalmers"}],
    }
    result = await store.validate(patient)
    assert _errors(result) == [("required", "Patient.identifier")]
    outcome = operation_outcome(result)
    assert outcome["resourceType"] == "OperationOutcome"
    fixed = {**patient, "identifier": [{"system": "urn:oid:1.2.36", "value": "12345"}]}
    assert (await store.validate(fixed)).valid


async def test_the_validator_sees_schemas_loaded_from_disk_after_a_restart(tmp_path, r4_core):
    settings = StorageSettings(disk_cache_dir=tmp_path / "cache")
    async with SchemaStore(settings, packages=r4_core) as first:
        assert (await first.validate({"resourceType": "Patient", "gender": "male"})).valid
        converted = first.counters["conversions"]
    async with SchemaStore(settings, packages=r4_core) as second:
        assert (await second.validate({"resourceType": "Patient", "gender": "male"})).valid
        assert second.counters["conversions"] == 0
        assert second.counters["reused"] == converted


async def test_the_resolver_refuses_to_block_its_own_event_loop(store):
    resolve = store.resolver()
    await store.get(PATIENT)
    assert resolve(PATIENT) is not None  # a memory hit needs no loop
    with pytest.raises(RuntimeError, match="worker thread"):
        resolve("http://hl7.org/fhir/StructureDefinition/Observation")
