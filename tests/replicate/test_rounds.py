"""Replication rounds against a live DS 5.1 source: the first extract, later rounds, both URL
layouts, an unchanged source, retention forcing a resynchronisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.replicate.proxy import ForwardingTransport
from tests.replicate.support import (
    KEY,
    RESOURCES,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
)
from tests.support import ServerProcess, wait_until
from tidemark.replicate import load_state, replicate
from tidemark.store import Store, open_store


async def test_first_round_copies_every_document_with_the_source_ids(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    store = await open_store(replica_url, model=ds51_schema())
    try:
        [summary] = await replicate(
            source_server.base_url, store, client_id=KEY, client_secret=SECRET
        )
        assert summary.kind == "extract"
        sizes = await compare(writer, store)
        assert sizes["students"] > 20
        assert summary.counters["written"] == sum(sizes.values())
        assert summary.watermark is not None
    finally:
        await store.close()
        writer.close()


async def _extract(source: ServerProcess, store: Store, **options: Any) -> None:
    await replicate(
        source.base_url, store, client_id=KEY, client_secret=SECRET, resources=RESOURCES, **options
    )


async def test_an_unchanged_source_costs_no_request_per_resource_and_no_write(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    store = await open_store(replica_url, model=ds51_schema())
    try:
        await _extract(source_server, store)
        allocated = store.counters["change_versions_allocated"]
        journal = store.counters["journal_rows"]
        [summary] = await replicate(
            source_server.base_url, store, client_id=KEY, client_secret=SECRET
        )
        assert summary.kind == "none"
        # discovery, dependencies, token, availableChangeVersions: none per resource
        assert summary.counters["requests"] <= 4
        assert store.counters["change_versions_allocated"] == allocated
        assert store.counters["journal_rows"] == journal
    finally:
        await store.close()


@pytest.mark.parametrize("data_root", ["/data/v3/", "/data/"])
async def test_rounds_work_through_both_url_layouts(
    source_server: ServerProcess, replica_url: str, data_root: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    transport = ForwardingTransport(data_root=data_root)
    store = await open_store(replica_url, model=ds51_schema())
    try:
        await _extract(source_server, store, transport=transport)
        [(doc_id, body), *_] = writer.all("sessions").items()
        assert writer.put("sessions", doc_id, {**body, "sessionName": "Renamed"}).status_code == 204
        [summary] = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            transport=transport,
        )
        assert summary.counters["renamed"] >= 1
        await compare(writer, store)
        data_paths = {r.url.path for r in transport.requests if "/ed-fi/" in r.url.path}
        assert data_paths and all(p.startswith(data_root) for p in data_paths)
    finally:
        await store.close()
        writer.close()


async def test_a_window_the_source_no_longer_retains_resynchronises_writing_only_differences(
    tmp_path: Path, replica_url: str
):
    with ServerProcess(
        "--db",
        str(tmp_path / "source.db"),
        "--api-schema",
        str(ds51_schema()),
        "--client",
        f"{KEY}:{SECRET}",
        "--retain-changes",
        "1s",
        cwd=tmp_path,
    ) as source:
        load_dataset(source.base_url)
        writer = SourceWriter(source.base_url)
        store = await open_store(replica_url, model=ds51_schema())
        try:
            await _extract(source, store)
            state = await load_state(store, source.base_url)
            watermark = state.watermark
            assert watermark is not None
            students = list(writer.all("students").items())
            for doc_id, body in students[:2]:
                writer.put("students", doc_id, {**body, "firstName": "Purged"})
            [(offering_id, _body), *_] = writer.all("courseOfferings").items()
            assert writer.delete("courseOfferings", offering_id).status_code == 204

            def purged() -> bool:
                versions = writer.http.get(
                    f"{source.base_url}/changeQueries/v1/availableChangeVersions"
                ).json()
                return bool(versions["oldestChangeVersion"] > watermark + 1)

            wait_until(purged, timeout=30, interval=0.05)
            [summary] = await replicate(
                source.base_url, store, client_id=KEY, client_secret=SECRET, resources=RESOURCES
            )
            assert set(summary.resynced) == {f"ed-fi:{r}" for r in RESOURCES}
            assert summary.counters["written"] == 2  # the two students; equal ones untouched
            assert summary.counters["deleted"] == 1
            await compare(writer, store)
        finally:
            await store.close()
            writer.close()


async def test_a_reference_written_on_the_source_during_the_extract_is_deferred_then_resolved(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    store = await open_store(replica_url, model=ds51_schema())
    written: list[str] = []

    def meanwhile(collection: str, stage: str, documents: int) -> None:
        # Once the schools are copied, the source gets a new school and a session at it:
        # the session's page then references a school the replica has not seen.
        if collection == "ed-fi:schools" and not written:
            school = {"schoolId": 255901999, "nameOfInstitution": "New School"}
            school["educationOrganizationCategories"] = [
                {
                    "educationOrganizationCategoryDescriptor": "uri://ed-fi.org/"
                    "EducationOrganizationCategoryDescriptor#School"
                }
            ]
            school["gradeLevels"] = [
                {"gradeLevelDescriptor": "uri://ed-fi.org/GradeLevelDescriptor#Ninth grade"}
            ]
            written.append(writer.post("schools", school))
            written.append(
                writer.post(
                    "sessions",
                    {
                        "sessionName": "Late Term",
                        "schoolReference": {"schoolId": 255901999},
                        "schoolYearTypeReference": {"schoolYear": 2025},
                        "beginDate": "2024-08-21",
                        "endDate": "2024-12-20",
                        "termDescriptor": "uri://ed-fi.org/TermDescriptor#Fall Semester",
                        "totalInstructionalDays": 80,
                    },
                )
            )

    try:
        [first] = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            progress=meanwhile,
        )
        assert len(written) == 2
        assert first.counters["deferred"] == 1
        assert (await load_state(store, source_server.base_url)).deferred == {
            "ed-fi:sessions": [written[1]]
        }
        [second] = await replicate(
            source_server.base_url, store, client_id=KEY, client_secret=SECRET, resources=RESOURCES
        )
        assert second.counters["deferred"] == 0
        assert (await load_state(store, source_server.base_url)).deferred == {}
        await compare(writer, store)
    finally:
        await store.close()
        writer.close()
