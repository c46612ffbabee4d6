"""Fixtures for the mapping provider tests: a real tidemark server on loopback, a folder, and
providers that are always closed."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fhir.client.live_server import ThreadedServer
from tidemark.mappings import MAPPING_EXPRESSION_URL, MappingProvider, MappingsConfig

FAST = 0.05  # seconds between polls in tests that run the loops


def fume_structure_map(id: str, expression: str, **extra: Any) -> dict[str, Any]:
    """A StructureMap that follows the FUME convention."""
    return {
        "resourceType": "StructureMap",
        "id": id,
        "url": f"http://example.org/StructureMap/{id}",
        "name": id,
        "status": "active",
        "useContext": [
            {
                "code": {"system": "http://snomed.info/sct", "code": "706594005"},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://codes.fume.health", "code": "fume"}]
                },
            }
        ],
        "group": [
            {
                "name": "fumeMapping",
                "input": [{"name": "input", "mode": "source"}],
                "rule": [
                    {
                        "name": "evaluate",
                        "source": [{"context": "input"}],
                        "extension": [
                            {
                                "url": MAPPING_EXPRESSION_URL,
                                "valueExpression": {
                                    "language": "application/vnd.outburn.fume",
                                    "expression": expression,
                                },
                            }
                        ],
                    }
                ],
            }
        ],
        **extra,
    }


def alias_concept_map(id: str, aliases: dict[str, str], **extra: Any) -> dict[str, Any]:
    """The FUME alias ConceptMap."""
    return {
        "resourceType": "ConceptMap",
        "id": id,
        "name": "FumeAliases",
        "status": "active",
        "useContext": [
            {
                "code": {"system": "http://snomed.info/sct", "code": "706594005"},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://codes.fume.health", "code": "fume"}]
                },
            }
        ],
        "group": [
            {
                "element": [
                    {"code": key, "target": [{"code": value, "equivalence": "equivalent"}]}
                    for key, value in aliases.items()
                ]
            }
        ],
        **extra,
    }


class FhirWriter:
    """Writes resources to the test server the way an administrator would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.AsyncClient(base_url=base + "/", timeout=10)

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.put(
            f"{resource['resourceType']}/{resource['id']}", json=resource
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def delete(self, resource_type: str, id: str) -> None:
        response = await self.http.delete(f"{resource_type}/{id}")
        assert response.status_code == 204, response.text

    async def close(self) -> None:
        await self.http.aclose()


def value_of(provider: MappingProvider, key: str) -> Any:
    """The cached value of ``key`` (fails the test when the key is not cached)."""
    mapping = provider.get_mapping(key)
    assert mapping is not None, f"{key} is not cached"
    return mapping.value


def text_of(provider: MappingProvider, key: str) -> str:
    """The cached text of ``key`` (fails the test when the key is not cached)."""
    mapping = provider.get_mapping(key)
    assert mapping is not None, f"{key} is not cached"
    return mapping.text


def write_atomic(path: Path, text: str) -> None:
    """Replace a file the safe way (temporary file + rename): readers see old or new, whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "mappings"
    path.mkdir()
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    """A fresh tidemark server (SQLite) on loopback for one test."""
    with ThreadedServer(str(tmp_path / "server.db")) as live:
        yield live


@pytest.fixture
async def writer(server: ThreadedServer) -> AsyncIterator[FhirWriter]:
    client = FhirWriter(server.fhir)
    try:
        yield client
    finally:
        await client.close()


ProviderFactory = Callable[..., Awaitable[MappingProvider]]


@pytest.fixture
async def provider_factory() -> AsyncIterator[ProviderFactory]:
    """``await make(folder=..., server_url=..., **config)``: an initialized provider with the
    loops off unless intervals are given; closed after the test."""
    made: list[MappingProvider] = []

    async def make(**options: Any) -> MappingProvider:
        settings: dict[str, Any] = {
            "file_poll_interval": 0,
            "server_poll_interval": 0,
            "forced_resync_interval": 0,
            "server_timeout": 2.0,
            "server_retries": 0,
        }
        settings.update(options)
        provider = MappingProvider(MappingsConfig(**settings))
        made.append(provider)
        await provider.initialize()
        return provider

    yield make
    for provider in made:
        await provider.close()
