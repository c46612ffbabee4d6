"""Identity changes cascade to referrers in the same transaction, each document stamped once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tidemark.core import KeyChangeNotSupportedError, ManualClock
from tidemark.store import Store, load_model, open_store

from . import samples
from .helpers import count, journal, key_changes


async def test_identity_change_without_allow_identity_updates_is_rejected(store: Store):
    school = (await store.upsert("schools", samples.school(1))).document
    with pytest.raises(KeyChangeNotSupportedError) as info:
        await store.replace("schools", school.id, samples.school(2))
    assert info.value.code.endswith("key-change-not-supported")
    assert info.value.status == 400
    assert (await store.get("ed-fi:schools", school.id)).body["schoolId"] == 1


async def test_session_rename_reaches_course_offerings_and_their_sections(
    store: Store, clock: ManualClock
):
    chain = await samples.seed_chain(store)
    before = await store.newest_change_version()
    clock.advance(10)
    renamed = await store.replace("sessions", chain["session"].id, samples.session(name="Autumn"))
    offering = await store.get("ed-fi:courseOfferings", chain["offering"].id)
    section = await store.get("ed-fi:sections", chain["section"].id)
    assert offering.body["sessionReference"]["sessionName"] == "Autumn"
    assert section.body["courseOfferingReference"]["sessionName"] == "Autumn"
    versions = [renamed.document.content_version, offering.content_version, section.content_version]
    assert len(set(versions)) == 3
    assert all(v > before for v in versions)
    assert await store.newest_change_version() == before + 3
    # identity changed for all three (the references are part of their identities)
    assert renamed.document.identity_version == renamed.document.content_version
    assert offering.identity_version == offering.content_version
    assert section.identity_version == section.content_version
    assert offering.content_last_modified_at == renamed.document.content_last_modified_at
    changes = await key_changes(store)
    assert [c for _, c, _, _ in changes] == [
        "ed-fi:sessions",
        "ed-fi:courseOfferings",
        "ed-fi:sections",
    ]
    old, new = json.loads(changes[2][2]), json.loads(changes[2][3])
    assert old["sessionName"] == "Fall" and new["sessionName"] == "Autumn"
    assert old["sectionIdentifier"] == new["sectionIdentifier"] == "S-1"
    # the old natural keys no longer resolve; the new ones do
    again = await store.upsert("sections", samples.section(session_name="Autumn"))
    assert again.document.id == chain["section"].id and not again.changed


async def test_class_period_rename_bumps_bell_schedule_content_only(store: Store):
    await store.upsert("schools", samples.school(1))
    period = (await store.upsert("classPeriods", samples.class_period("P1"))).document
    await store.upsert("classPeriods", samples.class_period("P2"))
    bell = (
        await store.upsert("bellSchedules", samples.bell_schedule(periods=("P1", "P2")))
    ).document
    renamed = await store.replace("classPeriods", period.id, samples.class_period("First"))
    after = await store.get("ed-fi:bellSchedules", bell.id)
    names = [p["classPeriodReference"]["classPeriodName"] for p in after.body["classPeriods"]]
    assert names == ["First", "P2"]
    assert after.content_version > renamed.document.content_version
    assert after.identity_version == bell.identity_version  # the array reference is not identity
    assert [c for _, c, _, _ in await key_changes(store)] == ["ed-fi:classPeriods"]


async def test_rename_reaches_a_reference_inside_an_array_of_a_section(store: Store):
    await samples.seed_chain(store)
    period = (await store.upsert("classPeriods", samples.class_period("P1"))).document
    section = (
        await store.upsert("sections", samples.section("S-2", class_periods=("P1",)))
    ).document
    await store.replace("classPeriods", period.id, samples.class_period("Period 1"))
    after = await store.get("ed-fi:sections", section.id)
    assert after.body["classPeriods"][0]["classPeriodReference"]["classPeriodName"] == "Period 1"
    assert after.identity_version == section.identity_version


def _model_with_a_double_referrer() -> Any:
    """The sample model plus `offeringNotes`, which references a Session and a CourseOffering of
    that session: a session rename reaches each note twice in one cascade."""
    from importlib import resources

    data = json.loads(
        resources.files("tidemark.store").joinpath("sample-api-schema.json").read_text()
    )
    project = data["projectSchemas"]["ed-fi"]
    offering = project["resourceSchemas"]["courseOfferings"]
    note = {
        "allowIdentityUpdates": False,
        "documentPathsMapping": {
            "Session": offering["documentPathsMapping"]["Session"],
            "CourseOffering": {
                "isDescriptor": False,
                "isReference": True,
                "projectName": "Ed-Fi",
                "resourceName": "CourseOffering",
                "referenceJsonPaths": [
                    {
                        "identityJsonPath": "$.localCourseCode",
                        "referenceJsonPath": "$.courseOfferingReference.localCourseCode",
                        "type": "string",
                    },
                    {
                        "identityJsonPath": "$.schoolReference.schoolId",
                        "referenceJsonPath": "$.courseOfferingReference.schoolId",
                        "type": "number",
                    },
                    {
                        "identityJsonPath": "$.sessionReference.schoolId",
                        "referenceJsonPath": "$.courseOfferingReference.schoolId",
                        "type": "number",
                    },
                    {
                        "identityJsonPath": "$.sessionReference.schoolYear",
                        "referenceJsonPath": "$.courseOfferingReference.schoolYear",
                        "type": "number",
                    },
                    {
                        "identityJsonPath": "$.sessionReference.sessionName",
                        "referenceJsonPath": "$.courseOfferingReference.sessionName",
                        "type": "string",
                    },
                ],
            },
        },
        "equalityConstraints": [],
        "identityJsonPaths": ["$.noteId"],
        "isDescriptor": False,
        "isSubclass": False,
        "jsonSchemaForInsert": {"type": "object"},
        "queryFieldMapping": {"noteId": [{"path": "$.noteId", "type": "string"}]},
        "resourceName": "OfferingNote",
    }
    project["resourceSchemas"]["offeringNotes"] = note
    return load_model(data)


async def test_document_reached_twice_in_one_cascade_is_written_once(
    store_url: str, clock: ManualClock
):
    store = await open_store(store_url, model=_model_with_a_double_referrer(), clock=clock)
    try:
        chain = await samples.seed_chain(store)
        note = (
            await store.upsert(
                "offeringNotes",
                {
                    "noteId": "n1",
                    "sessionReference": {"schoolId": 1, "schoolYear": 2025, "sessionName": "Fall"},
                    "courseOfferingReference": {
                        "localCourseCode": "ALG-1",
                        "schoolId": 1,
                        "schoolYear": 2025,
                        "sessionName": "Fall",
                    },
                },
            )
        ).document
        journal_before = len(await journal(store))
        history_before = await count(store, "history")
        await store.replace("sessions", chain["session"].id, samples.session(name="Autumn"))
        after = await store.get("ed-fi:offeringNotes", note.id)
        assert after.body["sessionReference"]["sessionName"] == "Autumn"
        assert after.body["courseOfferingReference"]["sessionName"] == "Autumn"
        rows = await journal(store)
        # session, offering, section and the note: four documents, four versions, one each
        assert len(rows) - journal_before == 4
        assert [c for _, c in rows].count("ed-fi:offeringNotes") == 2  # insert + one cascade write
        assert await count(store, "history") - history_before == 4
        assert len(await store.history("ed-fi:offeringNotes", note.id)) == 1
    finally:
        await store.close()


async def test_identity_change_colliding_with_an_existing_key_is_409_and_changes_nothing(
    store: Store,
):
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))
    fall = (await store.upsert("sessions", samples.session(name="Fall"))).document
    await store.upsert("sessions", samples.session(name="Spring"))
    before = await store.newest_change_version()
    from tidemark.core import ConflictError

    with pytest.raises(ConflictError):
        await store.replace("sessions", fall.id, samples.session(name="Spring"))
    assert (await store.get("ed-fi:sessions", fall.id)).body["sessionName"] == "Fall"
    assert await store.newest_change_version() >= before
    assert len(await journal(store, "ed-fi:sessions")) == 2
