import subprocess
import sys

import pytest

from tests.support import REPO_ROOT, require_data
from tidemark.fhir.search import (
    KeyValue,
    RangeValue,
    SearchParameter,
    SearchParameterSet,
    date_interval,
    extract,
)

CORE = SearchParameterSet.r4_core()

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
        "text": "HR",
    },
    "subject": {"reference": "http://example.org/fhir/Patient/p1/_history/2"},
    "encounter": {"identifier": {"system": "urn:enc", "value": "E1"}},
    "effectivePeriod": {"start": "2020-01-02"},
    "valueQuantity": {
        "value": 72,
        "unit": "beats/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}


def _entries(resource, *codes):
    parameters = CORE.for_type(resource["resourceType"])
    entries, failed = extract(resource, [parameters[c] for c in codes])
    assert failed == []
    return entries


def test_a_coding_is_indexed_with_and_without_its_system_and_its_text_apart():
    assert set(_entries(OBSERVATION, "code")) == {
        KeyValue("code", "8867-4"),
        KeyValue("code", "http://loinc.org|8867-4"),
        KeyValue("code:text", "heart rate"),
        KeyValue("code:text", "hr"),
    }


def test_a_reference_is_indexed_as_type_and_id_and_as_written():
    assert set(_entries(OBSERVATION, "subject", "patient")) == {
        KeyValue("subject", "http://example.org/fhir/Patient/p1/_history/2"),
        KeyValue("subject", "Patient/p1"),
        KeyValue("patient", "http://example.org/fhir/Patient/p1/_history/2"),
        KeyValue("patient", "Patient/p1"),
    }


def test_a_reference_by_identifier_is_indexed_for_the_identifier_modifier():
    assert _entries(OBSERVATION, "encounter") == [
        KeyValue("encounter:identifier", "E1"),
        KeyValue("encounter:identifier", "urn:enc|E1"),
    ]


def test_patient_is_only_a_subject_that_refers_to_a_patient():
    group_subject = dict(OBSERVATION, subject={"reference": "Group/g1"})
    assert _entries(group_subject, "patient") == []
    assert _entries(group_subject, "subject") == [KeyValue("subject", "Group/g1")]


def test_an_open_period_reaches_to_the_end_of_time():
    (entry,) = _entries(OBSERVATION, "date")
    assert isinstance(entry, RangeValue)
    assert entry.low == date_interval("2020-01-02").low
    assert entry.high > date_interval("9999").high


def test_a_quantity_is_indexed_under_each_way_to_name_its_unit():
    units = {entry.unit for entry in _entries(OBSERVATION, "value-quantity")}
    assert units == {"", "|/min", "|beats/min", "http://unitsofmeasure.org|/min"}
    assert {(e.low, e.high) for e in _entries(OBSERVATION, "value-quantity")} == {(71.5, 72.5)}


def test_strings_are_folded_for_prefix_search_and_kept_for_exact_search():
    patient = {"resourceType": "Patient", "name": [{"family": "Élise", "given": ["Anne Marie"]}]}
    assert set(_entries(patient, "family")) == {
        KeyValue("family", "elise"),
        KeyValue("family:exact", "Élise"),
    }
    assert KeyValue("name", "anne marie") in _entries(patient, "name")


def test_a_missing_value_gives_no_entry():
    assert _entries({"resourceType": "Patient"}, "gender", "birthdate", "identifier") == []


def test_an_expression_the_evaluator_cannot_decide_is_skipped_and_reported():
    parameter = SearchParameter("Patient", "odd", "token", "Patient.name.given.single()", "u")
    entries, failed = extract(
        {"resourceType": "Patient", "name": [{"given": ["a", "b"]}]}, [parameter]
    )
    assert (entries, failed) == ([], ["odd"])


def test_malformed_dates_in_a_resource_are_not_indexed_and_do_not_fail():
    patient = {"resourceType": "Patient", "birthDate": "someday"}
    assert _entries(patient, "birthdate") == []


@pytest.mark.data
def test_the_bundled_table_is_what_the_script_generates_from_r4_core():
    package = require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz")
    script = REPO_ROOT / "scripts" / "fhir_search_parameters.py"
    result = subprocess.run(
        [sys.executable, str(script), str(package), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "supported (type, code) pairs: 1639 of 1731" in result.stdout


@pytest.mark.data
def test_skipping_absent_elements_changes_no_entry_of_the_us_core_examples(monkeypatch):
    import tarfile

    import orjson

    from tidemark.fhir.search import _extract

    examples = []
    with tarfile.open(require_data("fhir/hl7.fhir.us.core-6.1.0.tgz")) as archive:
        for member in archive.getmembers():
            if member.name.startswith("package/example/") and member.name.endswith(".json"):
                handle = archive.extractfile(member)
                assert handle is not None
                examples.append(orjson.loads(handle.read()))
    assert len(examples) > 150
    fast = [extract(r, CORE.for_type(r["resourceType"]).values()) for r in examples]
    monkeypatch.setattr(_extract, "top_elements", lambda expression: None)
    full = [extract(r, CORE.for_type(r["resourceType"]).values()) for r in examples]
    assert fast == full
    assert sum(len(entries) for entries, _ in full) > 1000


def test_the_elements_an_expression_starts_from():
    from tidemark.fhir.search._extract import top_elements

    assert top_elements("Observation.subject.where(resolve() is Patient)") == frozenset(
        ("subject",)
    )
    union = top_elements("(Observation.value as Quantity) | Observation.component.value")
    assert union == frozenset(("value", "component"))
    assert top_elements("Patient.extension('http://x').value") == frozenset(("extension",))
    assert top_elements("Patient.deceased.exists() and Patient.deceased != false") is None
