"""A source without cursor paging (before ODS/API 7.3) is read by change-version windows that
each fit a page: a document that changes during the round cannot shift another one out of the
pages still to read, as offsets would."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from tests.replicate.proxy import ForwardingTransport
from tests.replicate.support import (
    KEY,
    RESOURCES,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
    replica_documents,
)
from tests.support import ServerProcess
from tidemark.replicate import replicate
from tidemark.store import open_store


async def test_windows_skip_nothing_when_a_document_changes_during_the_extract(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    # The student with the oldest change version: in the first window read.
    [first] = writer.http.get(
        "students", params={"limit": 1, "minChangeVersion": 0, "maxChangeVersion": 2**62}
    ).json()
    moved: list[str] = []

    def meanwhile(collection: str, stage: str, documents: int) -> None:
        if collection == "ed-fi:students" and not moved:
            body = {k: v for k, v in first.items() if k not in ("id", "_etag", "_lastModifiedDate")}
            response = writer.put("students", first["id"], {**body, "middleName": "Moved"})
            assert response.status_code == 204, response.text
            moved.append(first["id"])

    transport = ForwardingTransport(version="7.1")
    store = await open_store(replica_url, model=ds51_schema())
    options: dict[str, Any] = {"client_id": KEY, "client_secret": SECRET, "resources": RESOURCES}
    try:
        [extract] = await replicate(
            source_server.base_url,
            store,
            page_size=5,
            progress=meanwhile,
            transport=transport,
            **options,
        )
        assert moved and extract.kind == "extract"
        data = [r for r in transport.requests if "/ed-fi/" in r.url.path]
        assert data
        for request in data:
            query = parse_qs(request.url.query.decode())
            assert "pageToken" not in query
            assert "minChangeVersion" in query and "maxChangeVersion" in query
            assert query.get("offset", ["0"]) == ["0"]
        # every student of the source is in the replica, the moved one with its old body
        students = await replica_documents(store, "students")
        assert students.keys() == writer.all("students").keys()
        assert "middleName" not in students[moved[0]] or students[moved[0]]["middleName"] != "Moved"

        [changes] = await replicate(
            source_server.base_url,
            store,
            page_size=5,
            transport=transport,
            **options,
        )
        assert changes.kind == "changes" and changes.counters["written"] == 1
        await compare(writer, store)
    finally:
        await store.close()
        writer.close()
