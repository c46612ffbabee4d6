"""Documents of the bundled sample model, and a minimal valid DS 5.1 chain, for tests."""

from __future__ import annotations

from typing import Any

TERM_NS = "uri://ed-fi.org/TermDescriptor"
GRADE_NS = "uri://ed-fi.org/GradeLevelDescriptor"


def descriptor(namespace: str, code: str) -> dict[str, Any]:
    return {"namespace": namespace, "codeValue": code, "shortDescription": code}


def school(school_id: int = 1, name: str = "Grand Bend High", **extra: Any) -> dict[str, Any]:
    return {"schoolId": school_id, "nameOfInstitution": name, **extra}


def lea(lea_id: int) -> dict[str, Any]:
    return {"localEducationAgencyId": lea_id, "nameOfInstitution": f"LEA {lea_id}"}


def session(
    school_id: int = 1, name: str = "Fall", year: int = 2025, term: str = "Fall"
) -> dict[str, Any]:
    return {
        "schoolReference": {"schoolId": school_id},
        "schoolYearTypeReference": {"schoolYear": year},
        "sessionName": name,
        "beginDate": f"{year - 1}-08-20",
        "endDate": f"{year - 1}-12-20",
        "termDescriptor": f"{TERM_NS}#{term}",
    }


def course_offering(
    code: str = "ALG-1", school_id: int = 1, session_name: str = "Fall", year: int = 2025
) -> dict[str, Any]:
    return {
        "localCourseCode": code,
        "localCourseTitle": f"Course {code}",
        "schoolReference": {"schoolId": school_id},
        "sessionReference": {
            "schoolId": school_id,
            "schoolYear": year,
            "sessionName": session_name,
        },
    }


def section(
    identifier: str = "S-1",
    code: str = "ALG-1",
    school_id: int = 1,
    session_name: str = "Fall",
    year: int = 2025,
    class_periods: tuple[str, ...] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sectionIdentifier": identifier,
        "courseOfferingReference": {
            "localCourseCode": code,
            "schoolId": school_id,
            "schoolYear": year,
            "sessionName": session_name,
        },
    }
    if class_periods:
        body["classPeriods"] = [
            {"classPeriodReference": {"classPeriodName": p, "schoolId": school_id}}
            for p in class_periods
        ]
    return body


def class_period(name: str = "P1", school_id: int = 1) -> dict[str, Any]:
    return {"classPeriodName": name, "schoolReference": {"schoolId": school_id}}


def bell_schedule(
    name: str = "Normal", school_id: int = 1, periods: tuple[str, ...] = ("P1",)
) -> dict[str, Any]:
    return {
        "bellScheduleName": name,
        "schoolReference": {"schoolId": school_id},
        "classPeriods": [
            {"classPeriodReference": {"classPeriodName": p, "schoolId": school_id}} for p in periods
        ],
    }


async def seed_chain(store: Any) -> dict[str, Any]:
    """School 1, the Fall term descriptor, session Fall 2025, course offering ALG-1, section S-1."""
    out: dict[str, Any] = {}
    out["term"] = (await store.upsert("termDescriptors", descriptor(TERM_NS, "Fall"))).document
    out["school"] = (await store.upsert("schools", school())).document
    out["session"] = (await store.upsert("sessions", session())).document
    out["offering"] = (await store.upsert("courseOfferings", course_offering())).document
    out["section"] = (await store.upsert("sections", section())).document
    return out


# -- DS 5.1 ---------------------------------------------------------------------------------------

DS = "uri://ed-fi.org"


def ds_descriptors() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("gradeLevelDescriptors", descriptor(f"{DS}/GradeLevelDescriptor", "Ninth grade")),
        (
            "educationOrganizationCategoryDescriptors",
            descriptor(f"{DS}/EducationOrganizationCategoryDescriptor", "School"),
        ),
        ("termDescriptors", descriptor(f"{DS}/TermDescriptor", "Fall Semester")),
        (
            "courseIdentificationSystemDescriptors",
            descriptor(f"{DS}/CourseIdentificationSystemDescriptor", "LEA course code"),
        ),
    ]


def ds_school(school_id: int = 255901) -> dict[str, Any]:
    return {
        "schoolId": school_id,
        "nameOfInstitution": "Grand Bend High School",
        "gradeLevels": [{"gradeLevelDescriptor": f"{DS}/GradeLevelDescriptor#Ninth grade"}],
        "educationOrganizationCategories": [
            {
                "educationOrganizationCategoryDescriptor": f"{DS}/EducationOrganizationCategoryDescriptor#School"
            }
        ],
    }


def ds_session(
    name: str = "2024-2025 Fall Semester", school_id: int = 255901, year: int = 2025
) -> dict[str, Any]:
    return {
        "sessionName": name,
        "schoolReference": {"schoolId": school_id},
        "schoolYearTypeReference": {"schoolYear": year},
        "beginDate": "2024-08-21",
        "endDate": "2024-12-20",
        "termDescriptor": f"{DS}/TermDescriptor#Fall Semester",
        "totalInstructionalDays": 82,
    }


def ds_course(code: str = "ALG-1", ed_org: int = 255901) -> dict[str, Any]:
    return {
        "courseCode": code,
        "courseTitle": "Algebra I",
        "numberOfParts": 1,
        "identificationCodes": [
            {
                "identificationCode": code,
                "courseIdentificationSystemDescriptor": f"{DS}/CourseIdentificationSystemDescriptor#LEA course code",
            }
        ],
        "educationOrganizationReference": {"educationOrganizationId": ed_org},
    }


def ds_course_offering(
    session_name: str = "2024-2025 Fall Semester", school_id: int = 255901, year: int = 2025
) -> dict[str, Any]:
    return {
        "localCourseCode": "ALG-1",
        "schoolReference": {"schoolId": school_id},
        "sessionReference": {
            "schoolId": school_id,
            "schoolYear": year,
            "sessionName": session_name,
        },
        "courseReference": {"courseCode": "ALG-1", "educationOrganizationId": school_id},
    }


def ds_section(
    session_name: str = "2024-2025 Fall Semester", school_id: int = 255901, year: int = 2025
) -> dict[str, Any]:
    return {
        "sectionIdentifier": "ALG-1-01",
        "courseOfferingReference": {
            "localCourseCode": "ALG-1",
            "schoolId": school_id,
            "schoolYear": year,
            "sessionName": session_name,
        },
    }
