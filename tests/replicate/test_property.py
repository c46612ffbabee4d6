"""Property: whatever the source does between rounds (creates, updates, identity renames with
their cascades, deletes, deletes and re-creates with the same key), after a round every document
of the replica equals the source's: same ids, same bodies."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.replicate.support import (
    KEY,
    RESOURCES,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
)
from tests.support import ServerProcess
from tidemark.replicate import replicate
from tidemark.store import open_store

EXAMPLES = int(os.environ.get("TIDEMARK_REPLICATE_EXAMPLES", "20"))
SCHOOL = 255901001
NAMES = [f"Term {n}" for n in range(4)]
STUDENTS = [f"90{n:02d}" for n in range(4)]


def session(name: str) -> dict[str, Any]:
    return {
        "sessionName": name,
        "schoolReference": {"schoolId": SCHOOL},
        "schoolYearTypeReference": {"schoolYear": 2025},
        "beginDate": "2024-08-21",
        "endDate": "2024-12-20",
        "termDescriptor": "uri://ed-fi.org/TermDescriptor#Fall Semester",
        "totalInstructionalDays": 80,
    }


def offering(code: str, session_name: str) -> dict[str, Any]:
    return {
        "localCourseCode": code,
        "localCourseTitle": f"Algebra {code}",
        "schoolReference": {"schoolId": SCHOOL},
        "sessionReference": {"schoolId": SCHOOL, "schoolYear": 2025, "sessionName": session_name},
        "courseReference": {"courseCode": "ALG-1", "educationOrganizationId": SCHOOL},
    }


def student(unique_id: str, name: str) -> dict[str, Any]:
    return {
        "studentUniqueId": unique_id,
        "firstName": name,
        "lastSurname": "Replica",
        "birthDate": "2010-01-01",
    }


pick = st.integers(min_value=0, max_value=3)
OPERATIONS = st.one_of(
    st.tuples(st.just("student"), pick, st.sampled_from(["Ada", "Bo", "Cy"])),
    st.tuples(st.just("recreate_student"), pick),
    st.tuples(st.just("session"), pick),
    st.tuples(st.just("rename_session"), pick, pick),
    st.tuples(st.just("offering"), pick, pick),
    st.tuples(st.just("delete_offering"), pick),
    st.tuples(st.just("delete_session"), pick),
    st.tuples(st.just("round")),
)


def find(writer: SourceWriter, endpoint: str, **where: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc_id, body in writer.all(endpoint).items():
        if all(body.get(k) == v for k, v in where.items()):
            found.append((doc_id, body))
    return found


def apply(writer: SourceWriter, operation: tuple[Any, ...]) -> None:
    kind = operation[0]
    if kind == "student":
        writer.post("students", student(STUDENTS[operation[1]], operation[2]))
    elif kind == "recreate_student":
        for doc_id, body in find(writer, "students", studentUniqueId=STUDENTS[operation[1]]):
            if writer.delete("students", doc_id).status_code == 204:
                writer.post("students", body)
    elif kind == "session":
        writer.post("sessions", session(NAMES[operation[1]]))
    elif kind == "rename_session":
        for doc_id, body in find(writer, "sessions", sessionName=NAMES[operation[1]]):
            writer.put("sessions", doc_id, {**body, "sessionName": NAMES[operation[2]]})
    elif kind == "offering":
        sessions = [b["sessionName"] for _i, b in find(writer, "sessions")]
        if sessions:
            name = sessions[operation[2] % len(sessions)]
            writer.post("courseOfferings", offering(f"P-{operation[1]}", name))
    elif kind == "delete_offering":
        for doc_id, _body in find(writer, "courseOfferings", localCourseCode=f"P-{operation[1]}"):
            writer.delete("courseOfferings", doc_id)
    elif kind == "delete_session":
        for doc_id, _body in find(writer, "sessions", sessionName=NAMES[operation[1]]):
            writer.delete("sessions", doc_id)  # 409 while offerings reference it: fine


def test_replica_equals_the_source_after_any_sequence_of_changes(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    schema = ds51_schema()

    async def round_and_compare(final: bool) -> None:
        store = await open_store(replica_url, model=schema)
        try:
            await replicate(
                source_server.base_url,
                store,
                client_id=KEY,
                client_secret=SECRET,
                resources=RESOURCES,  # the data set's resources: 2 requests each per round
            )
            if final:
                await compare(writer, store)
        finally:
            await store.close()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(OPERATIONS, max_size=12))
    def check(operations: list[tuple[Any, ...]]) -> None:
        # The replica and the source carry on from one example to the next: every example
        # starts from whatever state the earlier ones left, as a long-lived replica does.
        for operation in operations:
            if operation[0] == "round":
                asyncio.run(round_and_compare(False))
            else:
                apply(writer, operation)
        asyncio.run(round_and_compare(True))

    try:
        check()
    finally:
        writer.close()
