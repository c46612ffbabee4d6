"""Validation, referential integrity, deletes, tombstones and preconditions."""

from __future__ import annotations

import json

import pytest

from tidemark.core import (
    ConflictError,
    DataValidationError,
    DependentItemExistsError,
    MalformedBodyError,
    NotFoundError,
    PreconditionFailedError,
    UnresolvedReferenceError,
)
from tidemark.store import Store

from . import samples
from .helpers import count, tombstones


async def test_schema_errors_list_every_problem_with_its_path(store: Store):
    body = {
        "schoolReference": {"schoolId": "one"},
        "schoolYearTypeReference": {"schoolYear": 2025},
        "beginDate": "2024-13-01",
        "extra": True,
    }
    with pytest.raises(DataValidationError) as info:
        await store.upsert("sessions", body)
    problems = info.value.validation_errors
    assert problems["$.sessionName"] == ["sessionName is required."]
    assert problems["$.endDate"] == ["endDate is required."]
    assert any("integer" in m for m in problems["$.schoolReference.schoolId"])
    assert any("date" in m for m in problems["$.beginDate"])
    assert any("extra" in m for m in problems["$"])
    assert info.value.status == 400 and info.value.code == "bad-request:data-validation-failed"
    assert await count(store, "documents") == 0


async def test_equality_constraint_violation_is_a_validation_error(store: Store):
    body = samples.course_offering()
    body["sessionReference"]["schoolId"] = 2
    with pytest.raises(DataValidationError) as info:
        await store.upsert("courseOfferings", body)
    assert "$.schoolReference.schoolId" in info.value.validation_errors
    assert "must match" in info.value.validation_errors["$.schoolReference.schoolId"][0]


async def test_missing_references_are_409_naming_each_one(store: Store):
    with pytest.raises(UnresolvedReferenceError) as info:
        await store.upsert("sessions", samples.session(school_id=9))
    error = info.value
    assert error.status == 409
    assert "School" in error.detail and "TermDescriptor" in error.detail
    assert set(error.validation_errors) == {"$.schoolReference", "$.termDescriptor"}
    assert "schoolId=9" in error.validation_errors["$.schoolReference"][0]
    assert {u["resource"] for u in error.data["unresolved"]} == {"School", "TermDescriptor"}
    assert await count(store, "documents") == 0


async def test_missing_reference_inside_an_array_names_its_position(store: Store):
    await store.upsert("schools", samples.school(1))
    await store.upsert("classPeriods", samples.class_period("P1"))
    with pytest.raises(UnresolvedReferenceError) as info:
        await store.upsert("bellSchedules", samples.bell_schedule(periods=("P1", "P9")))
    assert list(info.value.validation_errors) == ["$.classPeriods[1].classPeriodReference"]


async def test_descriptor_references_match_case_insensitively(store: Store):
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))
    body = samples.session()
    body["termDescriptor"] = body["termDescriptor"].upper()
    assert (await store.upsert("sessions", body)).created


async def test_a_subclass_is_referable_as_its_superclass(store: Store):
    await store.upsert("schools", samples.school(10))
    await store.upsert("localEducationAgencies", samples.lea(20))
    for ed_org in (10, 20):
        outcome = await store.upsert(
            "programs",
            {
                "educationOrganizationReference": {"educationOrganizationId": ed_org},
                "programName": "Arts",
            },
        )
        assert outcome.created
    with pytest.raises(UnresolvedReferenceError):
        await store.upsert(
            "programs",
            {
                "educationOrganizationReference": {"educationOrganizationId": 30},
                "programName": "Arts",
            },
        )


async def test_two_subclasses_cannot_share_a_superclass_identity(store: Store):
    await store.upsert("schools", samples.school(10))
    with pytest.raises(ConflictError, match="EducationOrganization"):
        await store.upsert("localEducationAgencies", samples.lea(10))


async def test_deleting_a_referenced_document_is_409(store: Store):
    chain = await samples.seed_chain(store)
    with pytest.raises(DependentItemExistsError) as info:
        await store.delete("ed-fi:sessions", chain["session"].id)
    assert "CourseOffering" in info.value.detail
    assert await store.get("ed-fi:sessions", chain["session"].id) is not None
    # a descriptor in use cannot go either
    with pytest.raises(DependentItemExistsError):
        await store.delete("ed-fi:termDescriptors", chain["term"].id)


