"""What the replication tests share: a live DS 5.1 source, a writer for it, and comparisons of
the source's documents with the replica's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.ds51_clients import KEY, SECRET, load_dataset
from tests.support import ServerProcess, require_data
from tidemark.store import Store

__all__ = ["KEY", "SECRET", "SourceWriter", "compare", "ds51_schema", "load_dataset"]

#: The resources of the DS 5.1 data set the tests write, in dependency order.
RESOURCES = (
    "schoolYearTypes",
    "educationOrganizationCategoryDescriptors",
    "gradeLevelDescriptors",
    "termDescriptors",
    "courseIdentificationSystemDescriptors",
    "schools",
    "students",
    "courses",
    "sessions",
    "courseOfferings",
    "studentSchoolAssociations",
)


def ds51_schema() -> Path:
    return require_data("edfi/ds-5.1-api-schema.json")


@pytest.fixture
def source_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A live DS 5.1 source: ``tidemark serve`` on a SQLite file, with OAuth."""
    with ServerProcess(
        "--db",
        str(tmp_path / "source.db"),
        "--api-schema",
        str(ds51_schema()),
        "--client",
        f"{KEY}:{SECRET}",
        "--log-text",
        cwd=tmp_path,
    ) as server:
        yield server


@pytest.fixture
def replica_url(store_url: str) -> str:
    """The replica's database: a SQLite file or a private PostgreSQL schema."""
    return store_url


class SourceWriter:
    """Writes to the source through its Ed-Fi API (the ODS/API layout)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        token = httpx.post(
            f"{base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(KEY, SECRET),
            timeout=10,
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{base_url}/data/v3/ed-fi/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    def post(self, endpoint: str, body: dict[str, Any]) -> str:
        response = self.http.post(endpoint, json=body)
        assert response.status_code in (200, 201), response.text
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    def put(self, endpoint: str, id: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.put(f"{endpoint}/{id}", json=body)

    def delete(self, endpoint: str, id: str) -> httpx.Response:
        return self.http.delete(f"{endpoint}/{id}")

    def all(self, endpoint: str) -> dict[str, dict[str, Any]]:
        """Every document of ``endpoint`` by id, without server members."""
        found: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.http.get(endpoint, params={"offset": offset, "limit": 500})
            page.raise_for_status()
            rows = page.json()
            for row in rows:
                found[row["id"]] = {
                    k: v for k, v in row.items() if k not in ("id", "_etag", "_lastModifiedDate")
                }
            if len(rows) < 500:
                return found
            offset += len(rows)


async def replica_documents(store: Store, endpoint: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = await store.walk(f"ed-fi:{endpoint}", cursor=cursor, limit=1000)
        for document in page.items:
            found[document.id] = document.body
        if page.next is None:
            return found
        cursor = page.next


async def compare(writer: SourceWriter, store: Store) -> dict[str, int]:
    """Assert that every resource of the replica equals the source's (ids and bodies); return
    the number of documents per resource."""
    sizes: dict[str, int] = {}
    for endpoint in RESOURCES:
        source = writer.all(endpoint)
        replica = await replica_documents(store, endpoint)
        assert replica.keys() == source.keys(), endpoint
        for doc_id, body in source.items():
            assert replica[doc_id] == body, (endpoint, doc_id)
        sizes[endpoint] = len(source)
    return sizes
