"""The Ed-Fi Data Standard 5.1 ApiSchema: loading, and the cascades the issue names."""

from __future__ import annotations

from tidemark.store import ResourceModel, Store

from . import samples
from .helpers import key_changes


def test_ds51_loads_all_resources_with_their_features(ds51_model: ResourceModel):
    assert len(ds51_model) == 340
    assert ds51_model.projects == {"Ed-Fi": "5.1.0"}
    allowing = sorted(s.resource_name for s in ds51_model if s.allow_identity_updates)
    assert allowing == sorted(
        [
            "ClassPeriod",
            "GradebookEntry",
            "Grade",
            "Location",
            "Section",
            "Session",
            "StudentSchoolAssociation",
            "StudentSectionAssociation",
        ]
    )
    section = ds51_model.find("ed-fi", "sections")
    refs = {r.name: r for r in section.references}
    assert (
        refs["ClassPeriod"].object_path.text == "$.classPeriods[*].classPeriodReference"
    )  # inside an array
    assert refs["LocationSchool"].target == "School"  # role-named
    assert refs["CourseOffering"].in_identity and not refs["ClassPeriod"].in_identity
    assert {d.target for d in section.descriptor_references} >= {
        "CreditTypeDescriptor",
        "LanguageDescriptor",
    }
    school = ds51_model.find("ed-fi", "schools")
    assert school.superclass is not None and school.superclass[1] == "EducationOrganization"
    assert ds51_model.find("ed-fi", "gradeLevelDescriptors").is_descriptor
    session = ds51_model.find("ed-fi", "sessions")
    assert session.query_fields["schoolId"].paths[0].text == "$.schoolReference.schoolId"
    assert len(session.equality_constraints) == 3
    assert ds51_model.find("ED-FI", "COURSEOFFERINGS") is ds51_model.find(
        "ed-fi", "courseOfferings"
    )
    order = [s.endpoint for s in ds51_model.dependency_order()]
    assert (
        order.index("schools")
        < order.index("sessions")
        < order.index("courseOfferings")
        < order.index("sections")
    )


async def _seed(store: Store) -> dict[str, str]:
    for endpoint, body in samples.ds_descriptors():
        await store.upsert(endpoint, body)
    await store.upsert(
        "schoolYearTypes",
        {"schoolYear": 2025, "currentSchoolYear": True, "schoolYearDescription": "2024-2025"},
    )
    ids = {"school": (await store.upsert("schools", samples.ds_school())).document.id}
    ids["course"] = (await store.upsert("courses", samples.ds_course())).document.id
    ids["session"] = (await store.upsert("sessions", samples.ds_session())).document.id
    ids["offering"] = (
        await store.upsert("courseOfferings", samples.ds_course_offering())
    ).document.id
    ids["section"] = (await store.upsert("sections", samples.ds_section())).document.id
    return ids


async def test_ds51_session_rename_reaches_course_offerings_and_sections(ds_store: Store):
    ids = await _seed(ds_store)
    before = await ds_store.newest_change_version()
    renamed = samples.ds_session(name="2024-2025 Autumn Semester")
    outcome = await ds_store.replace("sessions", ids["session"], renamed)
    offering = await ds_store.get("ed-fi:courseOfferings", ids["offering"])
    section = await ds_store.get("ed-fi:sections", ids["section"])
    assert offering.body["sessionReference"]["sessionName"] == "2024-2025 Autumn Semester"
    assert section.body["courseOfferingReference"]["sessionName"] == "2024-2025 Autumn Semester"
    versions = {outcome.document.content_version, offering.content_version, section.content_version}
    assert len(versions) == 3 and min(versions) > before
    assert offering.identity_version == offering.content_version
    assert section.identity_version == section.content_version
    assert [c for _, c, _, _ in await key_changes(ds_store)] == [
        "ed-fi:sessions",
        "ed-fi:courseOfferings",
        "ed-fi:sections",
    ]


async def test_ds51_class_period_rename_reaches_bell_schedules_content_only(ds_store: Store):
    await _seed(ds_store)
    period = (
        await ds_store.upsert(
            "classPeriods",
            {"classPeriodName": "01 - Traditional", "schoolReference": {"schoolId": 255901}},
        )
    ).document
    bell = (
        await ds_store.upsert(
            "bellSchedules",
            {
                "bellScheduleName": "Normal Schedule",
                "schoolReference": {"schoolId": 255901},
                "classPeriods": [
                    {
                        "classPeriodReference": {
                            "classPeriodName": "01 - Traditional",
                            "schoolId": 255901,
                        }
                    }
                ],
            },
        )
    ).document
    await ds_store.replace(
        "classPeriods",
        period.id,
        {"classPeriodName": "First Period", "schoolReference": {"schoolId": 255901}},
    )
    after = await ds_store.get("ed-fi:bellSchedules", bell.id)
    assert (
        after.body["classPeriods"][0]["classPeriodReference"]["classPeriodName"] == "First Period"
    )
    assert after.content_version > bell.content_version
    assert after.identity_version == bell.identity_version


async def test_ds51_a_school_satisfies_an_education_organization_reference(ds_store: Store):
    ids = await _seed(ds_store)
    course = await ds_store.get("ed-fi:courses", ids["course"])
    assert course.body["educationOrganizationReference"] == {"educationOrganizationId": 255901}
