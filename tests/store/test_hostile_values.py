"""Values the store refuses on both engines, so that what it stores it can also find again:
numbers it cannot keep exactly (for every ApiSchema) and NUL characters (every collection)."""

from __future__ import annotations

from typing import Any

import pytest

from tidemark.core import DataValidationError, ModelMismatchError
from tidemark.store import ResourceModel, Store, load_model, open_store

from . import samples

TOO_BIG = [
    (1e308, "is not an integer this API can store exactly"),
    (float(2**63), "is not an integer this API can store exactly"),
    (1.2345678901234568e29, "is not an integer this API can store exactly"),
    (2**63, "outside the range of a 64-bit integer"),
    (-(2**63) - 1, "outside the range of a 64-bit integer"),
    (2**64 + 1, "outside the range of a 64-bit integer"),  # beyond what JSON text maps to
]


async def _school_count(store: Store) -> int:
    return len((await store.query("ed-fi:schools", limit=100)).items)


@pytest.mark.parametrize(("value", "message"), TOO_BIG)
async def test_sample_model_refuses_integers_it_cannot_keep_exactly(
    store: Store, value: Any, message: str
):
    with pytest.raises(DataValidationError) as refused:
        await store.upsert("schools", samples.school(value))
    assert message in refused.value.validation_errors["$.schoolId"][0]
    assert await _school_count(store) == 0


@pytest.mark.data
@pytest.mark.parametrize(("value", "message"), TOO_BIG)
async def test_ds51_refuses_integers_it_cannot_keep_exactly(
    ds_store: Store, value: Any, message: str
):
    with pytest.raises(DataValidationError) as refused:
        await ds_store.upsert("schools", {**samples.ds_school(), "schoolId": value})
    assert message in refused.value.validation_errors["$.schoolId"][0]


@pytest.mark.data
async def test_ds51_stores_integral_numbers_as_integers_at_any_depth(ds_store: Store):
    for endpoint, body in samples.ds_descriptors():
        await ds_store.upsert(endpoint, body)
    await ds_store.upsert("schools", {**samples.ds_school(), "schoolId": 255901.0})
    await ds_store.upsert(
        "schoolYearTypes",
        {"schoolYear": 2025, "currentSchoolYear": True, "schoolYearDescription": "2024-2025"},
    )
    session = samples.ds_session()
    session["schoolReference"] = {"schoolId": 255901.0}  # nested: still an integer location
    session["totalInstructionalDays"] = 82.0
    written = await ds_store.upsert("sessions", session)
    body = written.document.body
    assert body["schoolReference"]["schoolId"] == 255901
    assert isinstance(body["schoolReference"]["schoolId"], int)
    assert isinstance(body["totalInstructionalDays"], int)
    assert session["schoolReference"]["schoolId"] == 255901.0  # the caller's body is untouched
    # A decimal stays a decimal where the schema says "number".
    course = {**samples.ds_course(), "minimumAvailableCredits": 1.5, "numberOfParts": 1.0}
    stored = (await ds_store.upsert("courses", course)).document.body
    assert stored["minimumAvailableCredits"] == 1.5 and type(stored["numberOfParts"]) is int
    found = await ds_store.query("ed-fi:sessions", where={"$.schoolReference.schoolId": 255901})
    assert len(found.items) == 1


async def test_a_nul_character_is_refused_in_model_and_generic_collections(store: Store):
    with pytest.raises(DataValidationError) as model:
        await store.upsert("schools", samples.school(1, name="a\x00b"))
    assert "$.nameOfInstitution" in model.value.validation_errors
    with pytest.raises(DataValidationError) as generic:
        await store.put("fhir:Patient", "p1", {"name": [{"given": ["x", "y\x00"]}]})
    assert "$.name[0].given[1]" in generic.value.validation_errors
    with pytest.raises(DataValidationError) as member:
        await store.put("notes", "n1", {"a\x00": 1})
    assert "$.a\x00" in member.value.validation_errors
    # A literal backslash-u-zero-zero-zero-zero is ordinary text.
    await store.put("notes", "n2", {"text": "\\u0000"})
    assert (await store.get("notes", "n2")).body == {"text": "\\u0000"}
    # Nothing half-stored: filtered reads work on both engines.
    page = await store.query("ed-fi:schools", where={"$.nameOfInstitution": "a"})
    assert page.items == []


# -- the model a database was written with ---------------------------------------------------
def _other_model() -> ResourceModel:
    # The sample model with one resource less: a different ApiSchema.
    sample = load_model()
    specs = [spec for spec in sample if spec.endpoint != "programs"]
    return ResourceModel(specs, "a trimmed sample model", sample.projects)


async def test_a_database_refuses_another_model_while_it_holds_documents(store_url: str):
    store = await open_store(store_url)
    await store.upsert("schools", samples.school(1))
    await store.close()
    other = _other_model()
    with pytest.raises(ModelMismatchError) as refused:
        await open_store(store_url, model=other)
    message = str(refused.value)
    assert "tidemark sample model" in message and "a trimmed sample model" in message
    assert "--migrate-model" in message and "\n" not in message
    # The same model still opens; a deliberate migration records the new one.
    again = await open_store(store_url)
    await again.close()
    migrated = await open_store(store_url, model=other, migrate_model=True)
    assert await migrated.get("ed-fi:schools", (await _any_school_id(migrated))) is not None
    await migrated.close()
    reopened = await open_store(store_url, model=other)
    await reopened.close()
    with pytest.raises(ModelMismatchError):
        await open_store(store_url)  # now the sample model is the foreign one


async def _any_school_id(store: Store) -> str:
    return (await store.query("ed-fi:schools")).items[0].id


async def test_generic_collections_do_not_tie_a_database_to_a_model(store_url: str):
    store = await open_store(store_url)
    await store.put("sync:ns", "k1", {"key": "app.k"})
    await store.put("fhir:Patient", "p1", {"resourceType": "Patient"})
    await store.close()
    other = await open_store(store_url, model=_other_model())  # adopts it: no model documents
    assert (await other.get("fhir:Patient", "p1")) is not None
    await other.close()
    sample = await open_store(store_url)  # and back: still no document of a model
    await sample.upsert("schools", samples.school(2))
    await sample.close()
    with pytest.raises(ModelMismatchError):
        await open_store(store_url, model=_other_model())  # now it holds a school
