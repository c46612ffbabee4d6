"""Ed-Fi query filters on the index (DS 5.1): typed values, multi-path fields, descriptors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.store import samples
from tidemark.core import ParameterValidationError
from tidemark.store import ResourceModel, Store

DS = samples.DS
GRADE = f"{DS}/GradeLevelDescriptor#Ninth grade"


def student(unique_id: str, last: str, born: str) -> dict[str, Any]:
    return {
        "studentUniqueId": unique_id,
        "firstName": "Sam",
        "lastSurname": last,
        "birthDate": born,
    }


def enrolment(unique_id: str, school: int, next_year: int, **extra: Any) -> dict[str, Any]:
    return {
        "studentReference": {"studentUniqueId": unique_id},
        "schoolReference": {"schoolId": school},
        "nextYearSchoolReference": {"schoolId": next_year},
        "entryDate": "2024-08-21",
        "entryGradeLevelDescriptor": GRADE,
        **extra,
    }


async def seed(store: Store) -> None:
    for endpoint, body in samples.ds_descriptors():
        await store.upsert(endpoint, body)
    for year in (2025, 2026):
        await store.upsert(
            "schoolYearTypes",
            {"schoolYear": year, "currentSchoolYear": year == 2025, "schoolYearDescription": "y"},
        )
    for school_id in (255901, 255902):
        await store.upsert("schools", samples.ds_school(school_id))
    await store.upsert("sessions", samples.ds_session("Fall 2025", 255901, 2025))
    await store.upsert("sessions", samples.ds_session("Fall 2026", 255901, 2026))
    await store.upsert("students", student("S1", "Lovelace", "2010-05-04"))
    await store.upsert("students", student("S2", "Hopper", "2011-12-09"))
    await store.upsert(
        "studentSchoolAssociations",
        enrolment("S1", 255901, 255902, primarySchool=True, fullTimeEquivalency=0.5),
    )
    await store.upsert(
        "studentSchoolAssociations",
        enrolment("S2", 255902, 255901, primarySchool=False, fullTimeEquivalency=1),
    )


async def found(store: Store, endpoint: str, **where: Any) -> list[dict[str, Any]]:
    page = await store.query(f"ed-fi:{endpoint}", where=where, limit=100)
    return [d.body for d in page.items]


def test_ds51_query_fields_take_their_types_and_paths_from_the_document_schema(
    ds51_model: ResourceModel,
):
    sessions = ds51_model.find("ed-fi", "sessions")
    assert sessions is not None
    year = sessions.query_fields["schoolYear"]
    assert (year.type, year.kind) == ("string", "integer")  # declared string, documents hold ints
    association = ds51_model.find("ed-fi", "studentSchoolAssociations")
    assert association is not None
    school = association.query_fields["schoolId"]
    assert [p.text for p in school.paths] == [
        "$.schoolReference.schoolId",
        "$.calendarReference.schoolId",
    ]
    assert association.query_fields["entryGradeLevelDescriptor"].kind == "descriptor"
    assert association.query_fields["fullTimeEquivalency"].kind == "number"


async def test_school_year_filters_match_integer_years(ds_store: Store):
    await seed(ds_store)
    assert [s["sessionName"] for s in await found(ds_store, "sessions", schoolYear="2025")] == [
        "Fall 2025"
    ]
    assert [s["sessionName"] for s in await found(ds_store, "sessions", schoolYear=2026)] == [
        "Fall 2026"
    ]
    assert await found(ds_store, "sessions", schoolYear="1999") == []
    with pytest.raises(ParameterValidationError, match="schoolYear"):
        await found(ds_store, "sessions", schoolYear="twenty")


async def test_school_id_of_an_association_is_its_school_not_the_next_years(ds_store: Store):
    await seed(ds_store)
    at_first = await found(ds_store, "studentSchoolAssociations", schoolId="255901")
    assert [a["studentReference"]["studentUniqueId"] for a in at_first] == ["S1"]
    at_second = await found(ds_store, "studentSchoolAssociations", schoolId=255902)
    assert [a["studentReference"]["studentUniqueId"] for a in at_second] == ["S2"]


async def test_descriptor_filters_compare_uris_case_insensitively(ds_store: Store):
    await seed(ds_store)
    term = f"{DS}/TermDescriptor#Fall Semester"
    assert len(await found(ds_store, "sessions", termDescriptor=term)) == 2
    assert len(await found(ds_store, "sessions", termDescriptor=term.upper())) == 2
    assert await found(ds_store, "sessions", termDescriptor=f"{DS}/TermDescriptor#Spring") == []
    grade = await found(
        ds_store, "studentSchoolAssociations", entryGradeLevelDescriptor=GRADE.lower()
    )
    assert len(grade) == 2


async def test_date_boolean_number_and_string_filters(ds_store: Store):
    await seed(ds_store)
    born = await found(ds_store, "students", birthDate="2010-05-04")
    assert [s["studentUniqueId"] for s in born] == ["S1"]
    with pytest.raises(ParameterValidationError, match="birthDate"):
        await found(ds_store, "students", birthDate="2010-02-30")
    primary = await found(ds_store, "studentSchoolAssociations", primarySchool="TRUE")
    assert [a["studentReference"]["studentUniqueId"] for a in primary] == ["S1"]
    secondary = await found(ds_store, "studentSchoolAssociations", primarySchool=False)
    assert [a["studentReference"]["studentUniqueId"] for a in secondary] == ["S2"]
    with pytest.raises(ParameterValidationError, match="primarySchool"):
        await found(ds_store, "studentSchoolAssociations", primarySchool="yes")
    half = await found(ds_store, "studentSchoolAssociations", fullTimeEquivalency="0.50")
    assert [a["studentReference"]["studentUniqueId"] for a in half] == ["S1"]
    full = await found(ds_store, "studentSchoolAssociations", fullTimeEquivalency="1.0")
    assert [a["studentReference"]["studentUniqueId"] for a in full] == ["S2"]
    assert [
        s["studentUniqueId"] for s in await found(ds_store, "students", lastSurname="Hopper")
    ] == ["S2"]
    assert await found(ds_store, "students", lastSurname="hopper") == []  # strings are exact


async def test_filters_combine_and_apply_to_change_windows(ds_store: Store):
    await seed(ds_store)
    both = await found(
        ds_store, "studentSchoolAssociations", schoolId="255901", primarySchool="true"
    )
    assert len(both) == 1
    assert (
        await found(ds_store, "studentSchoolAssociations", schoolId="255901", primarySchool="false")
        == []
    )
    newest = await ds_store.newest_change_version()
    await ds_store.upsert("students", student("S1", "Lovelace-King", "2010-05-04"))
    window = await ds_store.changes(
        "ed-fi:students", min_version=newest + 1, where={"lastSurname": "Lovelace-King"}
    )
    assert [d.body["studentUniqueId"] for d in window.items] == ["S1"]
    before = await ds_store.changes(
        "ed-fi:students", max_version=newest, where={"lastSurname": "Hopper"}
    )
    assert [d.body["studentUniqueId"] for d in before.items] == ["S2"]
    gone = await ds_store.changes("ed-fi:students", where={"lastSurname": "Lovelace"})
    assert gone.items == []


async def test_json_path_filters_keep_their_typed_meaning(ds_store: Store):
    await seed(ds_store)
    by_path = await found(ds_store, "sessions", **{"$.schoolYearTypeReference.schoolYear": 2025})
    assert [s["sessionName"] for s in by_path] == ["Fall 2025"]
    assert (
        await found(ds_store, "sessions", **{"$.schoolYearTypeReference.schoolYear": "2025"}) == []
    )
    # a path of a multi-path field, and a path no query field has: read from the stored JSON
    assert (
        len(
            await found(
                ds_store,
                "studentSchoolAssociations",
                **{"$.nextYearSchoolReference.schoolId": 255901},
            )
        )
        == 1
    )
    assert len(await found(ds_store, "students", **{"$.firstName": "Sam"})) == 2
    with pytest.raises(ParameterValidationError):
        await found(ds_store, "students", color="red")
