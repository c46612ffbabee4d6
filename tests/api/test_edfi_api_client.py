"""edfi-api-client (PyPI), unmodified, against a live ``tidemark serve`` with the DS 5.1 model and
OAuth: listings, get_rows with offset paging, change-version stepping and cursor paging, deletes
and key changes after deletes and a session rename."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from edfi_api_client import EdFiClient

from tests.support import ServerProcess

from .ds51_clients import KEY, SECRET, ds51_server, load_dataset, rows, token

pytestmark = pytest.mark.data
__all__ = ["ds51_server"]  # the fixture, imported to be used here


def _ids(found: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in found]


def test_edfi_api_client_pulls_resources_deletes_and_key_changes(
    ds51_server: ServerProcess, caplog: pytest.LogCaptureFixture
):
    load_dataset(ds51_server.base_url)
    api = EdFiClient(ds51_server.base_url, KEY, SECRET)

    # discovery: the client reads mode, versions and URLs from GET /
    assert api.api_mode == "shared_instance"
    assert api.get_ods_version() == "7.3"
    assert api.get_data_model_version() == "5.1.0"
    assert api.get_token_info()["client_id"] == KEY

    # resource and descriptor listings come from the Ed-Fi OpenAPI sections
    assert ("ed-fi", "studentSchoolAssociations") in api.resources
    assert ("ed-fi", "gradeLevelDescriptors") in api.descriptors
    assert not any(name.endswith("Descriptors") for _, name in api.resources)
    students = api.resource("students")
    assert students.has_deletes and students.description

    expected = {r["studentUniqueId"] for r in rows("students")}
    assert students.get_total_count() == len(expected) == 33

    # get_rows on ODS/API 7.3 pages by cursor (Next-Page-Token), without a single warning
    with caplog.at_level(logging.INFO, logger="edfi_api_client"):
        by_cursor = list(students.get_rows(page_size=10))
    assert "Cursor Paging" in caplog.text and "Falling back" not in caplog.text
    assert sorted(r["studentUniqueId"] for r in by_cursor) == sorted(expected)
    assert len(set(_ids(by_cursor))) == 33
    pages = [len(page) for page in students.get_pages_cursor(page_size=10)]
    assert pages == [25, 8]  # the first page takes the server's default size, then pageSize
    assert [len(p) for p in students.get_pages_cursor(params={"limit": 10}, page_size=10)] == [
        10,
        10,
        10,
        3,
    ]

    # offset paging
    by_offset = [row for page in students.get_pages(page_size=10) for row in page]
    assert _ids(by_offset) == _ids(by_cursor)

    # change-version stepping, forward and with reverse offsets
    newest = api.get_newest_change_version()
    window = {"minChangeVersion": 0, "maxChangeVersion": newest}
    for reverse in (False, True):
        stepped = [
            row
            for page in students.get_pages(
                params=window,
                page_size=7,
                step_change_version=True,
                change_version_step_size=15,
                reverse_paging=reverse,
            )
            for row in page
        ]
        assert sorted(_ids(stepped)) == sorted(_ids(by_cursor)), reverse
    windowed = list(students.get_rows(params=window, page_size=10))
    assert sorted(_ids(windowed)) == sorted(_ids(by_cursor))

    descriptors = list(api.descriptor("gradeLevelDescriptors").get_rows())
    assert sorted(d["codeValue"] for d in descriptors) == sorted(
        r["codeValue"] for r in rows("gradeLevelDescriptors")
    )

    # deletes and key changes after deletes and a session rename
    watermark = newest
    headers = {"Authorization": f"Bearer {token(ds51_server.base_url)}"}
    data = f"{ds51_server.base_url}/data/v3/ed-fi"
    gone = by_cursor[:2]
    with httpx.Client(headers=headers, timeout=30) as http:
        enrollments = http.get(f"{data}/studentSchoolAssociations", params={"limit": 100}).json()
        for student in gone:
            for enrollment in enrollments:
                if enrollment["studentReference"]["studentUniqueId"] == student["studentUniqueId"]:
                    assert (
                        http.delete(
                            f"{data}/studentSchoolAssociations/{enrollment['id']}"
                        ).status_code
                        == 204
                    )
            assert http.delete(f"{data}/students/{student['id']}").status_code == 204
        fall = next(
            s
            for s in http.get(f"{data}/sessions", params={"limit": 100}).json()
            if s["sessionName"] == "2024-2025 Fall Semester"
            and s["schoolReference"]["schoolId"] == 255901001
        )
        renamed = {k: v for k, v in fall.items() if k not in ("id", "_etag", "_lastModifiedDate")}
        renamed["sessionName"] = "2024-2025 Autumn Semester"
        assert http.put(f"{data}/sessions/{fall['id']}", json=renamed).status_code == 204
    newest = api.get_newest_change_version()
    window = {"minChangeVersion": watermark + 1, "maxChangeVersion": newest}

    deleted = list(api.resource("students", get_deletes=True).get_rows(params=window))
    assert sorted(d["keyValues"]["studentUniqueId"] for d in deleted) == sorted(
        s["studentUniqueId"] for s in gone
    )
    assert sorted(d["id"] for d in deleted) == sorted(_ids(gone))
    enrollment_deletes = list(
        api.resource("studentSchoolAssociations", get_deletes=True).get_rows(params=window)
    )
    assert len(enrollment_deletes) == 2

    session_keys = list(api.resource("sessions", get_key_changes=True).get_rows(params=window))
    assert [
        (k["id"], k["oldKeyValues"]["sessionName"], k["newKeyValues"]["sessionName"])
        for k in session_keys
    ] == [(fall["id"], "2024-2025 Fall Semester", "2024-2025 Autumn Semester")]
    # the rename cascaded into the identity of the fall course offerings
    offering_keys = list(
        api.resource("courseOfferings", get_key_changes=True).get_rows(params=window)
    )
    assert len(offering_keys) == 3
    assert {k["newKeyValues"]["sessionName"] for k in offering_keys} == {
        "2024-2025 Autumn Semester"
    }
    live = list(api.resource("courseOfferings").get_rows(params=window, page_size=2))
    assert sorted(_ids(live)) == sorted(k["id"] for k in offering_keys)
    assert api.resource("students").get_total_count() == 31
