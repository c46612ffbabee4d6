"""Concurrent conditional creates with the same criteria create one resource: ``POST`` with
``If-None-Exist`` and ``PUT Type?criteria`` that match nothing yet, sent at once from many
threads to live servers (two server processes on one PostgreSQL database, one on SQLite).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess

SYSTEM = "urn:example:mrn"
CLIENTS = 8
ROUNDS = 4


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Live servers on one database: two processes on PostgreSQL, one on SQLite."""
    if request.param == "sqlite":
        db, processes = str(tmp_path / "race.db"), 1
    else:
        db, processes = str(request.getfixturevalue("pg_dsn")), 2
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(ServerProcess("--db", db, "--log-text", cwd=tmp_path))
            for _ in range(processes)
        ]


def _patient(value: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": value}],
    }


def _at_once(
    servers: list[ServerProcess], send: Callable[[httpx.Client, int], httpx.Response]
) -> list[httpx.Response]:
    """``send`` from :data:`CLIENTS` threads released together, spread over the servers."""
    barrier = threading.Barrier(CLIENTS)
    responses: list[httpx.Response | None] = [None] * CLIENTS
    errors: list[BaseException] = []

    def client(n: int) -> None:
        base = servers[n % len(servers)].base_url + "/fhir"
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                http.get("/metadata")  # connected before the start, so that all start together
                barrier.wait(timeout=30)
                responses[n] = send(http, n)
        except BaseException as error:  # reported below: a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


def _matches(server: ServerProcess, value: str) -> list[str]:
    response = httpx.get(
        f"{server.base_url}/fhir/Patient",
        params={"identifier": f"{SYSTEM}|{value}", "_total": "accurate"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [entry["resource"]["id"] for entry in response.json().get("entry", [])]


def test_concurrent_if_none_exist_creates_with_the_same_criteria_create_one_resource(
    servers: list[ServerProcess],
):
    for round in range(ROUNDS):
        value = f"post-{round}"

        def post(http: httpx.Client, n: int, value: str = value) -> httpx.Response:
            return http.post(
                "/Patient",
                json=_patient(value),
                headers={"If-None-Exist": f"identifier={SYSTEM}|{value}"},
            )

        responses = _at_once(servers, post)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (CLIENTS - 1) + [201], [r.text for r in responses]
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1
        assert _matches(servers[0], value) == sorted(ids)


def test_concurrent_conditional_puts_that_match_nothing_create_one_resource(
    servers: list[ServerProcess],
):
    for round in range(ROUNDS):
        value = f"put-{round}"

        def put(http: httpx.Client, n: int, value: str = value) -> httpx.Response:
            return http.put(
                "/Patient", params={"identifier": f"{SYSTEM}|{value}"}, json=_patient(value)
            )

        responses = _at_once(servers, put)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (CLIENTS - 1) + [201], [r.text for r in responses]
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1
        assert _matches(servers[0], value) == sorted(ids)


def test_a_conditional_create_whose_criteria_match_two_resources_is_a_412(
    servers: list[ServerProcess],
):
    base = servers[0].base_url + "/fhir"
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(2):
            assert http.post("/Patient", json=_patient("twin")).status_code == 201
        response = http.post(
            "/Patient",
            json=_patient("twin"),
            headers={"If-None-Exist": f"identifier={SYSTEM}|twin"},
        )
        assert response.status_code == 412, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert len(_matches(servers[0], "twin")) == 2


def _bundle(value: str, n: int) -> dict[str, Any]:
    """A transaction: a Patient created unless one has the identifier, and an Observation
    referring to it (by the Patient's urn:uuid, rewritten to whichever Patient it is)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6f1e2a36-0000-4000-8000-000000000001",
                "resource": _patient(value),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={SYSTEM}|{value}",
                },
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": f"reading {n}"},
                    "subject": {"reference": "urn:uuid:6f1e2a36-0000-4000-8000-000000000001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def test_concurrent_transactions_with_the_same_conditional_create_create_one_resource(
    servers: list[ServerProcess],
):
    for round in range(ROUNDS):
        value = f"bundle-{round}"

        def post(http: httpx.Client, n: int, value: str = value) -> httpx.Response:
            return http.post("", json=_bundle(value, n))

        responses = _at_once(servers, post)
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        statuses = sorted(r.json()["entry"][0]["response"]["status"] for r in responses)
        assert statuses == ["200 OK"] * (CLIENTS - 1) + ["201 Created"], statuses
        ids = _matches(servers[0], value)
        assert len(ids) == 1
        observations = httpx.get(
            f"{servers[0].base_url}/fhir/Observation",
            params={"subject": f"Patient/{ids[0]}", "_count": "100"},
            timeout=30,
        ).json()
        assert len(observations.get("entry", [])) == CLIENTS