async def test_delete_leaves_a_tombstone_with_its_own_version_and_key(store: Store):
    school = (await store.upsert("schools", samples.school(4))).document
    tomb = await store.delete("ed-fi:schools", school.id)
    assert tomb.change_version > school.content_version
    assert tomb.change_version == await store.newest_change_version()
    assert tomb.key_values == {"schoolId": 4}
    assert await store.get("ed-fi:schools", school.id) is None
    assert (
        await store.get_tombstone("ed-fi:schools", school.id)
    ).change_version == tomb.change_version
    rows = await tombstones(store)
    assert rows == [
        (
            tomb.change_version,
            "ed-fi:schools",
            school.id,
            json.dumps({"schoolId": 4}, separators=(",", ":")),
        )
    ]
    # the natural key is free again
    again = await store.upsert("schools", samples.school(4))
    assert again.created and again.document.id != school.id
    assert await store.get_tombstone("ed-fi:schools", school.id) is not None


async def test_delete_of_missing_document_is_404(store: Store):
    with pytest.raises(NotFoundError):
        await store.delete("ed-fi:schools", "0" * 32)


async def test_delete_unblocks_after_referrers_are_gone(store: Store):
    chain = await samples.seed_chain(store)
    await store.delete("ed-fi:sections", chain["section"].id)
    await store.delete("ed-fi:courseOfferings", chain["offering"].id)
    await store.delete("ed-fi:sessions", chain["session"].id)
    await store.delete("ed-fi:termDescriptors", chain["term"].id)
    assert await count(store, "document_references") == 0


async def test_if_match_mismatch_is_412_on_put_and_delete(store: Store):
    school = (await store.upsert("schools", samples.school(1))).document
    stale = school.etag.header()
    await store.upsert("schools", samples.school(1, name="New"))
    with pytest.raises(PreconditionFailedError) as info:
        await store.replace("schools", school.id, samples.school(1, name="Mine"), if_match=stale)
    assert info.value.code == "optimistic-lock-failed"
    assert info.value.detail == "The item has been modified by another user."
    with pytest.raises(PreconditionFailedError):
        await store.delete("ed-fi:schools", school.id, if_match=stale)
    current = await store.get("ed-fi:schools", school.id)
    ok = await store.replace(
        "schools", school.id, samples.school(1, name="Mine"), if_match=current.etag.header()
    )
    assert ok.changed
    await store.delete("ed-fi:schools", school.id, if_match=ok.document.etag.value)


async def test_if_match_star_on_a_missing_document_is_412(store: Store):
    with pytest.raises(PreconditionFailedError):
        await store.replace("schools", "f" * 32, samples.school(1), if_match="*")
    with pytest.raises(PreconditionFailedError):
        await store.delete("ed-fi:schools", "f" * 32, if_match="*")


async def test_if_none_match_star_on_existing_target_is_412(store: Store):
    school = (await store.upsert("schools", samples.school(1))).document
    with pytest.raises(PreconditionFailedError):
        await store.upsert("schools", samples.school(1, name="Other"), if_none_match="*")
    with pytest.raises(PreconditionFailedError):
        await store.replace(
            "schools", school.id, samples.school(1, name="Other"), if_none_match="*"
        )
    assert (await store.upsert("schools", samples.school(2), if_none_match="*")).created


async def test_put_needs_an_existing_document_and_a_matching_body_id(store: Store):
    with pytest.raises(NotFoundError):
        await store.replace("schools", "a" * 32, samples.school(1))
    school = (await store.upsert("schools", samples.school(1))).document
    with pytest.raises(DataValidationError):
        await store.replace("schools", school.id, {**samples.school(1), "id": "b" * 32})


async def test_a_body_that_is_not_an_object_is_refused(store: Store):
    with pytest.raises(MalformedBodyError):
        await store.upsert("schools", [samples.school(1)])


async def test_unknown_resource_is_404(store: Store):
    with pytest.raises(NotFoundError):
        await store.upsert("students", {"studentUniqueId": "1"})
